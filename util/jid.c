/* util/jid: see jid.h. */
#include "jid.h"

#include <errno.h>
#include <string.h>

static int bad_local_char(unsigned char c)
{
	/* RFC 7622 §3.3.1: these are disallowed in a localpart. */
	return c < 0x20 || c == 0x7f || strchr("\"&'/:<>@ ", c) != NULL;
}

static int bad_domain_char(unsigned char c)
{
	return c <= 0x20 || c == 0x7f || strchr("\"&'/:<>@\\", c) != NULL ||
	       c == '[' || c == ']';
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Normalise the bare part [in, in+len) into out. */
static int bare_norm(const char *in, size_t len, char *out, size_t outlen)
{
	const char *at = memchr(in, '@', len);
	size_t llen = at ? (size_t)(at - in) : 0;
	const char *dom = at ? at + 1 : in;
	size_t dlen = len - (size_t)(dom - in);

	if (at && (llen == 0 || llen > JID_PART_MAX))
		return -EINVAL;
	if (dlen == 0 || dlen > JID_PART_MAX || len + 1 > outlen)
		return -EINVAL;
	for (size_t i = 0; i < llen; i++)
		if (bad_local_char((unsigned char)in[i]))
			return -EINVAL;
	for (size_t i = 0; i < dlen; i++)
		if (bad_domain_char((unsigned char)dom[i]))
			return -EINVAL;
	if (dom[0] == '.')
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		out[i] = lower(in[i]);
	out[len] = '\0';
	return 0;
}

int jid_bare_normalize(const char *in, char *out, size_t outlen)
{
	if (!in || strchr(in, '/'))
		return -EINVAL;
	return bare_norm(in, strlen(in), out, outlen);
}

int jid_to_bare(const char *jid, char *out, size_t outlen)
{
	const char *slash;

	if (!jid)
		return -EINVAL;
	slash = strchr(jid, '/');
	return bare_norm(jid, slash ? (size_t)(slash - jid) : strlen(jid), out,
			 outlen);
}

int jid_normalize(const char *jid, char *out, size_t outlen)
{
	const char *res = jid_resource(jid);
	size_t blen, rlen;
	int rc;

	rc = jid_to_bare(jid, out, outlen);
	if (rc < 0 || !res)
		return rc;
	if (*res == '\0')
		return -EINVAL;
	blen = strlen(out);
	rlen = strlen(res);
	if (blen + 1 + rlen + 1 > outlen || rlen > JID_PART_MAX)
		return -EINVAL;
	/* RFC 7622 §3.4: the resourcepart is an OpaqueString, which
	 * disallows control characters. */
	for (size_t i = 0; i < rlen; i++)
		if ((unsigned char)res[i] < 0x20 || res[i] == 0x7f)
			return -EINVAL;
	out[blen] = '/';
	memcpy(out + blen + 1, res, rlen + 1);
	return 0;
}

const char *jid_resource(const char *jid)
{
	const char *slash = jid ? strchr(jid, '/') : NULL;

	return slash ? slash + 1 : NULL;
}
