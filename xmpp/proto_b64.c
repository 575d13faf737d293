/*
 * xmpp/proto_b64: strict base64 (RFC 4648 §4) for IBB payloads, without
 * allocation.
 *
 * The decoder is the attack surface that gave libpurple CVE-2010-3711
 * (INTEROP.md §2.7), so it accepts exactly the canonical encoding and
 * nothing else:
 *   - alphabet A-Z a-z 0-9 + / only (no URL-safe alphabet, §5);
 *   - XML whitespace (SP, TAB, CR, LF) is skipped anywhere, since peers
 *     and servers may wrap lines (XEP-0047 does not forbid it);
 *   - padding is required: the non-whitespace length must be a multiple
 *     of 4 (§3.2 "implementations MUST include appropriate pad characters"
 *     unless the referring spec says otherwise; XEP-0047 does not);
 *   - '=' may only end a quantum ("xx==" or "xxx="), and nothing but
 *     whitespace may follow a padded quantum;
 *   - the unused bits before padding must be zero (§3.5 lets decoders
 *     reject non-canonical encodings; every encoder we know emits zeros).
 * The output is bounded by cap: -E2BIG as soon as a byte would not fit.
 */
#include "proto.h"

#include <errno.h>
#include <string.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

void proto_b64_init(struct proto_b64 *s, uint8_t *dst, size_t cap)
{
	memset(s, 0, sizeof(*s));
	s->dst = dst;
	s->cap = dst ? cap : 0;
}

static int b64_put(struct proto_b64 *s, uint8_t byte)
{
	if (s->len >= s->cap)
		return -E2BIG;
	s->dst[s->len++] = byte;
	return 0;
}

/* A quantum of 4 characters is complete: emit its 1..3 bytes. */
static int b64_flush(struct proto_b64 *s)
{
	uint32_t a = s->acc;
	unsigned nbytes = 3 - s->pad;
	int rc = 0;

	/* "xx==" leaves 4 unused bits, "xxx=" 2: they must be zero (§3.5). */
	if ((s->pad == 2 && (a & 0xffff)) || (s->pad == 1 && (a & 0xff)))
		return -EBADMSG;
	rc = b64_put(s, (uint8_t)(a >> 16));
	if (!rc && nbytes > 1)
		rc = b64_put(s, (uint8_t)(a >> 8));
	if (!rc && nbytes > 2)
		rc = b64_put(s, (uint8_t)a);
	if (rc)
		return rc;
	if (s->pad)
		s->done = 1;
	s->acc = 0;
	s->n = 0;
	s->pad = 0;
	return 0;
}

static int b64_char(struct proto_b64 *s, unsigned char c)
{
	int v;

	if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
		return 0;
	if (s->done)
		return -EBADMSG; /* data after the padded final quantum */
	if (c == '=') {
		/* '=' only in positions 3 and 4 of a quantum. */
		if (s->n < 2)
			return -EBADMSG;
		s->pad++;
		s->acc <<= 6;
		s->n++;
	} else {
		v = b64_value(c);
		if (v < 0 || s->pad)
			return -EBADMSG; /* garbage, or "x=x" */
		s->acc = (s->acc << 6) | (uint32_t)v;
		s->n++;
	}
	if (s->n == 4)
		return b64_flush(s);
	return 0;
}

int proto_b64_feed(struct proto_b64 *s, const char *src, size_t srclen)
{
	if (s->err)
		return s->err;
	if (!src && srclen)
		return s->err = -EBADMSG;
	for (size_t i = 0; i < srclen; i++) {
		int rc = b64_char(s, (unsigned char)src[i]);

		if (rc)
			return s->err = rc;
	}
	return 0;
}

long proto_b64_finish(struct proto_b64 *s)
{
	if (s->err)
		return s->err;
	if (s->n != 0)
		return s->err = -EBADMSG; /* unpadded or truncated quantum */
	return (long)s->len;
}

long proto_b64_decode(const char *src, size_t srclen, uint8_t *dst,
		      size_t cap)
{
	struct proto_b64 s;

	proto_b64_init(&s, dst, cap);
	proto_b64_feed(&s, src, srclen);
	return proto_b64_finish(&s);
}

size_t proto_b64_encode(const uint8_t *src, size_t len, char *dst)
{
	size_t i, o = 0;

	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 |
			     src[i + 2];

		dst[o++] = b64_alphabet[(v >> 18) & 63];
		dst[o++] = b64_alphabet[(v >> 12) & 63];
		dst[o++] = b64_alphabet[(v >> 6) & 63];
		dst[o++] = b64_alphabet[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)src[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)src[i + 1] << 8;
		dst[o++] = b64_alphabet[(v >> 18) & 63];
		dst[o++] = b64_alphabet[(v >> 12) & 63];
		dst[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
		dst[o++] = '=';
	}
	dst[o] = '\0';
	return o;
}
