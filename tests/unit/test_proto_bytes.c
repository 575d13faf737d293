/*
 * Unit tests for the byte-level parts of xmpp/proto: strict base64 (RFC
 * 4648 §10 vectors plus every rejection rule), the file-name sanitizer
 * (traversal, control characters, NUL, invalid UTF-8, length cuts), the
 * XEP-0065 DST.ADDR hash, and the SOCKS5 (RFC 1928) builders and
 * incremental parsers, fed byte by byte.
 */
#include "xmpp/proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"


/* ---- base64 -------------------------------------------------------- */

static long dec(const char *s, uint8_t *out, size_t cap)
{
	return proto_b64_decode(s, strlen(s), out, cap);
}

static void test_b64(void)
{
	static const char *vec[][2] = {
		{"", ""},         {"f", "Zg=="},     {"fo", "Zm8="},
		{"foo", "Zm9v"},  {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
		{"foobar", "Zm9vYmFy"},
	};
	static const char *bad[] = {
		"Zg",       /* padding required */
		"Zg=",      "Zm9vY",    "=",        "==",       "====",
		"Z===",     "Zg=x",     "Zg==Zg==", /* data after padding */
		"Zg==x",    "Zm8=Zm8=", "Zm9v!",    "Zm9v-_==", /* url-safe */
		"Zm 9v=",   "Zh==",     /* non-zero pad bits */
		"Zm9=",     /* non-zero pad bits */
		"Zm9v\x01", "\xc3\xa9",
	};
	uint8_t out[64];
	char enc[64];

	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		size_t n = strlen(vec[i][0]);

		CHECK_INT(n, dec(vec[i][1], out, sizeof(out)));
		CHECK(memcmp(out, vec[i][0], n) == 0);
		CHECK_INT(strlen(vec[i][1]),
			  proto_b64_encode((const uint8_t *)vec[i][0], n, enc));
		CHECK_STR(vec[i][1], enc);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		long rc = dec(bad[i], out, sizeof(out));

		if (rc != -EBADMSG)
			fprintf(stderr, "bad[%zu] \"%s\"\n", i, bad[i]);
		CHECK_INT(-EBADMSG, rc);
	}
	/* An embedded NUL counts as garbage when inside srclen. */
	CHECK_INT(-EBADMSG, proto_b64_decode("Zm9v\0Zm9v", 9, out, sizeof(out)));
	/* Whitespace anywhere, even after padding. */
	CHECK_INT(6, dec(" Zm9v\r\nYm\tFy \n", out, sizeof(out)));
	CHECK_INT(1, dec("Zg==\n  ", out, sizeof(out)));
	CHECK_INT(0, dec(" \n", out, sizeof(out)));
	/* Capacity. */
	CHECK_INT(-E2BIG, dec("Zm9vYmFy", out, 5));
	CHECK_INT(6, dec("Zm9vYmFy", out, 6));
	CHECK_INT(-E2BIG, dec("Zg==", NULL, 0));
	CHECK_INT(0, dec("", NULL, 0));
	/* Streaming: every split point gives the same result. */
	{
		const char *s = "Zm9v YmE=";
		size_t n = strlen(s);

		for (size_t cut = 0; cut <= n; cut++) {
			struct proto_b64 st;

			proto_b64_init(&st, out, sizeof(out));
			CHECK_INT(0, proto_b64_feed(&st, s, cut));
			CHECK_INT(0, proto_b64_feed(&st, s + cut, n - cut));
			CHECK_INT(5, proto_b64_finish(&st));
		}
	}
	/* All byte values round-trip. */
	{
		uint8_t all[256], back[256];
		char text[400];
		size_t n;

		for (int i = 0; i < 256; i++)
			all[i] = (uint8_t)i;
		for (size_t len = 0; len <= 256; len += 37) {
			n = proto_b64_encode(all, len, text);
			CHECK_INT(4 * ((len + 2) / 3), n);
			CHECK_INT(len, proto_b64_decode(text, n, back, len));
			CHECK(memcmp(all, back, len) == 0);
		}
	}
}

/* ---- names --------------------------------------------------------- */

static const char *san(const char *in, size_t len)
{
	static char out[PROTO_NAME_MAX];

	memset(out, 'X', sizeof(out));
	proto_sanitize_name(in, len, out);
	return out;
}

