/*
 * xmpp/proto_s5b: XEP-0065 SOCKS5 bytestreams: the iq payloads
 * (streamhost list, streamhost-used, proxy address, activate) and the
 * SOCKS5 bytes of RFC 1928 in the narrow profile XEP-0065 uses.
 *
 * Streamhosts come from the peer and become connect() targets, so each
 * one is checked on its own and a bad one is skipped (not fatal): a peer
 * that lists one good host among junk still works. The SOCKS5 parsers are
 * incremental (feed everything received so far; -EAGAIN until complete)
 * and reject a wrong byte as soon as it arrives, never reading past len.
 */
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#define SOCKS5_VER 0x05
#define SOCKS5_CMD_CONNECT 0x01
#define SOCKS5_ATYP_IPV4 0x01
#define SOCKS5_ATYP_DOMAIN 0x03
#define SOCKS5_ATYP_IPV6 0x04
#define S5B_HASH_LEN 40

/* ---- iq payloads --------------------------------------------------- */

static int parse_port(const char *s, uint16_t *port)
{
	uint64_t v;

	if (!s || strlen(s) > 5 || proto_parse_u64(s, &v) < 0 || v == 0 ||
	    v > 65535)
		return -EBADMSG;
	*port = (uint16_t)v;
	return 0;
}

/* A host we would hand to getaddrinfo(): printable ASCII, no spaces. */
static int host_ok(const char *h)
{
	if (!h[0])
		return 0;
	for (; *h; h++)
		if ((unsigned char)*h <= 0x20 || (unsigned char)*h >= 0x7f)
			return 0;
	return 1;
}

/* One <streamhost jid host port/>: 0, or -EBADMSG to skip it. XEP-0065
 * §5.3.1: jid, host and port are REQUIRED (zeroconf is not supported). */
static int parse_streamhost(xmpp_stanza_t *sh, struct proto_streamhost *out)
{
	if (proto_attr_copy(sh, "jid", out->jid, sizeof(out->jid)) < 0 ||
	    !out->jid[0])
		return -EBADMSG;
	if (proto_attr_copy(sh, "host", out->host, sizeof(out->host)) < 0 ||
	    !host_ok(out->host))
		return -EBADMSG;
	return parse_port(xmpp_stanza_get_attribute(sh, "port"), &out->port);
}

static int is_streamhost(xmpp_stanza_t *c)
{
	const char *name;

	if (!xmpp_stanza_is_tag(c))
		return 0;
	name = xmpp_stanza_get_name(c);
	return name && !strcmp(name, "streamhost");
}

int proto_parse_streamhosts(xmpp_stanza_t *iq, struct proto_streamhosts *out)
{
	xmpp_stanza_t *q, *c;
	const char *mode;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = proto_iq_head(iq, "set", out->id, sizeof(out->id), out->from,
			   sizeof(out->from));
	if (rc < 0)
		return rc;
	q = proto_child(iq, "query", NS_BYTESTREAMS);
	if (!q)
		return -EBADMSG;
	rc = proto_attr_copy(q, "sid", out->sid, sizeof(out->sid));
	if (rc == -ENOENT || (rc == 0 && !out->sid[0]))
		return -EBADMSG;
	if (rc < 0)
		return rc;
	/* XEP-0065 §5.3.1: mode defaults to tcp; libpurple and QXmpp omit
	 * it. We do not do udp. */
	mode = xmpp_stanza_get_attribute(q, "mode");
	if (mode && strcmp(mode, "tcp") != 0)
		return -ENOTSUP;
	for (c = xmpp_stanza_get_children(q);
	     c && out->nhosts < PROTO_MAX_HOSTS; c = xmpp_stanza_get_next(c)) {
		if (!is_streamhost(c))
			continue;
		if (parse_streamhost(c, &out->hosts[out->nhosts]) == 0)
			out->nhosts++;
		else
			memset(&out->hosts[out->nhosts], 0,
			       sizeof(out->hosts[0]));
	}
	return 0;
}

xmpp_stanza_t *proto_build_streamhosts(xmpp_ctx_t *ctx, const char *id,
				       const char *to, const char *sid,
				       const struct proto_streamhost *hosts,
				       int nhosts)
{
	struct proto_pb b;
	xmpp_stanza_t *iq, *q, *sh;
	char port[8];

	if (!ctx || !sid || (nhosts > 0 && !hosts))
		return NULL;
	iq = proto_pb_iq(&b, ctx, "set", id, to);
	q = proto_pb_el(&b, iq, "query", NS_BYTESTREAMS);
	proto_pb_attr(&b, q, "sid", sid);
	proto_pb_attr(&b, q, "mode", "tcp");
	for (int i = 0; i < nhosts; i++) {
		sh = proto_pb_el(&b, q, "streamhost", NULL);
		proto_pb_attr(&b, sh, "jid", hosts[i].jid);
		proto_pb_attr(&b, sh, "host", hosts[i].host);
		snprintf(port, sizeof(port), "%u", (unsigned)hosts[i].port);
		proto_pb_attr(&b, sh, "port", port);
	}
	return proto_pb_done(&b);
}

