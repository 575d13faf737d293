/*
 * libFuzzer target: strict base64. Properties: the decoder never writes
 * past cap; accepted input is canonical, so encode(decode(x)) equals x
 * without its whitespace; the streaming decoder, fed in two pieces at any
 * split, agrees with the one-shot decoder; and any bytes survive
 * encode -> decode.
 */
#include "xmpp/proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                           \
	do {                                                                 \
		if (!(c))                                                    \
			abort();                                             \
	} while (0)

static int ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *src = (const char *)data;
	size_t cap = size, n, split;
	uint8_t *out, *out2;
	char *enc, *stripped;
	struct proto_b64 st;
	long rc, rc2, rc3;

	if (size > 65536)
		return 0;
	out = malloc(cap + 1);
	out2 = malloc(cap + 1);
	enc = malloc(4 * ((size + 2) / 3) + 1 + size);
	stripped = malloc(size + 1);
	if (!out || !out2 || !enc || !stripped)
		goto done;

	rc = proto_b64_decode(src, size, out, cap);
	REQUIRE(rc == -EBADMSG || rc == -E2BIG || (rc >= 0 && (size_t)rc <= cap));
	/* small capacity: exact-size buffer so ASan catches overruns */
	{
		size_t small = size % 7;
		uint8_t *tiny = malloc(small ? small : 1);

		if (tiny) {
			rc3 = proto_b64_decode(src, size, tiny, small);
			if (rc >= 0 && (size_t)rc <= small)
				REQUIRE(rc3 == rc && !memcmp(tiny, out, (size_t)rc));
			else if (rc >= 0)
				REQUIRE(rc3 == -E2BIG);
			free(tiny);
		}
	}
	split = size ? data[0] % (size + 1) : 0;
	proto_b64_init(&st, out2, cap);
	proto_b64_feed(&st, src, split);
	proto_b64_feed(&st, src + split, size - split);
	rc2 = proto_b64_finish(&st);
	REQUIRE(rc2 == rc);
	if (rc >= 0) {
		REQUIRE(!memcmp(out, out2, (size_t)rc));
		n = 0;
		for (size_t i = 0; i < size; i++)
			if (!ws(src[i]))
				stripped[n++] = src[i];
		REQUIRE(proto_b64_encode(out, (size_t)rc, enc) == n);
		REQUIRE(!memcmp(enc, stripped, n));
	}
	/* arbitrary bytes round-trip */
	n = proto_b64_encode(data, size, enc);
	REQUIRE(n == 4 * ((size + 2) / 3) && enc[n] == '\0');
	rc = proto_b64_decode(enc, n, out, cap);
	REQUIRE(rc == (long)size && !memcmp(out, data, size));
done:
	free(out);
	free(out2);
	free(enc);
	free(stripped);
	return 0;
}