#define SAN(exp, in) CHECK_STR(exp, san(in, strlen(in)))

static int valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		size_t n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 :
			   (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;

		if (!n)
			return 0;
		for (size_t i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		p += n;
	}
	return 1;
}

static void test_names(void)
{
	char in[2048];
	const char *o;

	SAN("x", "../../x");
	SAN("b", "a/b");
	SAN("b", "a\\b");
	SAN("passwd", "/etc/passwd");
	SAN("x", "..\\..\\x");
	SAN("_", ".");
	SAN("_", "..");
	SAN("_", "...");
	SAN("_", "a/..");
	SAN("unnamed", "");
	SAN("unnamed", "   ");
	SAN("unnamed", "a/");
	SAN("unnamed", "/");
	SAN("unnamed", "\x01\x02\x7f");
	SAN("bashrc", ".bashrc");
	SAN("hidden.txt", " . hidden.txt . ");
	SAN("ab", "a\x01\x1f\x7f" "b");
	SAN("ab", "a\nb");
	SAN("a b.txt", "a b.txt");
	SAN("f20k.bin", "f20k.bin");
	SAN("r\xc3\xa9sum\xc3\xa9.pdf", "r\xc3\xa9sum\xc3\xa9.pdf");
	SAN("\xe5\x85\xac\xe5\x85\xb1.png", "\xe5\x85\xac\xe5\x85\xb1.png");
	SAN("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");
	/* invalid UTF-8: each bad byte becomes '_' */
	SAN("a_b", "a\xff" "b");
	SAN("a__b", "a\xc0\xaf" "b");             /* overlong '/' */
	SAN("a___b", "a\xed\xa0\x80" "b");        /* surrogate */
	SAN("a____b", "a\xf4\x90\x80\x80" "b");   /* > U+10FFFF */
	SAN("a__", "a\xe2\x82");                  /* truncated */
	SAN("_.txt", "\xe2.txt");
	/* C1 and bidi overrides dropped (U+0085, U+202E) */
	SAN("ab", "a\xc2\x85" "b");
	SAN("invoicetxt.exe", "invoice\xe2\x80\xaetxt.exe");
	/* embedded NUL is dropped, not a terminator */
	CHECK_STR("abc", san("a\0bc", 4));
	CHECK_STR("c", san("a/\0/c", 5));
	CHECK_STR("unnamed", san(NULL, 0));

	/* 300 bytes: cut to 255, extension kept. */
	memset(in, 'a', 300);
	memcpy(in + 296, ".txt", 4);
	o = san(in, 300);
	CHECK_INT(255, strlen(o));
	CHECK(strcmp(o + 251, ".txt") == 0);
	/* 300 bytes, no dot: plain cut. */
	memset(in, 'b', 300);
	o = san(in, 300);
	CHECK_INT(255, strlen(o));
	/* An "extension" over 32 bytes is not kept. */
	memset(in, 'c', 300);
	in[200] = '.';
	o = san(in, 300);
	CHECK_INT(255, strlen(o));
	CHECK(strchr(o, '.') != NULL && o[254] == 'c');
	/* 32-byte extension kept */
	memset(in, 'd', 300);
	in[300 - 33] = '.';
	o = san(in, 300);
	CHECK_INT(255, strlen(o));
	CHECK_INT('.', o[255 - 33]);
	/* Multi-byte characters are never split: 2-byte chars x 200. */
	for (int i = 0; i < 200; i++)
		memcpy(in + 2 * i, "\xc3\xa9", 2);
	o = san(in, 400);
	CHECK_INT(254, strlen(o));
	CHECK(valid_utf8(o));
	/* 4-byte chars + extension */
	for (int i = 0; i < 100; i++)
		memcpy(in + 4 * i, "\xf0\x9f\x98\x80", 4);
	memcpy(in + 400, ".jpeg", 5);
	o = san(in, 405);
	CHECK(strlen(o) <= 255);
	CHECK(valid_utf8(o));
	CHECK(strcmp(o + strlen(o) - 5, ".jpeg") == 0);
	/* exactly 255 fits unchanged; trailing dots cut after the cut */
	memset(in, 'e', 255);
	CHECK_INT(255, strlen(san(in, 255)));
	memset(in, '.', 1000);
	CHECK_STR("_", san(in, 1000));
	memset(in, ' ', 1000);
	in[999] = 'z';
	CHECK_STR("z", san(in, 1000));
	/* Long stem with the cut landing on spaces before the extension. */
	memset(in, 'f', 300);
	memset(in + 240, ' ', 56);
	memcpy(in + 296, ".txt", 4);
	o = san(in, 300);
	CHECK(strlen(o) <= 255);
	CHECK(strcmp(o + strlen(o) - 4, ".txt") == 0);
}

