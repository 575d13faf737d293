/*
 * xmpp/proto_si: XEP-0095 stream initiation with the XEP-0096 file
 * profile and XEP-0020 feature negotiation (an XEP-0004 form), plus the
 * generic iq error reply and its parser.
 *
 * Parsers walk the tree by (name, namespace) and never by position: peers
 * order <file/> and <feature/> differently (Spark puts <file/> last),
 * pretty-print with whitespace text nodes, omit optional attributes
 * (libpurple: no hash/date/mime-type; QXmpp: no size for empty files) and
 * add ones we do not know (xml:lang from Prosody). Every string that
 * leaves the stanza is a bounded copy; a field that does not fit its
 * buffer fails the parse with -E2BIG rather than being cut, so a cut sid
 * or JID can never match another transfer.
 */
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Big enough for any method namespace we know; longer values are unknown
 * methods and simply skipped. */
#define METHOD_TEXT_MAX 64

static int is_hex32(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		      (c >= 'A' && c <= 'F')))
			return 0;
	}
	return i == 32;
}

static void lower_ascii(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* Optional attribute: absent is fine, too long is -E2BIG. */
static int opt_attr(xmpp_stanza_t *st, const char *name, char *buf,
		    size_t len)
{
	int rc = proto_attr_copy(st, name, buf, len);

	return rc == -ENOENT ? 0 : rc;
}

/* Required non-empty attribute: absent or empty is -EBADMSG. */
static int req_attr(xmpp_stanza_t *st, const char *name, char *buf,
		    size_t len)
{
	int rc = proto_attr_copy(st, name, buf, len);

	if (rc == -ENOENT || (rc == 0 && buf[0] == '\0'))
		return -EBADMSG;
	return rc;
}

/* The <field var='stream-method'/> of the feature-neg form under si. */
static xmpp_stanza_t *stream_method_field(xmpp_stanza_t *si)
{
	xmpp_stanza_t *feature, *x, *f;

	feature = proto_child(si, "feature", NS_FEATURE_NEG);
	x = proto_child(feature, "x", NS_DATA);
	if (!x)
		return NULL;
	for (f = xmpp_stanza_get_children(x); f; f = xmpp_stanza_get_next(f)) {
		const char *var, *name;

		if (!xmpp_stanza_is_tag(f))
			continue;
		name = xmpp_stanza_get_name(f);
		var = xmpp_stanza_get_attribute(f, "var");
		if (name && !strcmp(name, "field") && var &&
		    !strcmp(var, "stream-method"))
			return f;
	}
	return NULL;
}

static enum proto_method value_method(xmpp_stanza_t *value)
{
	char text[METHOD_TEXT_MAX];

	if (proto_text_copy(value, text, sizeof(text)) < 0)
		return PROTO_M_NONE;
	return proto_method_from_ns(text, strlen(text));
}

/* XEP-0020 §2: an offer lists <option><value>ns</value></option>. */
static void offer_methods(xmpp_stanza_t *field, struct proto_offer *out)
{
	xmpp_stanza_t *opt;

	for (opt = xmpp_stanza_get_children(field); opt;
	     opt = xmpp_stanza_get_next(opt)) {
		const char *name;
		enum proto_method m;

		if (!xmpp_stanza_is_tag(opt))
			continue;
		name = xmpp_stanza_get_name(opt);
		if (!name || strcmp(name, "option") != 0)
			continue;
		m = value_method(proto_child(opt, "value", NULL));
		if (m == PROTO_M_NONE || (out->methods & (unsigned)m))
			continue; /* unknown or repeated */
		out->methods |= (unsigned)m;
		if (out->norder < 2)
			out->order[out->norder++] = m;
	}
}

/* XEP-0096 §2: name and size REQUIRED (QXmpp omits size for 0 bytes, so
 * it is optional here), hash/date/desc/range optional. */
static int offer_file(xmpp_stanza_t *file, struct proto_offer *out)
{
	char size[32];
	int rc;

	rc = proto_attr_copy(file, "name", out->raw_name,
			     sizeof(out->raw_name));
	if (rc == -ENOENT)
		return -EBADMSG;
	if (rc == -E2BIG) {
		/* An over-long name ("../" x 400 + "deep.txt") is still a
		 * name: keep its tail, where the basename is; the sanitizer
		 * makes it safe and short. */
		const char *v = xmpp_stanza_get_attribute(file, "name");
		size_t n = strlen(v), keep = sizeof(out->raw_name) - 1;

		memcpy(out->raw_name, v + n - keep, keep);
		out->raw_name[keep] = '\0';
		rc = 0;
	}
	if (rc < 0)
		return rc;
	rc = proto_attr_copy(file, "size", size, sizeof(size));
	if (rc == 0) {
		if (proto_parse_u64(size, &out->size) < 0)
			return -EBADMSG;
		out->has_size = 1;
	} else if (rc == -E2BIG) {
		return -EBADMSG; /* more digits than any uint64 */
	}
	/* The hash is advisory: anything but 32 hex digits is dropped. */
	if (proto_attr_copy(file, "hash", out->hash, sizeof(out->hash)) < 0 ||
	    !is_hex32(out->hash))
		out->hash[0] = '\0';
	lower_ascii(out->hash);
	/* date and desc are informational (XEP-0096 §2): one that does not
	 * fit is dropped rather than failing a good offer. */
	if (opt_attr(file, "date", out->date, sizeof(out->date)) < 0)
		out->date[0] = '\0';
	if (proto_text_copy(proto_child(file, "desc", NULL), out->desc,
			    sizeof(out->desc)) < 0)
		out->desc[0] = '\0';
	out->range = proto_child(file, "range", NULL) != NULL;
	return 0;
}

int proto_parse_offer(xmpp_stanza_t *iq, struct proto_offer *out)
{
	xmpp_stanza_t *si, *file, *field;
	const char *profile;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = proto_iq_head(iq, "set", out->id, sizeof(out->id), out->from,
			   sizeof(out->from));
	if (rc < 0)
		return rc;
	si = proto_child(iq, "si", NS_SI);
	if (!si)
		return -EBADMSG;
	/* XEP-0095 §3: an unknown profile is answered 400 <bad-profile/>. */
	profile = xmpp_stanza_get_attribute(si, "profile");
	if (!profile)
		return -EBADMSG;
	if (strcmp(profile, NS_SI_FT) != 0)
		return -ENOTSUP;
	rc = req_attr(si, "id", out->sid, sizeof(out->sid));
	if (rc < 0)
		return rc;
	rc = opt_attr(si, "mime-type", out->mime, sizeof(out->mime));
	if (rc < 0)
		return rc;
	file = proto_child(si, "file", NS_SI_FT);
	if (!file)
		return -EBADMSG;
	rc = offer_file(file, out);
	if (rc < 0)
		return rc;
	field = stream_method_field(si);
	if (!field)
		return -EBADMSG;
	offer_methods(field, out);
	return 0;
}

xmpp_stanza_t *proto_build_offer(xmpp_ctx_t *ctx,
				 const struct proto_offer_args *a)
{
	struct proto_pb b;
	xmpp_stanza_t *iq, *si, *file, *x, *field, *opt, *val;
	char size[24];
	const char *ns;

	if (!ctx || !a || !a->sid || !a->name)
		return NULL;
	iq = proto_pb_iq(&b, ctx, "set", a->id, a->to);
	si = proto_pb_el(&b, iq, "si", NS_SI);
	proto_pb_attr(&b, si, "id", a->sid);
	proto_pb_attr(&b, si, "profile", NS_SI_FT);
	if (a->mime && a->mime[0])
		proto_pb_attr(&b, si, "mime-type", a->mime);
	file = proto_pb_el(&b, si, "file", NS_SI_FT);
	proto_pb_attr(&b, file, "name", a->name);
	/* XEP-0096 §2: size is REQUIRED, so we send it even for 0 bytes. */
	snprintf(size, sizeof(size), "%llu", (unsigned long long)a->size);
	proto_pb_attr(&b, file, "size", size);
	if (a->hash && a->hash[0])
		proto_pb_attr(&b, file, "hash", a->hash);
	if (a->date && a->date[0])
		proto_pb_attr(&b, file, "date", a->date);
	if (a->range)
		proto_pb_el(&b, file, "range", NULL);
	x = proto_pb_el(&b, proto_pb_el(&b, si, "feature", NS_FEATURE_NEG),
			"x", NS_DATA);
	proto_pb_attr(&b, x, "type", "form");
	field = proto_pb_el(&b, x, "field", NULL);
	proto_pb_attr(&b, field, "var", "stream-method");
	proto_pb_attr(&b, field, "type", "list-single");
	for (int i = 0; a->methods && i < a->nmethods; i++) {
		ns = proto_method_ns(a->methods[i]);
		if (!ns[0])
			continue;
		opt = proto_pb_el(&b, field, "option", NULL);
		val = proto_pb_el(&b, opt, "value", NULL);
		proto_pb_text(&b, val, ns, strlen(ns));
	}
	return proto_pb_done(&b);
}

/* A submit form lists the chosen method as <value/> children of the
 * field. XEP-0095 §3 expects exactly one; Spark sends every method it can
 * do, so take the first one in OUR preference order that it lists. */
static enum proto_method accept_method(xmpp_stanza_t *field,
				       const enum proto_method *offered,
				       int noffered, int *nvalues)
{
	unsigned listed = 0;
	enum proto_method first = PROTO_M_NONE;
	xmpp_stanza_t *v;

	*nvalues = 0;
	for (v = xmpp_stanza_get_children(field); v;
	     v = xmpp_stanza_get_next(v)) {
		const char *name;
		enum proto_method m;

		if (!xmpp_stanza_is_tag(v))
			continue;
		name = xmpp_stanza_get_name(v);
		if (!name || strcmp(name, "value") != 0)
			continue;
		(*nvalues)++;
		m = value_method(v);
		listed |= (unsigned)m;
		if (first == PROTO_M_NONE)
			first = m;
	}
	if (!offered || noffered <= 0)
		return first;
	for (int i = 0; i < noffered; i++)
		if (offered[i] != PROTO_M_NONE && (listed & (unsigned)offered[i]))
			return offered[i];
	return PROTO_M_NONE;
}

/* XEP-0096 §3.2: <range offset length/> in the result; both default
 * (offset 0, length = the rest). */
static int accept_range(xmpp_stanza_t *range, struct proto_accept *out)
{
	const char *off, *len;

	if (!range)
		return 0;
	out->has_range = 1;
	off = xmpp_stanza_get_attribute(range, "offset");
	len = xmpp_stanza_get_attribute(range, "length");
	if (off && proto_parse_u64(off, &out->offset) < 0)
		return -EBADMSG;
	if (len && proto_parse_u64(len, &out->length) < 0)
		return -EBADMSG;
	return 0;
}

int proto_parse_accept(xmpp_stanza_t *iq, const enum proto_method *offered,
		       int noffered, struct proto_accept *out)
{
	xmpp_stanza_t *si, *field;
	int rc, nvalues;

	memset(out, 0, sizeof(*out));
	rc = proto_iq_head(iq, "result", NULL, 0, NULL, 0);
	if (rc < 0)
		return rc;
	si = proto_child(iq, "si", NS_SI);
	field = stream_method_field(si);
	if (!field)
		return -EBADMSG;
	out->method = accept_method(field, offered, noffered, &nvalues);
	if (nvalues == 0)
		return -EBADMSG;
	if (out->method == PROTO_M_NONE)
		return -ENOTSUP; /* chose something we did not offer */
	rc = accept_range(proto_child(proto_child(si, "file", NS_SI_FT),
				      "range", NULL),
			  out);
	if (rc < 0) {
		out->method = PROTO_M_NONE;
		return rc;
	}
	return 0;
}

xmpp_stanza_t *proto_build_accept(xmpp_ctx_t *ctx, const char *to,
				  const char *id, enum proto_method method,
				  uint64_t offset)
{
	struct proto_pb b;
	xmpp_stanza_t *iq, *si, *range, *x, *field, *val;
	const char *ns = proto_method_ns(method);
	char off[24];

	if (!ctx || !ns[0])
		return NULL;
	iq = proto_pb_iq(&b, ctx, "result", id, to);
	si = proto_pb_el(&b, iq, "si", NS_SI);
	if (offset > 0) {
		range = proto_pb_el(&b, proto_pb_el(&b, si, "file", NS_SI_FT),
				    "range", NULL);
		snprintf(off, sizeof(off), "%llu", (unsigned long long)offset);
		proto_pb_attr(&b, range, "offset", off);
	}
	x = proto_pb_el(&b, proto_pb_el(&b, si, "feature", NS_FEATURE_NEG),
			"x", NS_DATA);
	proto_pb_attr(&b, x, "type", "submit");
	field = proto_pb_el(&b, x, "field", NULL);
	proto_pb_attr(&b, field, "var", "stream-method");
	val = proto_pb_el(&b, field, "value", NULL);
	proto_pb_text(&b, val, ns, strlen(ns));
	return proto_pb_done(&b);
}

/* ---- errors (RFC 6120 §8.3) ---------------------------------------- */

xmpp_stanza_t *proto_build_error(xmpp_ctx_t *ctx, const char *to,
				 const char *id, const char *type,
				 const char *cond, const char *text,
				 const char *app_ns, const char *app_cond)
{
	struct proto_pb b;
	xmpp_stanza_t *iq, *err, *t;

	if (!ctx || !type || !cond)
		return NULL;
	iq = proto_pb_iq(&b, ctx, "error", id, to);
	err = proto_pb_el(&b, iq, "error", NULL);
	proto_pb_attr(&b, err, "type", type);
	proto_pb_el(&b, err, cond, NS_STANZAS);
	if (text) {
		t = proto_pb_el(&b, err, "text", NS_STANZAS);
		proto_pb_text(&b, t, text, strlen(text));
	}
	if (app_ns && app_cond)
		proto_pb_el(&b, err, app_cond, app_ns);
	return proto_pb_done(&b);
}

/* The text children of el into buf, cut on a UTF-8 boundary when long:
 * <text/> is for humans, so a cut is better than nothing. */
static void text_cut(xmpp_stanza_t *el, char *buf, size_t len)
{
	xmpp_stanza_t *c;
	size_t used = 0;

	buf[0] = '\0';
	for (c = el ? xmpp_stanza_get_children(el) : NULL; c;
	     c = xmpp_stanza_get_next(c)) {
		const char *t;
		size_t n;

		if (!xmpp_stanza_is_text(c))
			continue;
		t = xmpp_stanza_get_text_ptr(c);
		n = t ? strlen(t) : 0;
		if (n >= len - used) {
			n = len - 1 - used;
			while (n > 0 && ((unsigned char)t[n] & 0xc0) == 0x80)
				n--;
			memcpy(buf + used, t, n);
			buf[used + n] = '\0';
			return;
		}
		memcpy(buf + used, t, n);
		used += n;
		buf[used] = '\0';
	}
}

int proto_parse_error(xmpp_stanza_t *iq, char *cond, size_t condlen,
		      char *text, size_t textlen)
{
	xmpp_stanza_t *err, *c;

	if (cond && condlen)
		cond[0] = '\0';
	if (text && textlen)
		text[0] = '\0';
	if (proto_iq_head(iq, "error", NULL, 0, NULL, 0) < 0)
		return -EBADMSG;
	/* QXmpp puts an empty <query/> before <error/>: search by name. */
	err = proto_child(iq, "error", NULL);
	if (!err)
		return -EBADMSG;
	for (c = xmpp_stanza_get_children(err); c; c = xmpp_stanza_get_next(c)) {
		const char *name, *ns;

		if (!xmpp_stanza_is_tag(c))
			continue;
		name = xmpp_stanza_get_name(c);
		ns = xmpp_stanza_get_ns(c);
		if (!name || !ns || strcmp(ns, NS_STANZAS) != 0 ||
		    !strcmp(name, "text"))
			continue;
		/* A condition that does not fit is unknown, never cut: a
		 * cut name could read as another condition. */
		if (cond && condlen && strlen(name) < condlen)
			memcpy(cond, name, strlen(name) + 1);
		break;
	}
	if (text && textlen)
		text_cut(proto_child(err, "text", NS_STANZAS), text, textlen);
	return 0;
}
