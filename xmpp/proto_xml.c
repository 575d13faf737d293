/*
 * xmpp/proto_xml: the small tools every proto*.c parser and builder uses.
 *
 * Parsing: libstrophe's getters are borrowed and unbounded, so every value
 * that leaves a stanza goes through a bounded copy here (attribute, text)
 * or a strict number parser, and the caller decides whether a field that
 * does not fit is an error (-E2BIG) or is skipped. Nothing here allocates.
 *
 * Building: struct proto_pb carries a sticky error so a builder can add a
 * whole tree and check allocation failures once at the end, releasing the
 * partial tree on failure (one cleanup path, STYLE.md §3).
 */
#include "proto.h"

#include <errno.h>
#include <string.h>

xmpp_stanza_t *proto_child(xmpp_stanza_t *st, const char *name,
			   const char *ns)
{
	xmpp_stanza_t *c;

	if (!st)
		return NULL;
	for (c = xmpp_stanza_get_children(st); c; c = xmpp_stanza_get_next(c)) {
		const char *cn, *cns;

		if (!xmpp_stanza_is_tag(c))
			continue;
		cn = xmpp_stanza_get_name(c);
		cns = xmpp_stanza_get_ns(c);
		if (name && (!cn || strcmp(cn, name) != 0))
			continue;
		if (ns && (!cns || strcmp(cns, ns) != 0))
			continue;
		return c;
	}
	return NULL;
}

static int copy_str(const char *s, char *buf, size_t len)
{
	size_t n = strlen(s);

	if (n >= len) {
		if (len)
			buf[0] = '\0';
		return -E2BIG;
	}
	memcpy(buf, s, n + 1);
	return 0;
}

int proto_attr_copy(xmpp_stanza_t *st, const char *attr, char *buf,
		    size_t len)
{
	const char *v = st ? xmpp_stanza_get_attribute(st, attr) : NULL;

	if (!v) {
		if (len)
			buf[0] = '\0';
		return -ENOENT;
	}
	return copy_str(v, buf, len);
}

int proto_text_copy(xmpp_stanza_t *el, char *buf, size_t len)
{
	xmpp_stanza_t *c;
	size_t used = 0;

	if (!len)
		return -E2BIG;
	buf[0] = '\0';
	if (!el)
		return 0;
	for (c = xmpp_stanza_get_children(el); c; c = xmpp_stanza_get_next(c)) {
		const char *t;
		size_t n;

		if (!xmpp_stanza_is_text(c))
			continue;
		t = xmpp_stanza_get_text_ptr(c);
		n = t ? strlen(t) : 0;
		if (n >= len - used) {
			buf[0] = '\0';
			return -E2BIG;
		}
		memcpy(buf + used, t, n);
		used += n;
		buf[used] = '\0';
	}
	return 0;
}

int proto_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EBADMSG;
	for (; *s; s++) {
		unsigned d;

		if (*s < '0' || *s > '9')
			return -EBADMSG;
		d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EBADMSG;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int proto_iq_head(xmpp_stanza_t *iq, const char *type, char *id,
		  size_t idlen, char *from, size_t fromlen)
{
	const char *name, *t;
	int rc;

	if (id && idlen)
		id[0] = '\0';
	if (from && fromlen)
		from[0] = '\0';
	if (!iq || !xmpp_stanza_is_tag(iq))
		return -EBADMSG;
	name = xmpp_stanza_get_name(iq);
	if (!name || strcmp(name, "iq") != 0)
		return -EBADMSG;
	t = xmpp_stanza_get_type(iq);
	if (type && (!t || strcmp(t, type) != 0))
		return -EBADMSG;
	if (id) {
		rc = proto_attr_copy(iq, "id", id, idlen);
		if (rc == -ENOENT || (rc == 0 && id[0] == '\0'))
			return -EBADMSG;
		if (rc < 0)
			return rc;
	}
	if (from) {
		rc = proto_attr_copy(iq, "from", from, fromlen);
		if (rc == -E2BIG)
			return rc;
	}
	return 0;
}

/* ---- builder ------------------------------------------------------- */

xmpp_stanza_t *proto_pb_iq(struct proto_pb *b, xmpp_ctx_t *ctx,
			   const char *type, const char *id, const char *to)
{
	b->ctx = ctx;
	b->err = 0;
	b->root = ctx ? xmpp_iq_new(ctx, type, id) : NULL;
	if (!b->root) {
		b->err = -ENOMEM;
		return NULL;
	}
	proto_pb_attr(b, b->root, "to", to);
	return b->root;
}

xmpp_stanza_t *proto_pb_el(struct proto_pb *b, xmpp_stanza_t *parent,
			   const char *name, const char *ns)
{
	xmpp_stanza_t *c;

	if (b->err || !parent)
		return NULL;
	c = xmpp_stanza_new(b->ctx);
	if (!c)
		goto fail;
	if (xmpp_stanza_set_name(c, name) != XMPP_EOK ||
	    (ns && xmpp_stanza_set_ns(c, ns) != XMPP_EOK)) {
		xmpp_stanza_release(c);
		goto fail;
	}
	/* _ex with do_clone=0 hands our reference to the parent. */
	if (xmpp_stanza_add_child_ex(parent, c, 0) != XMPP_EOK) {
		xmpp_stanza_release(c);
		goto fail;
	}
	return c;
fail:
	b->err = -ENOMEM;
	return NULL;
}

void proto_pb_attr(struct proto_pb *b, xmpp_stanza_t *el, const char *name,
		   const char *value)
{
	if (b->err || !value)
		return;
	if (!el || xmpp_stanza_set_attribute(el, name, value) != XMPP_EOK)
		b->err = -ENOMEM;
}

void proto_pb_text(struct proto_pb *b, xmpp_stanza_t *el, const char *text,
		   size_t len)
{
	xmpp_stanza_t *t;

	if (b->err)
		return;
	if (!el || !text) {
		b->err = -EINVAL;
		return;
	}
	if (len == 0)
		return;
	t = xmpp_stanza_new(b->ctx);
	if (!t || xmpp_stanza_set_text_with_size(t, text, len) != XMPP_EOK ||
	    xmpp_stanza_add_child_ex(el, t, 0) != XMPP_EOK) {
		if (t)
			xmpp_stanza_release(t);
		b->err = -ENOMEM;
	}
}

xmpp_stanza_t *proto_pb_done(struct proto_pb *b)
{
	xmpp_stanza_t *root = b->root;

	b->root = NULL;
	if (b->err) {
		if (root)
			xmpp_stanza_release(root);
		return NULL;
	}
	return root;
}

/* ---- methods ------------------------------------------------------- */

const char *proto_method_ns(enum proto_method m)
{
	switch (m) {
	case PROTO_M_S5B:
		return NS_BYTESTREAMS;
	case PROTO_M_IBB:
		return NS_IBB;
	case PROTO_M_NONE:
		break;
	}
	return "";
}

static int xml_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

enum proto_method proto_method_from_ns(const char *s, size_t len)
{
	if (!s)
		return PROTO_M_NONE;
	while (len && xml_space(s[0])) {
		s++;
		len--;
	}
	while (len && xml_space(s[len - 1]))
		len--;
	if (len == strlen(NS_BYTESTREAMS) && !memcmp(s, NS_BYTESTREAMS, len))
		return PROTO_M_S5B;
	if (len == strlen(NS_IBB) && !memcmp(s, NS_IBB, len))
		return PROTO_M_IBB;
	return PROTO_M_NONE;
}