/* ---- XEP-0065 hash and SOCKS5 -------------------------------------- */

static void test_dstaddr(void)
{
	char out[41];

	/* XEP-0065 example values; hash computed with Python hashlib. */
	proto_s5b_dstaddr("vxf9n471bn46", "requester@example.com/foo",
			  "target@example.org/bar", out);
	CHECK_STR("98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff", out);
	proto_s5b_dstaddr("82B0C697-C1DE-93F9-103E-481C8E7A3BD8",
			  "iphone@192.168.1.113/xiff",
			  "android@192.168.1.113/Spark 2.6.3", out);
	CHECK_STR("c34ab601c693c7358f0888a101be2626b9b4d658", out);
}

static void test_socks5_client(void)
{
	const char *dst = "98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff";
	uint8_t g[3], c[47], r[47];
	size_t need = 0;

	CHECK_INT(3, proto_socks5_greeting(g));
	CHECK(g[0] == 5 && g[1] == 1 && g[2] == 0);
	CHECK_INT(47, proto_socks5_connect(dst, c));
	CHECK(c[0] == 5 && c[1] == 1 && c[2] == 0 && c[3] == 3 && c[4] == 40);
	CHECK(memcmp(c + 5, dst, 40) == 0 && c[45] == 0 && c[46] == 0);

	CHECK_INT(-EAGAIN, proto_socks5_check_choice((const uint8_t *)"", 0));
	CHECK_INT(-EAGAIN, proto_socks5_check_choice((const uint8_t *)"\5", 1));
	CHECK_INT(0, proto_socks5_check_choice((const uint8_t *)"\5\0", 2));
	CHECK_INT(-EPROTO, proto_socks5_check_choice((const uint8_t *)"\5\xff", 2));
	CHECK_INT(-EPROTO, proto_socks5_check_choice((const uint8_t *)"\4", 1));
	CHECK_INT(-EPROTO, proto_socks5_check_choice((const uint8_t *)"\5\2", 2));

	CHECK_INT(47, proto_socks5_reply(dst, r));
	CHECK(r[1] == 0 && r[3] == 3 && r[4] == 40);
	for (size_t i = 0; i < 47; i++) {
		need = 0;
		CHECK_INT(-EAGAIN, proto_socks5_check_reply(r, i, &need));
		CHECK(need > i && need <= 47);
	}
	CHECK_INT(0, proto_socks5_check_reply(r, 47, &need));
	CHECK_INT(47, need);
	CHECK_INT(0, proto_socks5_check_reply(r, 100, NULL));
	r[1] = 1; /* general failure */
	CHECK_INT(-EPROTO, proto_socks5_check_reply(r, 2, &need));
	r[1] = 0;
	r[0] = 4;
	CHECK_INT(-EPROTO, proto_socks5_check_reply(r, 1, &need));
	r[0] = 5;
	r[3] = 2; /* unknown ATYP */
	CHECK_INT(-EPROTO, proto_socks5_check_reply(r, 4, &need));
	{
		const uint8_t v4[10] = {5, 0, 0, 1, 127, 0, 0, 1, 0x1e, 0x61};
		uint8_t v6[22] = {5, 0, 0, 4};

		CHECK_INT(-EAGAIN, proto_socks5_check_reply(v4, 9, &need));
		CHECK_INT(10, need);
		CHECK_INT(0, proto_socks5_check_reply(v4, 10, &need));
		CHECK_INT(-EAGAIN, proto_socks5_check_reply(v6, 21, &need));
		CHECK_INT(22, need);
		CHECK_INT(0, proto_socks5_check_reply(v6, 22, &need));
	}
	{
		const uint8_t zero[7] = {5, 0, 0, 3, 0, 0, 0};

		CHECK_INT(0, proto_socks5_check_reply(zero, 7, &need));
		CHECK_INT(7, need);
	}
}

