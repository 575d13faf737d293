/*
 * Unit tests for util/jid: normalisation (ASCII lower case in localpart
 * and domain, resource kept), and every rejection the header promises:
 * empty parts, a '/' in a bare JID, characters forbidden in a localpart
 * (RFC 7622 §3.3.1), control characters, overlong parts, short buffers.
 */
#include "util/jid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"


static char out[4096];

static int bare(const char *in)
{
	memset(out, 0, sizeof(out));
	return jid_bare_normalize(in, out, sizeof(out));
}

static int full(const char *in)
{
	memset(out, 0, sizeof(out));
	return jid_normalize(in, out, sizeof(out));
}

static int to_bare(const char *in)
{
	memset(out, 0, sizeof(out));
	return jid_to_bare(in, out, sizeof(out));
}

static void test_bare(void)
{
	static const char *bad[] = {
		"",          "@d",         "a@",        "@",        "a/b",
		"a@b/c",     "a b@d",      "a\"b@d",    "a&b@d",    "a'b@d",
		"a:b@d",     "a<b@d",      "a>b@d",     "a@b@d",    "a\x01@d",
		"a\x7f@d",   "a@d\x01",    "a@d e",     "a@\x7f",   "a\n@d",
		"a@.d",      "a@d:5222",   "a@[::1]",   "a@d\\e",   "\t",
	};

	CHECK_INT(0, bare("alice@localhost"));
	CHECK_STR("alice@localhost", out);
	CHECK_INT(0, bare("Android@192.168.1.113"));
	CHECK_STR("android@192.168.1.113", out);
	CHECK_INT(0, bare("ALICE@LocalHost"));
	CHECK_STR("alice@localhost", out);
	CHECK_INT(0, bare("proxy.localhost"));
	CHECK_STR("proxy.localhost", out);
	/* non-ASCII is kept as is (no stringprep) */
	CHECK_INT(0, bare("J\xc3\xa9r\xc3\xb4me@Example.ORG"));
	CHECK_STR("j\xc3\xa9r\xc3\xb4me@example.org", out);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = bare(bad[i]);

		if (rc != -EINVAL)
			fprintf(stderr, "bad[%zu] accepted\n", i);
		CHECK_INT(-EINVAL, rc);
	}
	CHECK_INT(-EINVAL, jid_bare_normalize(NULL, out, sizeof(out)));
}

static void test_lengths(void)
{
	char in[3000], small[8];

	/* localpart: 1023 ok, 1024 too long */
	memset(in, 'a', 1023);
	strcpy(in + 1023, "@d");
	CHECK_INT(0, bare(in));
	CHECK_INT(1025, strlen(out));
	memset(in, 'a', 1024);
	strcpy(in + 1024, "@d");
	CHECK_INT(-EINVAL, bare(in));
	/* domain: 1023 ok, 1024 too long */
	memset(in, 'd', 1024);
	in[1023] = '\0';
	CHECK_INT(0, bare(in));
	in[1023] = 'd';
	in[1024] = '\0';
	CHECK_INT(-EINVAL, bare(in));
	/* resource: 1023 ok, 1024 too long */
	strcpy(in, "a@d/");
	memset(in + 4, 'r', 1024);
	in[4 + 1023] = '\0';
	CHECK_INT(0, full(in));
	in[4 + 1023] = 'r';
	in[4 + 1024] = '\0';
	CHECK_INT(-EINVAL, full(in));
	/* output buffer: exactly enough, one short */
	CHECK_INT(0, jid_bare_normalize("ab@cd", small, 6));
	CHECK_STR("ab@cd", small);
	CHECK_INT(-EINVAL, jid_bare_normalize("ab@cde", small, 6));
	CHECK_INT(-EINVAL, jid_bare_normalize("ab@cd", small, 0));
	CHECK_INT(0, jid_normalize("a@b/cd", small, 7));
	CHECK_STR("a@b/cd", small);
	CHECK_INT(-EINVAL, jid_normalize("a@b/cde", small, 7));
}

static void test_full(void)
{
	CHECK_INT(0, full("Android@192.168.1.113/Spark 2.6.3"));
	CHECK_STR("android@192.168.1.113/Spark 2.6.3", out);
	CHECK_INT(0, full("alice@localhost/Sender"));
	CHECK_STR("alice@localhost/Sender", out);
	CHECK_INT(0, full("Alice@Localhost"));
	CHECK_STR("alice@localhost", out);
	/* the resource is everything after the first '/', '/' and '@'
	 * included (RFC 7622 §3.1) */
	CHECK_INT(0, full("a@d/r/s@t"));
	CHECK_STR("a@d/r/s@t", out);
	CHECK_INT(-EINVAL, full("a@d/"));
	CHECK_INT(-EINVAL, full("/r"));
	CHECK_INT(-EINVAL, full("@d/r"));
	CHECK_INT(-EINVAL, full("a b@d/r"));
	CHECK_INT(-EINVAL, full(NULL));
	/* control characters in the resource (RFC 7622 §3.4: OpaqueString
	 * disallows them) */
	CHECK_INT(-EINVAL, full("a@d/r\x01"));
	CHECK_INT(-EINVAL, full("a@d/r\nx"));
	CHECK_INT(-EINVAL, full("a@d/\x7f"));

	CHECK_INT(0, to_bare("Alice@Localhost/Res"));
	CHECK_STR("alice@localhost", out);
	CHECK_INT(0, to_bare("proxy.localhost"));
	CHECK_STR("proxy.localhost", out);
	CHECK_INT(0, to_bare("a/b@c"));
	CHECK_STR("a", out);
	CHECK_INT(-EINVAL, to_bare("/x"));
	CHECK_INT(-EINVAL, to_bare(""));
	CHECK_INT(-EINVAL, to_bare(NULL));

	CHECK_STR("Spark 2.6.3", jid_resource("a@d/Spark 2.6.3"));
	CHECK_STR("", jid_resource("a@d/"));
	CHECK_STR("b/c", jid_resource("a/b/c"));
	CHECK_INT(1, jid_resource("a@d") == NULL);
	CHECK_INT(1, jid_resource(NULL) == NULL);
}

int main(void)
{
	test_bare();
	test_lengths();
	test_full();
	if (failures) {
		fprintf(stderr, "test_jid: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_jid: %d checks ok\n", checks);
	return 0;
}
