/*
 * libFuzzer target: the SOCKS5 (RFC 1928 / XEP-0065) byte parsers, on the
 * whole input and on every prefix of it, as a socket would deliver it.
 * Invariants: never read past len; -EAGAIN only while incomplete (and
 * then *need > len); a verdict (0 or -EPROTO) on a prefix never changes
 * when more bytes arrive; *consumed <= len; an accepted request yields
 * 40 lowercase hex digits.
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

static int hex_lower(const char *s)
{
	for (int i = 0; i < 40; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[40] == '\0';
}

static void one(const uint8_t *buf, size_t len, int out[4], size_t used[4])
{
	size_t need = 0, consumed = 0;
	char dst[41];

	out[0] = proto_socks5_check_choice(buf, len);
	REQUIRE(out[0] == 0 || out[0] == -EAGAIN || out[0] == -EPROTO);
	REQUIRE(out[0] != -EAGAIN || len < 2);

	out[1] = proto_socks5_check_reply(buf, len, &need);
	REQUIRE(out[1] == 0 || out[1] == -EAGAIN || out[1] == -EPROTO);
	if (out[1] == -EAGAIN)
		REQUIRE(need > len);
	if (out[1] == 0)
		REQUIRE(need <= len && need >= 7);
	used[1] = out[1] == 0 ? need : 0;

	out[2] = proto_socks5_parse_greeting(buf, len, &consumed);
	REQUIRE(out[2] == 0 || out[2] == -EAGAIN || out[2] == -EPROTO);
	REQUIRE(consumed <= len);
	if (out[2] == 0)
		REQUIRE(consumed >= 3);
	used[2] = consumed;

	consumed = 0;
	out[3] = proto_socks5_parse_request(buf, len, &consumed, dst);
	REQUIRE(out[3] == 0 || out[3] == -EAGAIN || out[3] == -EPROTO);
	REQUIRE(consumed <= len);
	if (out[3] == 0)
		REQUIRE(consumed == 47 && hex_lower(dst));
	used[3] = consumed;
	used[0] = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int full[4], part[4];
	size_t fu[4], pu[4];
	uint8_t *copy;

	if (size > 4096)
		return 0;
	/* An exact-size heap copy so ASan sees any read past len. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	one(copy, size, full, fu);
	for (size_t i = 0; i < size && i <= 300; i++) {
		one(copy, i, part, pu);
		for (int k = 0; k < 4; k++) {
			if (part[k] == -EAGAIN)
				continue;
			REQUIRE(part[k] == full[k]);
			if (part[k] == 0)
				REQUIRE(pu[k] == fu[k]);
		}
	}
	free(copy);
	return 0;
}
