/*
 * xmpp/proto_ibb: XEP-0047 in-band bytestreams: <open/>, <data/> and
 * <close/>.
 *
 * The data parser decodes straight from libstrophe's text nodes into the
 * caller's buffer with the streaming strict base64 decoder, so a block
 * costs no allocation and a peer cannot make us hold more than cap bytes.
 * libstrophe may split one element's text into several text nodes (it
 * reads the socket 4 KiB at a time); the decoder state carries over.
 * Sequence numbers are only range-checked here (0..65535, §2.2 "the
 * counter loops at maximum"); ordering and wrap are the engine's job.
 */
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int req_sid(xmpp_stanza_t *el, char *sid, size_t len)
{
	int rc = proto_attr_copy(el, "sid", sid, len);

	if (rc == -ENOENT || (rc == 0 && !sid[0]))
		return -EBADMSG;
	return rc;
}

/* An unsigned decimal attribute in [lo, hi]: 0 or -EBADMSG. */
static int attr_range(xmpp_stanza_t *el, const char *name, uint64_t lo,
		      uint64_t hi, uint64_t *out)
{
	const char *s = xmpp_stanza_get_attribute(el, name);

	if (!s || strlen(s) > 20 || proto_parse_u64(s, out) < 0)
		return -EBADMSG;
	return (*out < lo || *out > hi) ? -EBADMSG : 0;
}

int proto_parse_ibb_open(xmpp_stanza_t *iq, struct proto_ibb_open *out)
{
	xmpp_stanza_t *op;
	const char *stanza;
	uint64_t bs;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = proto_iq_head(iq, "set", out->id, sizeof(out->id), out->from,
			   sizeof(out->from));
	if (rc < 0)
		return rc;
	op = proto_child(iq, "open", NS_IBB);
	if (!op)
		return -EBADMSG;
	rc = req_sid(op, out->sid, sizeof(out->sid));
	if (rc < 0)
		return rc;
	/* §2.1: block-size REQUIRED, xs:unsignedShort, counted before
	 * base64 (libpurple counts it after: its blocks are just smaller,
	 * which is fine). */
	if (attr_range(op, "block-size", 1, 65535, &bs) < 0)
		return -EBADMSG;
	out->block_size = (unsigned)bs;
	/* §2.1: stanza defaults to "iq". */
	stanza = xmpp_stanza_get_attribute(op, "stanza");
	if (stanza && !strcmp(stanza, "message"))
		out->message = 1;
	else if (stanza && strcmp(stanza, "iq") != 0)
		return -EBADMSG;
	return 0;
}

xmpp_stanza_t *proto_build_ibb_open(xmpp_ctx_t *ctx, const char *id,
				    const char *to, const char *sid,
				    unsigned block_size)
{
	struct proto_pb b;
	xmpp_stanza_t *iq, *op;
	char bs[12];

	if (!ctx || !sid || block_size == 0 || block_size > 65535)
		return NULL;
	iq = proto_pb_iq(&b, ctx, "set", id, to);
	op = proto_pb_el(&b, iq, "open", NS_IBB);
	proto_pb_attr(&b, op, "sid", sid);
	snprintf(bs, sizeof(bs), "%u", block_size);
	proto_pb_attr(&b, op, "block-size", bs);
	proto_pb_attr(&b, op, "stanza", "iq");
	return proto_pb_done(&b);
}

int proto_parse_ibb_data(xmpp_stanza_t *iq, struct proto_ibb_data *hdr,
			 uint8_t *buf, size_t cap, size_t *len)
{
	xmpp_stanza_t *data, *c;
	struct proto_b64 dec;
	uint64_t seq;
	long n;
	int rc;

	memset(hdr, 0, sizeof(*hdr));
	*len = 0;
	rc = proto_iq_head(iq, "set", hdr->id, sizeof(hdr->id), hdr->from,
			   sizeof(hdr->from));
	if (rc < 0)
		return rc;
	data = proto_child(iq, "data", NS_IBB);
	if (!data)
		return -EBADMSG;
	rc = req_sid(data, hdr->sid, sizeof(hdr->sid));
	if (rc < 0)
		return rc;
	if (attr_range(data, "seq", 0, 65535, &seq) < 0)
		return -EBADMSG;
	hdr->seq = (uint16_t)seq;
	proto_b64_init(&dec, buf, cap);
	for (c = xmpp_stanza_get_children(data); c; c = xmpp_stanza_get_next(c)) {
		const char *t;

		/* Only text belongs in <data/>; an element is junk. */
		if (!xmpp_stanza_is_text(c))
			return -EBADMSG;
		t = xmpp_stanza_get_text_ptr(c);
		if (t && proto_b64_feed(&dec, t, strlen(t)) < 0)
			break;
	}
	n = proto_b64_finish(&dec);
	if (n < 0)
		return (int)n;
	*len = (size_t)n;
	return 0;
}

xmpp_stanza_t *proto_build_ibb_data(xmpp_ctx_t *ctx, const char *id,
				    const char *to, const char *sid,
				    uint16_t seq, const uint8_t *data,
				    size_t len)
{
	struct proto_pb b;
	xmpp_stanza_t *iq, *el;
	char seqs[8], *text;
	size_t tlen;

	if (!ctx || !sid || (len && !data) || len > 65535)
		return NULL;
	text = malloc(4 * ((len + 2) / 3) + 1);
	if (!text)
		return NULL;
	tlen = proto_b64_encode(data, len, text);
	iq = proto_pb_iq(&b, ctx, "set", id, to);
	el = proto_pb_el(&b, iq, "data", NS_IBB);
	proto_pb_attr(&b, el, "sid", sid);
	snprintf(seqs, sizeof(seqs), "%u", (unsigned)seq);
	proto_pb_attr(&b, el, "seq", seqs);
	proto_pb_text(&b, el, text, tlen);
	free(text);
	return proto_pb_done(&b);
}

int proto_parse_ibb_close(xmpp_stanza_t *iq, char *sid, size_t len)
{
	xmpp_stanza_t *cl;
	int rc;

	if (sid && len)
		sid[0] = '\0';
	if (!sid || !len)
		return -EINVAL;
	rc = proto_iq_head(iq, "set", NULL, 0, NULL, 0);
	if (rc < 0)
		return rc;
	cl = proto_child(iq, "close", NS_IBB);
	if (!cl)
		return -EBADMSG;
	return req_sid(cl, sid, len);
}

xmpp_stanza_t *proto_build_ibb_close(xmpp_ctx_t *ctx, const char *id,
				     const char *to, const char *sid)
{
	struct proto_pb b;
	xmpp_stanza_t *iq, *cl;

	if (!ctx || !sid)
		return NULL;
	iq = proto_pb_iq(&b, ctx, "set", id, to);
	cl = proto_pb_el(&b, iq, "close", NS_IBB);
	proto_pb_attr(&b, cl, "sid", sid);
	return proto_pb_done(&b);
}