int proto_parse_streamhost_used(xmpp_stanza_t *iq, char *jid, size_t len)
{
	xmpp_stanza_t *used;
	int rc;

	if (jid && len)
		jid[0] = '\0';
	if (!jid || !len)
		return -EINVAL;
	rc = proto_iq_head(iq, "result", NULL, 0, NULL, 0);
	if (rc < 0)
		return rc;
	/* libpurple and Spark send no sid on <query/> (XEP-0065 §5.3.3's
	 * example has one); the iq id already ties it to our request. */
	used = proto_child(proto_child(iq, "query", NS_BYTESTREAMS),
			   "streamhost-used", NULL);
	if (!used)
		return -EBADMSG;
	rc = proto_attr_copy(used, "jid", jid, len);
	if (rc == -ENOENT || (rc == 0 && !jid[0]))
		return -EBADMSG;
	return rc;
}

xmpp_stanza_t *proto_build_streamhost_used(xmpp_ctx_t *ctx, const char *to,
					   const char *id, const char *sid,
					   const char *jid)
{
	struct proto_pb b;
	xmpp_stanza_t *iq, *q, *used;

	if (!ctx || !jid)
		return NULL;
	iq = proto_pb_iq(&b, ctx, "result", id, to);
	q = proto_pb_el(&b, iq, "query", NS_BYTESTREAMS);
	proto_pb_attr(&b, q, "sid", sid);
	used = proto_pb_el(&b, q, "streamhost-used", NULL);
	proto_pb_attr(&b, used, "jid", jid);
	return proto_pb_done(&b);
}

int proto_parse_proxy_address(xmpp_stanza_t *iq, struct proto_streamhost *out)
{
	xmpp_stanza_t *q, *c;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = proto_iq_head(iq, "result", NULL, 0, NULL, 0);
	if (rc < 0)
		return rc;
	q = proto_child(iq, "query", NS_BYTESTREAMS);
	if (!q)
		return -EBADMSG;
	/* XEP-0065 §4: the proxy answers with its own <streamhost/>; take
	 * the first usable one. */
	for (c = xmpp_stanza_get_children(q); c; c = xmpp_stanza_get_next(c)) {
		if (!is_streamhost(c))
			continue;
		if (parse_streamhost(c, out) == 0)
			return 0;
		memset(out, 0, sizeof(*out));
	}
	return -EBADMSG;
}

xmpp_stanza_t *proto_build_activate(xmpp_ctx_t *ctx, const char *id,
				    const char *proxy, const char *sid,
				    const char *target)
{
	struct proto_pb b;
	xmpp_stanza_t *iq, *q, *act;

	if (!ctx || !proxy || !sid || !target)
		return NULL;
	iq = proto_pb_iq(&b, ctx, "set", id, proxy);
	q = proto_pb_el(&b, iq, "query", NS_BYTESTREAMS);
	proto_pb_attr(&b, q, "sid", sid);
	act = proto_pb_el(&b, q, "activate", NULL);
	proto_pb_text(&b, act, target, strlen(target));
	return proto_pb_done(&b);
}

/* ---- SOCKS5 -------------------------------------------------------- */

/*
 * XEP-0065 §5.3.2 / §6.3.2: "DST.ADDR = SHA1 Hash of: (SID + Requester
 * JID + Target JID)", hex-encoded, ATYP 3, DST.PORT 0. The JIDs must be
 * the ones used in the iq exchange, normalised (the caller's job: Spark
 * addresses "Android@..." but answers as "android@...", INTEROP.md).
 * On allocation failure out is "" (which matches no hash).
 */
void proto_s5b_dstaddr(const char *sid, const char *requester,
		       const char *target, char out[41])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok;

	out[0] = '\0';
	if (!c)
		return;
	ok = EVP_DigestInit_ex(c, EVP_sha1(), NULL) == 1 &&
	     EVP_DigestUpdate(c, sid ? sid : "", sid ? strlen(sid) : 0) == 1 &&
	     EVP_DigestUpdate(c, requester ? requester : "",
			      requester ? strlen(requester) : 0) == 1 &&
	     EVP_DigestUpdate(c, target ? target : "",
			      target ? strlen(target) : 0) == 1 &&
	     EVP_DigestFinal_ex(c, md, &mdlen) == 1 && mdlen == 20;
	EVP_MD_CTX_free(c);
	if (!ok)
		return;
	for (unsigned i = 0; i < 20; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[40] = '\0';
}

size_t proto_socks5_greeting(uint8_t out[3])
{
	/* VER 5, NMETHODS 1, METHOD 00 (no authentication). */
	out[0] = SOCKS5_VER;
	out[1] = 1;
	out[2] = 0x00;
	return 3;
}

