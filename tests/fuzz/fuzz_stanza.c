/*
 * libFuzzer target: bytes -> xmpp_stanza_new_from_string -> every
 * proto_parse_* on the result. Parsers must never crash, overflow or
 * leak, and whatever they accept must hold up: strings NUL-terminated in
 * their buffers, counts in range, and an accepted offer/streamhost list/
 * IBB block must survive our own builder and parse back the same.
 */
#include "xmpp/proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static xmpp_ctx_t *ctx;

#define REQUIRE(c)                                                           \
	do {                                                                 \
		if (!(c))                                                    \
			abort();                                             \
	} while (0)

static void terminated(const char *s, size_t cap)
{
	REQUIRE(memchr(s, '\0', cap) != NULL);
}

static void check_offer(xmpp_stanza_t *st)
{
	struct proto_offer o, back;
	struct proto_offer_args a;
	char name[PROTO_NAME_MAX];
	xmpp_stanza_t *built;

	if (proto_parse_offer(st, &o) != 0)
		return;
	terminated(o.raw_name, sizeof(o.raw_name));
	terminated(o.sid, sizeof(o.sid));
	terminated(o.desc, sizeof(o.desc));
	REQUIRE(o.norder >= 0 && o.norder <= 2);
	REQUIRE((o.methods & ~3u) == 0);
	REQUIRE(o.hash[0] == '\0' || strlen(o.hash) == 32);
	proto_sanitize_name(o.raw_name, strlen(o.raw_name), name);
	REQUIRE(name[0] != '\0' && strlen(name) < PROTO_NAME_MAX);
	memset(&a, 0, sizeof(a));
	a.id = o.id;
	a.to = o.from[0] ? o.from : NULL;
	a.sid = o.sid;
	a.name = o.raw_name;
	a.hash = o.hash;
	a.date = o.date;
	a.mime = o.mime;
	a.size = o.size;
	a.range = o.range;
	a.methods = o.order;
	a.nmethods = o.norder;
	built = proto_build_offer(ctx, &a);
	if (!built)
		return; /* allocation failure only */
	REQUIRE(proto_parse_offer(built, &back) == 0);
	REQUIRE(strcmp(back.sid, o.sid) == 0);
	REQUIRE(strcmp(back.raw_name, o.raw_name) == 0);
	REQUIRE(back.size == o.size && back.norder == o.norder);
	xmpp_stanza_release(built);
}

static void check_streamhosts(xmpp_stanza_t *st)
{
	struct proto_streamhosts sh, back;
	xmpp_stanza_t *built;

	if (proto_parse_streamhosts(st, &sh) != 0)
		return;
	REQUIRE(sh.nhosts >= 0 && sh.nhosts <= PROTO_MAX_HOSTS);
	for (int i = 0; i < sh.nhosts; i++) {
		REQUIRE(sh.hosts[i].port != 0);
		REQUIRE(sh.hosts[i].host[0] && sh.hosts[i].jid[0]);
		terminated(sh.hosts[i].host, sizeof(sh.hosts[i].host));
	}
	built = proto_build_streamhosts(ctx, sh.id, NULL, sh.sid, sh.hosts,
					sh.nhosts);
	if (!built)
		return;
	REQUIRE(proto_parse_streamhosts(built, &back) == 0);
	REQUIRE(back.nhosts == sh.nhosts);
	xmpp_stanza_release(built);
}

static void check_ibb(xmpp_stanza_t *st)
{
	static uint8_t buf[65536], back[65536];
	struct proto_ibb_data d, d2;
	struct proto_ibb_open op;
	char sid[PROTO_SID_MAX];
	size_t len = 0, len2 = 0;
	xmpp_stanza_t *built;
	int rc;

	if (proto_parse_ibb_open(st, &op) == 0)
		REQUIRE(op.block_size >= 1 && op.block_size <= 65535);
	rc = proto_parse_ibb_data(st, &d, buf, 16, &len);
	REQUIRE(len <= 16);
	rc = proto_parse_ibb_data(st, &d, buf, sizeof(buf), &len);
	REQUIRE(len <= sizeof(buf));
	if (rc == 0 && len <= 65535) {
		built = proto_build_ibb_data(ctx, d.id, NULL, d.sid, d.seq,
					     buf, len);
		if (built) {
			REQUIRE(proto_parse_ibb_data(built, &d2, back,
						     sizeof(back), &len2) == 0);
			REQUIRE(len2 == len && !memcmp(buf, back, len));
			REQUIRE(d2.seq == d.seq);
			xmpp_stanza_release(built);
		}
	}
	if (proto_parse_ibb_close(st, sid, sizeof(sid)) == 0)
		REQUIRE(sid[0] != '\0');
	(void)proto_parse_ibb_close(st, sid, 1);
}

static void check_rest(xmpp_stanza_t *st)
{
	static const enum proto_method s5b_ibb[] = {PROTO_M_S5B, PROTO_M_IBB};
	static const enum proto_method ibb[] = {PROTO_M_IBB};
	struct proto_accept acc;
	struct proto_streamhost h;
	char cond[32], text[8], jid[PROTO_JID_MAX];

	if (proto_parse_accept(st, s5b_ibb, 2, &acc) == 0)
		REQUIRE(acc.method == PROTO_M_S5B || acc.method == PROTO_M_IBB);
	if (proto_parse_accept(st, ibb, 1, &acc) == 0)
		REQUIRE(acc.method == PROTO_M_IBB);
	(void)proto_parse_accept(st, NULL, 0, &acc);
	if (proto_parse_error(st, cond, sizeof(cond), text, sizeof(text)) == 0) {
		terminated(cond, sizeof(cond));
		terminated(text, sizeof(text));
	}
	(void)proto_parse_error(st, cond, 1, text, 1);
	if (proto_parse_streamhost_used(st, jid, sizeof(jid)) == 0)
		REQUIRE(jid[0] != '\0');
	(void)proto_parse_streamhost_used(st, jid, 2);
	if (proto_parse_proxy_address(st, &h) == 0)
		REQUIRE(h.port != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;
	xmpp_stanza_t *st;

	if (!ctx) {
		xmpp_initialize();
		ctx = xmpp_ctx_new(NULL, NULL);
		if (!ctx)
			abort();
	}
	if (size > 256 * 1024)
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	st = xmpp_stanza_new_from_string(ctx, text);
	free(text);
	if (!st)
		return 0;
	check_offer(st);
	check_streamhosts(st);
	check_ibb(st);
	check_rest(st);
	xmpp_stanza_release(st);
	return 0;
}
