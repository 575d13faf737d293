/*
 * xmpp/proto: pure parsers and builders for the stanzas and bytes of file
 * transfer. No I/O, no state, no globals: every function here reads what a
 * peer sent (untrusted) or builds what we send, so each is unit-tested on
 * the real stanzas in shared/fixtures/stanzas and fuzzed.
 *
 *   XEP-0095 stream initiation + XEP-0096 file profile + XEP-0020 feature
 *   negotiation (XEP-0004 forms); XEP-0065 SOCKS5 bytestreams (iq payloads
 *   and the SOCKS5 bytes, RFC 1928); XEP-0047 in-band bytestreams; the
 *   name sanitizer for file names from the network.
 *
 * Parsers take a borrowed stanza (the whole <iq/>) and fill caller-owned
 * structs with fixed-size strings; they return 0 or a negative errno:
 *   -EBADMSG  malformed / missing required parts
 *   -E2BIG    a field longer than its buffer
 *   -ENOTSUP  a profile / method / mode we do not support
 * Builders return a new stanza (reference owned by the caller, release with
 * xmpp_stanza_release) or NULL on allocation failure. All functions may be
 * called from any thread that owns the ctx passed in.
 */
#ifndef XFS_XMPP_PROTO_H
#define XFS_XMPP_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <strophe.h>

#define NS_SI "http://jabber.org/protocol/si"
#define NS_SI_FT "http://jabber.org/protocol/si/profile/file-transfer"
#define NS_FEATURE_NEG "http://jabber.org/protocol/feature-neg"
#define NS_DATA "jabber:x:data"
#define NS_BYTESTREAMS "http://jabber.org/protocol/bytestreams"
#define NS_IBB "http://jabber.org/protocol/ibb"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

#define PROTO_SID_MAX 128     /* XEP-0095 sids; longer ones are refused */
#define PROTO_JID_MAX 1024
#define PROTO_NAME_MAX 256    /* sanitized file name, 255 bytes + NUL */
#define PROTO_RAWNAME_MAX 1024 /* name attribute as offered, before sanitizing */
#define PROTO_HASH_MAX 33
#define PROTO_DATE_MAX 40
#define PROTO_DESC_MAX 512
#define PROTO_MIME_MAX 128
#define PROTO_HOST_MAX 256
#define PROTO_MAX_HOSTS 8     /* streamhosts beyond this are ignored */

/* Stream methods, as bits and as an ordered list. */
enum proto_method {
	PROTO_M_NONE = 0,
	PROTO_M_S5B = 1, /* http://jabber.org/protocol/bytestreams */
	PROTO_M_IBB = 2, /* http://jabber.org/protocol/ibb */
};

/* ---- XEP-0095/0096 offer ------------------------------------------ */

struct proto_offer {
	char id[PROTO_SID_MAX];        /* iq id, to answer it */
	char from[PROTO_JID_MAX];      /* iq from, as sent (full JID) */
	char sid[PROTO_SID_MAX];
	char mime[PROTO_MIME_MAX];
	char raw_name[PROTO_RAWNAME_MAX]; /* name as offered (may be unsafe) */
	uint64_t size;
	int has_size;                  /* QXmpp omits size for 0-byte files */
	char hash[PROTO_HASH_MAX];     /* lower-case hex, "" if absent/invalid */
	char date[PROTO_DATE_MAX];     /* "" if absent */
	char desc[PROTO_DESC_MAX];
	int range;                     /* <range/> present: resume possible */
	unsigned methods;              /* PROTO_M_* bits offered */
	enum proto_method order[2];    /* methods in the order offered */
	int norder;
};

/*
 * Parse an <iq type='set'><si profile=file-transfer><file/><feature/>
 * offer. -ENOTSUP for another profile (answer 400 bad-profile), -EBADMSG
 * for a missing sid/name/form. Unknown methods are skipped; methods==0 is
 * not an error here (answer 400 no-valid-streams). A hash that is not 32
 * hex digits is dropped (hash[0] = 0), never trusted.
 */
int proto_parse_offer(xmpp_stanza_t *iq, struct proto_offer *out);

