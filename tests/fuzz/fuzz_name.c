/*
 * libFuzzer target: the file-name sanitizer. Whatever the input (NULs,
 * invalid UTF-8, separators, any length), the output must be one safe
 * directory entry: non-empty, at most 255 bytes, valid UTF-8 (shortest
 * form, no surrogates), no '/' or '\\', no C0/DEL/C1 controls, not "."
 * or "..", no leading dot or space, no trailing dot or space; and
 * sanitizing again must not change it. abort() on any violation.
 */
#include "xmpp/proto.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                           \
	do {                                                                 \
		if (!(c))                                                    \
			abort();                                             \
	} while (0)

/* Strict UTF-8 check, independent of the sanitizer's own decoder; also
 * rejects C1 controls. */
static int valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		uint32_t cp;
		size_t len;

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return 0;
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (i + len > n)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
			return 0;
		i += len;
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[PROTO_NAME_MAX], again[PROTO_NAME_MAX];
	char *copy;
	size_t n;

	/* exact-size copy so ASan sees any read past inlen */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	memset(out, 0x5a, sizeof(out));
	proto_sanitize_name(copy, size, out);
	free(copy);

	REQUIRE(memchr(out, '\0', sizeof(out)) != NULL);
	n = strlen(out);
	REQUIRE(n >= 1 && n <= 255);
	REQUIRE(!memchr(out, '/', n) && !memchr(out, '\\', n));
	REQUIRE(strcmp(out, ".") != 0 && strcmp(out, "..") != 0);
	REQUIRE(out[0] != '.' && out[0] != ' ');
	REQUIRE(out[n - 1] != '.' && out[n - 1] != ' ');
	REQUIRE(valid((const unsigned char *)out, n));
	proto_sanitize_name(out, n, again);
	REQUIRE(strcmp(out, again) == 0);
	return 0;
}
