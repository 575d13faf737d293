/*
 * util/jid: small JID helpers (RFC 7622), no libstrophe. We do not carry a
 * full stringprep; we lower-case ASCII in the localpart and domain (what
 * deployed servers do for the JIDs people type, and what Spark's mixed-case
 * "Android@..." needs, INTEROP.md spark/), keep the resource as is, and
 * enforce the length limits and forbidden characters.
 */
#ifndef XFS_JID_H
#define XFS_JID_H

#include <stddef.h>

#define JID_PART_MAX 1023

/*
 * Validate a bare JID ("local@domain" or "domain") and write its normal
 * form (ASCII lower-cased) to out. Returns 0 or -EINVAL (empty parts, a '/',
 * characters forbidden in a localpart, control characters, parts over 1023
 * bytes, or the result not fitting in outlen).
 */
int jid_bare_normalize(const char *in, char *out, size_t outlen);

/* Write the bare part of a full or bare JID, normalised, to out.
 * Returns 0 or -EINVAL. */
int jid_to_bare(const char *jid, char *out, size_t outlen);

/* Normalise a full JID: bare part normalised, resource kept. */
int jid_normalize(const char *jid, char *out, size_t outlen);

/* Pointer to the resource part of jid (after the first '/'), or NULL. */
const char *jid_resource(const char *jid);

#endif