/* Build our offer (iq set) to `to`. methods in preference order. */
struct proto_offer_args {
	const char *id, *to, *sid, *name, *hash /* may be NULL */,
		*date /* may be NULL */, *mime /* may be NULL */;
	uint64_t size;
	int range; /* include <range/> */
	const enum proto_method *methods;
	int nmethods;
};
xmpp_stanza_t *proto_build_offer(xmpp_ctx_t *ctx,
				 const struct proto_offer_args *a);

/*
 * Parse the answer to our offer (iq result): the chosen method (when a
 * peer lists two values, as Spark does, the first one we offered that it
 * lists wins: pass our offered list), and <range offset length>.
 */
struct proto_accept {
	enum proto_method method;
	uint64_t offset; /* 0 if no range */
	uint64_t length; /* 0 = the rest */
	int has_range;
};
int proto_parse_accept(xmpp_stanza_t *iq, const enum proto_method *offered,
		       int noffered, struct proto_accept *out);

/* Build our accept (iq result) to an offer, choosing method; offset > 0
 * adds <range offset='…'/>. */
xmpp_stanza_t *proto_build_accept(xmpp_ctx_t *ctx, const char *to,
				  const char *id, enum proto_method method,
				  uint64_t offset);

/* Build an iq error reply (type, condition as in RFC 6120; app_ns/app_cond
 * add an application-specific child like <no-valid-streams xmlns=si/>,
 * NULLs allowed; text may be NULL). */
xmpp_stanza_t *proto_build_error(xmpp_ctx_t *ctx, const char *to,
				 const char *id, const char *type,
				 const char *cond, const char *text,
				 const char *app_ns, const char *app_cond);

/* Of an <iq type='error'>: the condition element name (e.g. "forbidden")
 * and the <text/> into buffers; "" if absent. Returns 0 or -EBADMSG. */
int proto_parse_error(xmpp_stanza_t *iq, char *cond, size_t condlen,
		      char *text, size_t textlen);

/* ---- XEP-0065 iq payloads ----------------------------------------- */

struct proto_streamhost {
	char jid[PROTO_JID_MAX];
	char host[PROTO_HOST_MAX];
	uint16_t port;
};

struct proto_streamhosts {
	char id[PROTO_SID_MAX];
	char from[PROTO_JID_MAX];
	char sid[PROTO_SID_MAX];
	struct proto_streamhost hosts[PROTO_MAX_HOSTS];
	int nhosts;
};
/* Parse <iq type='set'><query xmlns=bytestreams sid mode><streamhost/>…
 * -ENOTSUP for mode='udp'. Hosts with no host or a bad port are skipped. */
int proto_parse_streamhosts(xmpp_stanza_t *iq, struct proto_streamhosts *out);
xmpp_stanza_t *proto_build_streamhosts(xmpp_ctx_t *ctx, const char *id,
				       const char *to, const char *sid,
				       const struct proto_streamhost *hosts,
				       int nhosts);
/* <streamhost-used jid/> from an iq result (sid on <query/> optional). */
int proto_parse_streamhost_used(xmpp_stanza_t *iq, char *jid, size_t len);
xmpp_stanza_t *proto_build_streamhost_used(xmpp_ctx_t *ctx, const char *to,
					   const char *id, const char *sid,
					   const char *jid);
/* Proxy address query result: first <streamhost/> in it. */
int proto_parse_proxy_address(xmpp_stanza_t *iq, struct proto_streamhost *out);
xmpp_stanza_t *proto_build_activate(xmpp_ctx_t *ctx, const char *id,
				    const char *proxy, const char *sid,
				    const char *target);

/* ---- SOCKS5 (RFC 1928) as XEP-0065 uses it -------------------------- */

/* DST.ADDR = hex SHA1(sid + requester full JID + target full JID)
 * (XEP-0065 §5.3.2, §6.3.2); out gets 40 lowercase hex + NUL. */
void proto_s5b_dstaddr(const char *sid, const char *requester,
		       const char *target, char out[41]);

/* Client side: the 3-byte greeting 05 01 00; the 47-byte CONNECT for
 * ATYP=3 with a 40-char host and port 0. Returns bytes written. */