static void test_socks5_server(void)
{
	const char *dst = "98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff";
	uint8_t req[64] = {0};
	char got[41];
	size_t used = 99;

	/* greeting */
	CHECK_INT(-EAGAIN, proto_socks5_parse_greeting(req, 0, &used));
	CHECK_INT(0, used);
	CHECK_INT(-EAGAIN,
		  proto_socks5_parse_greeting((const uint8_t *)"\5", 1, &used));
	CHECK_INT(-EAGAIN,
		  proto_socks5_parse_greeting((const uint8_t *)"\5\1", 2, &used));
	CHECK_INT(0, proto_socks5_parse_greeting((const uint8_t *)"\5\1\0", 3,
						 &used));
	CHECK_INT(3, used);
	CHECK_INT(0, proto_socks5_parse_greeting((const uint8_t *)"\5\3\2\1\0X",
						 6, &used));
	CHECK_INT(5, used);
	CHECK_INT(-EAGAIN, proto_socks5_parse_greeting((const uint8_t *)"\5\3\2\1",
						       4, &used));
	CHECK_INT(-EPROTO, proto_socks5_parse_greeting((const uint8_t *)"\5\2\1\2",
						       4, &used));
	CHECK_INT(-EPROTO,
		  proto_socks5_parse_greeting((const uint8_t *)"\5\0", 2, &used));
	CHECK_INT(-EPROTO,
		  proto_socks5_parse_greeting((const uint8_t *)"\4\1\0", 3, &used));
	CHECK_INT(-EPROTO,
		  proto_socks5_parse_greeting((const uint8_t *)"G", 1, &used));
	{
		uint8_t g[257];

		g[0] = 5;
		g[1] = 255;
		memset(g + 2, 0x80, 255);
		CHECK_INT(-EPROTO, proto_socks5_parse_greeting(g, 257, &used));
		g[256] = 0;
		CHECK_INT(-EAGAIN, proto_socks5_parse_greeting(g, 256, &used));
		CHECK_INT(0, proto_socks5_parse_greeting(g, 257, &used));
		CHECK_INT(257, used);
	}

	/* request: valid, fed byte by byte */
	proto_socks5_connect(dst, req);
	for (size_t i = 0; i < 47; i++)
		CHECK_INT(-EAGAIN, proto_socks5_parse_request(req, i, &used, got));
	CHECK_INT(0, proto_socks5_parse_request(req, 47, &used, got));
	CHECK_INT(47, used);
	CHECK_STR(dst, got);
	/* trailing bytes are not consumed */
	CHECK_INT(0, proto_socks5_parse_request(req, 47, &used, got));
	/* upper-case hex is accepted and lowered */
	memcpy(req + 5, "98B8D688D0F5D895FD41C5E7309A2E9E33BA32FF", 40);
	CHECK_INT(0, proto_socks5_parse_request(req, 47, &used, got));
	CHECK_STR(dst, got);
	/* every wrong header byte, reported as soon as it arrives */
	{
		static const struct {
			size_t at;
			uint8_t v;
		} errs[] = {
			{0, 4},    {1, 2} /* BIND */, {1, 3} /* UDP */,
			{2, 1},    {3, 1} /* IPv4 */, {3, 4} /* IPv6 */,
			{4, 39},   {4, 41},           {5, 'g'},
			{20, 0},   {44, '/'},         {45, 1} /* port */,
			{46, 0x50},
		};

		for (size_t k = 0; k < sizeof(errs) / sizeof(errs[0]); k++) {
			uint8_t bad[47];

			proto_socks5_connect(dst, bad);
			bad[errs[k].at] = errs[k].v;
			CHECK_INT(-EPROTO, proto_socks5_parse_request(
						   bad, errs[k].at + 1, &used,
						   got));
			CHECK_INT(-EPROTO,
				  proto_socks5_parse_request(bad, 47, &used, got));
			CHECK_STR("", got);
		}
	}
}

int main(void)
{
	test_b64();
	test_names();
	test_dstaddr();
	test_socks5_client();
	test_socks5_server();
	if (failures) {
		fprintf(stderr, "test_proto_bytes: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_proto_bytes: %d checks ok\n", checks);
	return 0;
}