/* 05 <cmd-or-rep> 00 03 28 <40 hex> 00 00: CONNECT and its reply share
 * the layout (RFC 1928 §4, §6). */
static size_t socks5_frame(uint8_t second, const char dst[41], uint8_t out[47])
{
	out[0] = SOCKS5_VER;
	out[1] = second;
	out[2] = 0x00;
	out[3] = SOCKS5_ATYP_DOMAIN;
	out[4] = S5B_HASH_LEN;
	memcpy(out + 5, dst, S5B_HASH_LEN);
	out[45] = 0;
	out[46] = 0;
	return 47;
}

size_t proto_socks5_connect(const char dstaddr[41], uint8_t out[47])
{
	return socks5_frame(SOCKS5_CMD_CONNECT, dstaddr, out);
}

size_t proto_socks5_reply(const char dst[41], uint8_t out[47])
{
	return socks5_frame(0x00 /* succeeded */, dst, out);
}

int proto_socks5_check_choice(const uint8_t *buf, size_t len)
{
	if (len >= 1 && buf[0] != SOCKS5_VER)
		return -EPROTO;
	if (len >= 2 && buf[1] != 0x00)
		return -EPROTO; /* 0xff: no acceptable method */
	return len < 2 ? -EAGAIN : 0;
}

/*
 * The server's reply: VER REP RSV ATYP BND.ADDR BND.PORT. XEP-0065 says
 * the reply echoes ATYP 3 and the hash; we also accept the IPv4/IPv6
 * forms some SOCKS5 servers use for BND.ADDR, since we never use BND.
 * RSV is not checked (RFC 1928 only reserves it).
 */
int proto_socks5_check_reply(const uint8_t *buf, size_t len, size_t *need)
{
	size_t total;

	if (len >= 1 && buf[0] != SOCKS5_VER)
		return -EPROTO;
	if (len >= 2 && buf[1] != 0x00)
		return -EPROTO; /* REP != succeeded */
	total = 5; /* up to the first byte that fixes the length */
	if (len >= 4) {
		switch (buf[3]) {
		case SOCKS5_ATYP_IPV4:
			total = 4 + 4 + 2;
			break;
		case SOCKS5_ATYP_IPV6:
			total = 4 + 16 + 2;
			break;
		case SOCKS5_ATYP_DOMAIN:
			if (len >= 5)
				total = 5 + (size_t)buf[4] + 2;
			break;
		default:
			return -EPROTO;
		}
	}
	if (need)
		*need = total;
	return len < total ? -EAGAIN : 0;
}

int proto_socks5_parse_greeting(const uint8_t *buf, size_t len,
				size_t *consumed)
{
	size_t total;

	if (consumed)
		*consumed = 0;
	if (len >= 1 && buf[0] != SOCKS5_VER)
		return -EPROTO;
	if (len >= 2 && buf[1] == 0)
		return -EPROTO; /* NMETHODS 0 cannot offer method 00 */
	if (len < 2)
		return -EAGAIN;
	total = 2 + (size_t)buf[1];
	if (len < total)
		return -EAGAIN;
	if (!memchr(buf + 2, 0x00, buf[1]))
		return -EPROTO; /* no "no authentication": we answer 05 ff */
	if (consumed)
		*consumed = total;
	return 0;
}

static int hexdigit(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	       (c >= 'A' && c <= 'F');
}

int proto_socks5_parse_request(const uint8_t *buf, size_t len,
			       size_t *consumed, char dst[41])
{
	/* Expected fixed bytes: VER CMD RSV ATYP LEN. */
	static const uint8_t head[5] = {SOCKS5_VER, SOCKS5_CMD_CONNECT, 0x00,
					SOCKS5_ATYP_DOMAIN, S5B_HASH_LEN};
	size_t i;

	if (consumed)
		*consumed = 0;
	if (dst)
		dst[0] = '\0';
	for (i = 0; i < len && i < 47; i++) {
		if (i < 5 && buf[i] != head[i])
			return -EPROTO;
		if (i >= 5 && i < 45 && !hexdigit(buf[i]))
			return -EPROTO; /* DST.ADDR is a hex SHA1 */
		if (i >= 45 && buf[i] != 0)
			return -EPROTO; /* XEP-0065 §5.3.2: DST.PORT 0 */
	}
	if (len < 47)
		return -EAGAIN;
	if (dst) {
		/* Compare in lower case, as we generate it. */
		for (i = 0; i < S5B_HASH_LEN; i++) {
			uint8_t c = buf[5 + i];

			dst[i] = (char)((c >= 'A' && c <= 'F') ? c - 'A' + 'a'
							       : c);
		}
		dst[S5B_HASH_LEN] = '\0';
	}
	if (consumed)
		*consumed = 47;
	return 0;
}