size_t proto_socks5_greeting(uint8_t out[3]);
size_t proto_socks5_connect(const char dstaddr[41], uint8_t out[47]);
/* Check the server's method choice (2 bytes: 05 00) and its reply (05 00 00
 * 03 len host port; reads exactly len). Return 0, -EPROTO, or -EAGAIN when
 * more bytes are needed (*need = total bytes needed). */
int proto_socks5_check_choice(const uint8_t *buf, size_t len);
int proto_socks5_check_reply(const uint8_t *buf, size_t len, size_t *need);

/*
 * Server side (our direct listener), incremental: feed everything received
 * so far. Returns -EAGAIN (need more), 0 when the greeting is complete
 * (*consumed set; we answer 05 00 if it offered method 00, else -EPROTO),
 * and for the request, 0 with the 40-char DST.ADDR in dst (ATYP=3, CMD=1,
 * port 0 required; anything else -EPROTO).
 */
int proto_socks5_parse_greeting(const uint8_t *buf, size_t len,
				size_t *consumed);
int proto_socks5_parse_request(const uint8_t *buf, size_t len,
			       size_t *consumed, char dst[41]);
/* The server's success reply echoing dst: 05 00 00 03 28 <dst> 00 00. */
size_t proto_socks5_reply(const char dst[41], uint8_t out[47]);

/* ---- XEP-0047 ------------------------------------------------------ */

struct proto_ibb_open {
	char id[PROTO_SID_MAX];
	char from[PROTO_JID_MAX];
	char sid[PROTO_SID_MAX];
	unsigned block_size; /* 1..65535 */
	int message;         /* stanza='message' (we refuse it) */
};
int proto_parse_ibb_open(xmpp_stanza_t *iq, struct proto_ibb_open *out);
xmpp_stanza_t *proto_build_ibb_open(xmpp_ctx_t *ctx, const char *id,
				    const char *to, const char *sid,
				    unsigned block_size);

/*
 * Parse <iq type='set'><data sid seq>BASE64</data>: decodes strictly (RFC
 * 4648, whitespace ignored, padding required, no junk) into buf of cap
 * bytes; *len gets the decoded length. -EBADMSG on bad base64 or seq,
 * -E2BIG when it decodes to more than cap.
 */
struct proto_ibb_data {
	char id[PROTO_SID_MAX];
	char from[PROTO_JID_MAX];
	char sid[PROTO_SID_MAX];
	uint16_t seq;
};
int proto_parse_ibb_data(xmpp_stanza_t *iq, struct proto_ibb_data *hdr,
			 uint8_t *buf, size_t cap, size_t *len);
xmpp_stanza_t *proto_build_ibb_data(xmpp_ctx_t *ctx, const char *id,
				    const char *to, const char *sid,
				    uint16_t seq, const uint8_t *data,
				    size_t len);
/* <close sid/>: sid into buf. */
int proto_parse_ibb_close(xmpp_stanza_t *iq, char *sid, size_t len);
xmpp_stanza_t *proto_build_ibb_close(xmpp_ctx_t *ctx, const char *id,
				     const char *to, const char *sid);

/* Strict base64 (RFC 4648 §4) without allocation: decode src into dst
 * (cap bytes). Whitespace is skipped. Returns decoded length or -EBADMSG /
 * -E2BIG. */
long proto_b64_decode(const char *src, size_t srclen, uint8_t *dst,
		      size_t cap);
/* Encode into dst (needs 4*((len+2)/3)+1 bytes); returns the length. */
size_t proto_b64_encode(const uint8_t *src, size_t len, char *dst);

/* ---- file names from the network ---------------------------------- */

/*
 * Make a name safe to show as one entry of inbox/<sender>/: take the part
 * after the last '/' or '\\', drop control characters (C0, DEL) and NUL,
 * replace invalid UTF-8 bytes with '_', strip leading/trailing spaces and
 * dots that would make it hidden or special ("." ".." and names made only of
 * dots become "_"), and cut to at most 255 bytes on a UTF-8 boundary keeping
 * the extension. Never fails: an empty result becomes "unnamed". out needs
 * PROTO_NAME_MAX bytes.
 */
