/*
 * xmpp/proto_name: turn a file name from the network (XEP-0096 <file
 * name/>, untrusted) into one safe directory entry of inbox/<sender>/.
 *
 * Steps, in order: take the part after the last '/' or '\\' (path
 * traversal, INTEROP.md §2.9); walk it as UTF-8, dropping NUL, C0, DEL,
 * C1 and the bidi embedding/override/isolate controls (U+202A-202E,
 * U+2066-2069, U+200E/F: "txt.exe" shown as "exe.txt"), and replacing
 * each byte that is not part of a valid, shortest-form UTF-8 sequence
 * with '_'; strip leading dots and spaces (no hidden files, no "." or
 * "..") and trailing dots and spaces; cut to 255 bytes on a character
 * boundary, keeping an extension of up to 32 bytes.
 *
 * The walk never splits a character, and '.' can only ever be a whole
 * character, so the extension (from the last '.') can be cleaned on its
 * own and gives the same bytes as cleaning the whole name. Work is linear
 * in inlen and uses a few hundred bytes of stack, whatever the input.
 */
#include "proto.h"

#include <string.h>

#define NAME_MAX_BYTES (PROTO_NAME_MAX - 1) /* 255, NAME_MAX on Linux */
#define EXT_MAX_BYTES 32                    /* after the dot */

struct nbuf {
	char *p;
	size_t len, cap;
	int full;   /* the next character did not fit */
	int sawdot; /* a leading '.' was stripped */
};

/* Length of the valid UTF-8 sequence at s (n bytes available) and its
 * code point, or 0 if s does not start one (RFC 3629 §4 table: no
 * overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		*cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		*cp = c & 0x0f;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		*cp = c & 0x07;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		if (c == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		unsigned char cc = s[i];

		if (cc < (i == 1 ? lo : 0x80) || cc > (i == 1 ? hi : 0xbf))
			return 0;
		*cp = (*cp << 6) | (cc & 0x3f);
	}
	return len;
}

static int drop_cp(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) ||
	       cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

/* Append the cleaned form of s[0..n) to b, stopping at the first
 * character that does not fit. */
static void clean(const unsigned char *s, size_t n, struct nbuf *b,
		  int strip_lead)
{
	size_t i = 0;

	while (i < n && !b->full) {
		uint32_t cp = 0;
		size_t ul = utf8_seq(s + i, n - i, &cp);
		const char *src = (const char *)s + i;
		size_t step = ul, olen = ul;

		if (ul == 0) { /* invalid byte: one '_' per byte */
			src = "_";
			step = olen = 1;
		} else if (drop_cp(cp)) {
			i += ul;
			continue;
		} else if (strip_lead && b->len == 0 &&
			   (cp == '.' || cp == ' ')) {
			b->sawdot |= cp == '.';
			i += ul;
			continue;
		}
		if (b->len + olen > b->cap) {
			b->full = 1;
			break;
		}
		memcpy(b->p + b->len, src, olen);
		b->len += olen;
		i += step;
	}
}

static const unsigned char *last_of(const unsigned char *s, size_t n,
				    int (*pred)(unsigned char))
{
	while (n > 0) {
		n--;
		if (pred(s[n]))
			return s + n;
	}
	return NULL;
}

static int is_sep(unsigned char c)
{
	return c == '/' || c == '\\';
}

static int is_dot(unsigned char c)
{
	return c == '.';
}

/* The name did not fit: rebuild it as a cut stem + the extension, when
 * there is a short one. Returns the new length, or 0 to keep the plain
 * cut. */
static size_t keep_extension(const unsigned char *base, size_t n, char *out)
{
	const unsigned char *dot = last_of(base, n, is_dot);
	char ext[EXT_MAX_BYTES + 1], stem[NAME_MAX_BYTES];
	struct nbuf e = {ext, 0, sizeof(ext), 0, 0};
	struct nbuf st = {stem, 0, 0, 0, 0};

	if (!dot)
		return 0;
	clean(dot, n - (size_t)(dot - base), &e, 0);
	if (e.full || e.len < 2)
		return 0; /* no extension, or too long to be one */
	st.cap = NAME_MAX_BYTES - e.len;
	clean(base, (size_t)(dot - base), &st, 1);
	if (st.len == 0)
		return 0;
	memcpy(out, stem, st.len);
	memcpy(out + st.len, ext, e.len);
	return st.len + e.len;
}

void proto_sanitize_name(const char *in, size_t inlen,
			 char out[PROTO_NAME_MAX])
{
	const unsigned char *s = (const unsigned char *)in;
	const unsigned char *sep, *base;
	struct nbuf b = {out, 0, NAME_MAX_BYTES, 0, 0};
	size_t n, len;

	if (!s) {
		memcpy(out, "unnamed", sizeof("unnamed"));
		return;
	}
	sep = last_of(s, inlen, is_sep);
	base = sep ? sep + 1 : s;
	n = inlen - (size_t)(base - s);
	if (n)
		clean(base, n, &b, 1);
	len = b.len;
	if (b.full) {
		size_t kept = keep_extension(base, n, out);

		if (kept)
			len = kept;
	}
	while (len > 0 && (out[len - 1] == '.' || out[len - 1] == ' '))
		len--;
	out[len] = '\0';
	if (len == 0)
		memcpy(out, b.sawdot ? "_" : "unnamed",
		       b.sawdot ? sizeof("_") : sizeof("unnamed"));
}