void proto_sanitize_name(const char *in, size_t inlen,
			 char out[PROTO_NAME_MAX]);

/* ---- additions: streaming base64 and helpers shared by proto*.c ---- */

/*
 * Incremental strict base64 (same rules as proto_b64_decode), for text
 * that arrives in several pieces (libstrophe may split an element's text
 * into several text nodes). init, feed each piece, then finish; feed
 * returns 0 or -EBADMSG / -E2BIG (sticky), finish the total decoded length
 * or a negative errno (e.g. input ending mid-quantum). No allocation.
 */
struct proto_b64 {
	uint8_t *dst;
	size_t cap, len;
	uint32_t acc;  /* bits of the current quantum */
	unsigned n;    /* characters in the current quantum, 0..3 */
	unsigned pad;  /* '=' seen in the current quantum */
	int done;      /* a padded quantum ended the data */
	int err;       /* sticky negative errno */
};
void proto_b64_init(struct proto_b64 *s, uint8_t *dst, size_t cap);
int proto_b64_feed(struct proto_b64 *s, const char *src, size_t srclen);
long proto_b64_finish(struct proto_b64 *s);

/*
 * Helpers used by the proto*.c files (exported so the engine and tests can
 * use the same strictness). All take borrowed stanzas.
 *
 * proto_child: first element child with this name and namespace (either
 * may be NULL = any); text nodes are skipped. Borrowed, or NULL.
 * proto_attr_copy: copy an attribute into buf; 0, -ENOENT when absent
 * (buf = ""), -E2BIG when it does not fit (buf = "").
 * proto_text_copy: the concatenated text children of el into buf; 0 or
 * -E2BIG (buf = ""). A NULL el gives "" and 0.
 * proto_parse_u64: strict unsigned decimal (digits only, no sign, no
 * spaces, no overflow): 0 or -EBADMSG.
 * proto_iq_head: check that st is an <iq/> of the given type (NULL = any),
 * and copy its id (required, non-empty) and from (optional, "" if absent)
 * into the buffers (either may be NULL). 0, -EBADMSG or -E2BIG.
 */
xmpp_stanza_t *proto_child(xmpp_stanza_t *st, const char *name,
			   const char *ns);
int proto_attr_copy(xmpp_stanza_t *st, const char *attr, char *buf,
		    size_t len);
int proto_text_copy(xmpp_stanza_t *el, char *buf, size_t len);
int proto_parse_u64(const char *s, uint64_t *out);
int proto_iq_head(xmpp_stanza_t *iq, const char *type, char *id,
		  size_t idlen, char *from, size_t fromlen);

/*
 * Builder helpers with a sticky error, so a builder can add a whole tree
 * and check once: every call after a failure is a no-op.
 * proto_pb_iq starts <iq type id to> (to may be NULL); proto_pb_el adds a
 * child (ns may be NULL = inherited) and returns it (borrowed; NULL after
 * a failure); proto_pb_attr sets an attribute (value NULL = skip);
 * proto_pb_text adds a text child; proto_pb_done returns the root (owned)
 * or, after any failure, releases it and returns NULL.
 */
struct proto_pb {
	xmpp_ctx_t *ctx;
	xmpp_stanza_t *root;
	int err;
};
xmpp_stanza_t *proto_pb_iq(struct proto_pb *b, xmpp_ctx_t *ctx,
			   const char *type, const char *id, const char *to);
xmpp_stanza_t *proto_pb_el(struct proto_pb *b, xmpp_stanza_t *parent,
			   const char *name, const char *ns);
void proto_pb_attr(struct proto_pb *b, xmpp_stanza_t *el, const char *name,
		   const char *value);
void proto_pb_text(struct proto_pb *b, xmpp_stanza_t *el, const char *text,
		   size_t len);
xmpp_stanza_t *proto_pb_done(struct proto_pb *b);

/* Namespace URI of a method ("" for PROTO_M_NONE), and back (trimmed of
 * XML whitespace; PROTO_M_NONE when unknown). */
const char *proto_method_ns(enum proto_method m);
enum proto_method proto_method_from_ns(const char *s, size_t len);

#endif
