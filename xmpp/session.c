/*
 * xmpp/session: the xmpp thread. It alone touches the libstrophe context
 * and connection (LIBSTROPHE.md §2: no locks inside libstrophe).
 *
 * The loop (STYLE.md §5.3): poll() on the server socket and an eventfd,
 * then drain worker events, run the transfer engine's tick, and call
 * xmpp_run_once(ctx, 0) several times, because run_once reads at most
 * 4 KiB and TLS-buffered bytes never show up in poll().
 *
 * Replies are matched by our own table (xt->pending) through one catch-all
 * iq handler, not xmpp_id_handler_add(): libstrophe never frees an id key
 * until the connection is released (LIBSTROPHE.md §4).
 *
 * TLS is mandatory (no plaintext fallback) and certificates are verified;
 * with cafile= only that CA is trusted: libstrophe adds the cafile to the
 * system store, so on CONNECT we check the chain ourselves against cafile
 * alone and drop the link if it does not verify.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "util/jid.h"
#include "util/log.h"
#include "xmpp/xt_int.h"

#define NS_ROSTER "jabber:iq:roster"
#define NS_PING "urn:xmpp:ping"

static int64_t now_ms(void)
{
	return store_now_ms();
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* ---- sending and pending iqs --------------------------------------- */

void xt_next_id(struct xt *xt, char *buf, size_t len)
{
	snprintf(buf, len, "xfs%llu", (unsigned long long)++xt->next_id);
}

void xt_send(struct xt *xt, xmpp_stanza_t *st)
{
	if (xt->conn && xt->online)
		xmpp_send(xt->conn, st);
	xmpp_stanza_release(st);
}

void xt_send_iq(struct xt *xt, xmpp_stanza_t *iq, xt_iq_fn fn,
		uint64_t serial, int kind, int timeout_ms)
{
	struct xt_pending *p = calloc(1, sizeof(*p));

	if (!p) {
		xmpp_stanza_release(iq);
		return;
	}
	xt_next_id(xt, p->id, sizeof(p->id));
	xmpp_stanza_set_id(iq, p->id);
	p->fn = fn;
	p->serial = serial;
	p->kind = kind;
	p->deadline_ms = now_ms() + (timeout_ms ? timeout_ms
						: XT_IQ_TIMEOUT_MS);
	p->next = xt->pending;
	xt->pending = p;
	xt_send(xt, iq);
}

/* Complete pending iqs past their deadline (or all, with reply NULL). */
static void expire_pending(struct xt *xt, int all)
{
	int64_t now = now_ms();
	struct xt_pending **pp = &xt->pending;

	while (*pp) {
		struct xt_pending *p = *pp;

		if (all || p->deadline_ms <= now) {
			*pp = p->next;
			if (p->fn)
				p->fn(xt, NULL, p->serial, p->kind);
			free(p);
		} else {
			pp = &p->next;
		}
	}
}

static int dispatch_reply(struct xt *xt, xmpp_stanza_t *iq)
{
	const char *id = xmpp_stanza_get_id(iq);
	struct xt_pending **pp = &xt->pending;

	if (!id)
		return 0;
	for (; *pp; pp = &(*pp)->next) {
		struct xt_pending *p = *pp;

		if (strcmp(p->id, id) != 0)
			continue;
		*pp = p->next;
		if (p->fn)
			p->fn(xt, iq, p->serial, p->kind);
		free(p);
		return 1;
	}
	return 0;
}

void xt_reply_error(struct xt *xt, xmpp_stanza_t *iq, const char *type,
		    const char *cond, const char *text, const char *app_ns,
		    const char *app_cond)
{
	const char *from = xmpp_stanza_get_from(iq);
	const char *id = xmpp_stanza_get_id(iq);
	xmpp_stanza_t *e;

	if (!id)
		return;
	e = proto_build_error(xt->ctx, from, id, type, cond, text, app_ns,
			      app_cond);
	if (e)
		xt_send(xt, e);
}

void xt_reply_result(struct xt *xt, xmpp_stanza_t *iq)
{
	const char *from = xmpp_stanza_get_from(iq);
	const char *id = xmpp_stanza_get_id(iq);
	xmpp_stanza_t *r;

	if (!id)
		return;
	r = xmpp_iq_new(xt->ctx, "result", id);
	if (!r)
		return;
	if (from)
		xmpp_stanza_set_to(r, from);
	xt_send(xt, r);
}

/* ---- peers (online resources of contacts) --------------------------- */

static struct xt_peer *peer_find(struct xt *xt, const char *full)
{
	for (struct xt_peer *p = xt->peers; p; p = p->next)
		if (strcmp(p->full, full) == 0)
			return p;
	return NULL;
}

static void peer_remove(struct xt *xt, const char *full)
{
	for (struct xt_peer **pp = &xt->peers; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->full, full) == 0) {
			struct xt_peer *p = *pp;

			*pp = p->next;
			free(p);
			return;
		}
	}
}

struct xt_peer *xt_best_peer(struct xt *xt, const char *bare)
{
	struct xt_peer *best = NULL;

	for (struct xt_peer *p = xt->peers; p; p = p->next) {
		if (p->ft != 1 || strcmp(p->bare, bare) != 0)
			continue;
		if (!best || p->priority > best->priority)
			best = p;
	}
	return best;
}

static int has_feature(xmpp_stanza_t *query, const char *var)
{
	for (xmpp_stanza_t *c = xmpp_stanza_get_children(query); c;
	     c = xmpp_stanza_get_next(c)) {
		const char *name = xmpp_stanza_get_name(c);
		const char *v;

		if (!xmpp_stanza_is_tag(c) || !name ||
		    strcmp(name, "feature") != 0)
			continue;
		v = xmpp_stanza_get_attribute(c, "var");
		if (v && strcmp(v, var) == 0)
			return 1;
	}
	return 0;
}

static void on_peer_disco(struct xt *xt, xmpp_stanza_t *iq, uint64_t serial,
			  int kind)
{
	const char *from, *type;
	xmpp_stanza_t *q;
	struct xt_peer *p;

	(void)serial;
	(void)kind;
	if (!iq)
		return;
	from = xmpp_stanza_get_from(iq);
	type = xmpp_stanza_get_type(iq);
	p = from ? peer_find(xt, from) : NULL;
	if (!p)
		return;
	q = xmpp_stanza_get_child_by_ns(iq, NS_DISCO_INFO);
	p->ft = type && strcmp(type, "result") == 0 && q &&
		has_feature(q, NS_SI) && has_feature(q, NS_SI_FT);
	log_debug("xt", "%s %s SI file transfer", p->full,
		  p->ft ? "supports" : "does not support");
	if (p->ft)
		xt_wake(xt);
}

static void disco_peer(struct xt *xt, struct xt_peer *p)
{
	xmpp_stanza_t *iq = xmpp_iq_new(xt->ctx, "get", NULL);
	xmpp_stanza_t *q = xmpp_stanza_new(xt->ctx);

	xmpp_stanza_set_to(iq, p->full);
	xmpp_stanza_set_name(q, "query");
	xmpp_stanza_set_ns(q, NS_DISCO_INFO);
	xmpp_stanza_add_child_ex(iq, q, 0);
	p->disco_sent = 1;
	xt_send_iq(xt, iq, on_peer_disco, 0, 0, 30000);
}

static int on_presence(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct xt *xt = ud;
	const char *from = xmpp_stanza_get_from(st);
	const char *type = xmpp_stanza_get_type(st);
	char full[PROTO_JID_MAX], bare[STORE_JID_MAX];
	struct xt_peer *p;

	(void)conn;
	if (!from || jid_normalize(from, full, sizeof(full)) < 0 ||
	    !jid_resource(full) || jid_to_bare(full, bare, sizeof(bare)) < 0)
		return 1;
	if (strcmp(full, xt->self) == 0)
		return 1;
	if (type && strcmp(type, "unavailable") == 0) {
		peer_remove(xt, full);
		xfer_peer_gone(xt, full);
		return 1;
	}
	if (type && strcmp(type, "error") == 0) {
		peer_remove(xt, full);
		return 1;
	}
	if (type) /* subscribe etc.: not ours to answer automatically */
		return 1;
	p = peer_find(xt, full);
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return 1;
		snprintf(p->full, sizeof(p->full), "%s", full);
		snprintf(p->bare, sizeof(p->bare), "%s", bare);
		p->ft = -1;
		p->next = xt->peers;
		xt->peers = p;
	}
	{
		xmpp_stanza_t *pr = xmpp_stanza_get_child_by_name(st,
								 "priority");
		char *t = pr ? xmpp_stanza_get_text(pr) : NULL;

		p->priority = t ? atoi(t) : 0;
		if (t)
			xmpp_free(xt->ctx, t);
	}
	if (!p->disco_sent)
		disco_peer(xt, p);
	return 1;
}

/* ---- roster ---------------------------------------------------------- */

static void roster_items(struct xt *xt, xmpp_stanza_t *query)
{
	for (xmpp_stanza_t *it = xmpp_stanza_get_children(query); it;
	     it = xmpp_stanza_get_next(it)) {
		const char *jid, *sub, *name = xmpp_stanza_get_name(it);
		char bare[STORE_JID_MAX];

		if (!xmpp_stanza_is_tag(it) || !name ||
		    strcmp(name, "item") != 0)
			continue;
		jid = xmpp_stanza_get_attribute(it, "jid");
		sub = xmpp_stanza_get_attribute(it, "subscription");
		if (!jid || jid_bare_normalize(jid, bare, sizeof(bare)) < 0)
			continue;
		if (sub && strcmp(sub, "remove") == 0) {
			store_contact_set_roster(xt->st, bare, 0);
			continue;
		}
		store_contact_set_roster(xt->st, bare,
					 sub && (strcmp(sub, "to") == 0 ||
						 strcmp(sub, "both") == 0));
	}
}

static void on_roster(struct xt *xt, xmpp_stanza_t *iq, uint64_t serial,
		      int kind)
{
	xmpp_stanza_t *q, *pres;

	(void)serial;
	(void)kind;
	if (iq) {
		q = xmpp_stanza_get_child_by_ns(iq, NS_ROSTER);
		if (q)
			roster_items(xt, q);
	}
	/* Initial presence after the roster (RFC 6121 §4.2). */
	pres = xmpp_presence_new(xt->ctx);
	if (pres)
		xt_send(xt, pres);
}

static void request_roster(struct xt *xt)
{
	xmpp_stanza_t *iq = xmpp_iq_new(xt->ctx, "get", NULL);
	xmpp_stanza_t *q = xmpp_stanza_new(xt->ctx);

	xmpp_stanza_set_name(q, "query");
	xmpp_stanza_set_ns(q, NS_ROSTER);
	xmpp_stanza_add_child_ex(iq, q, 0);
	xt_send_iq(xt, iq, on_roster, 0, 0, 30000);
}

/* ---- proxy discovery (XEP-0065 §4) ---------------------------------- */

enum { DK_ITEMS = 1, DK_INFO, DK_ADDR };

static void disco_send(struct xt *xt, const char *to, const char *ns,
		       int kind);

static void on_proxy_disco(struct xt *xt, xmpp_stanza_t *iq, uint64_t serial,
			   int kind)
{
	const char *type = iq ? xmpp_stanza_get_type(iq) : NULL;
	const char *from = iq ? xmpp_stanza_get_from(iq) : NULL;
	xmpp_stanza_t *q;

	(void)serial;
	if (!iq || !type || strcmp(type, "result") != 0)
		return;
	if (kind == DK_ITEMS) {
		q = xmpp_stanza_get_child_by_ns(iq, NS_DISCO_ITEMS);
		for (xmpp_stanza_t *c = q ? xmpp_stanza_get_children(q) : NULL;
		     c; c = xmpp_stanza_get_next(c)) {
			const char *jid = xmpp_stanza_is_tag(c)
				? xmpp_stanza_get_attribute(c, "jid") : NULL;

			/* Prosody names no item (server-disco-items-result):
			 * ask each one what it is. */
			if (jid)
				disco_send(xt, jid, NS_DISCO_INFO, DK_INFO);
		}
	} else if (kind == DK_INFO) {
		q = xmpp_stanza_get_child_by_ns(iq, NS_DISCO_INFO);
		for (xmpp_stanza_t *c = q ? xmpp_stanza_get_children(q) : NULL;
		     c; c = xmpp_stanza_get_next(c)) {
			const char *cat, *ty, *name = xmpp_stanza_get_name(c);

			if (!xmpp_stanza_is_tag(c) || !name ||
			    strcmp(name, "identity") != 0)
				continue;
			cat = xmpp_stanza_get_attribute(c, "category");
			ty = xmpp_stanza_get_attribute(c, "type");
			if (cat && ty && strcmp(cat, "proxy") == 0 &&
			    strcmp(ty, "bytestreams") == 0 && from &&
			    !xt->proxy_jid[0])
				disco_send(xt, from, NS_BYTESTREAMS, DK_ADDR);
		}
	} else if (kind == DK_ADDR && !xt->proxy_jid[0]) {
		struct proto_streamhost h;

		if (proto_parse_proxy_address(iq, &h) == 0) {
			snprintf(xt->proxy_jid, sizeof(xt->proxy_jid), "%s",
				 h.jid[0] ? h.jid : from);
			snprintf(xt->proxy_host, sizeof(xt->proxy_host), "%s",
				 h.host);
			xt->proxy_port = h.port;
			log_info("xt", "SOCKS5 proxy %s at %s:%u",
				 xt->proxy_jid, h.host, h.port);
		}
	}
}

static void disco_send(struct xt *xt, const char *to, const char *ns,
		       int kind)
{
	xmpp_stanza_t *iq = xmpp_iq_new(xt->ctx, "get", NULL);
	xmpp_stanza_t *q = xmpp_stanza_new(xt->ctx);

	xmpp_stanza_set_to(iq, to);
	xmpp_stanza_set_name(q, "query");
	xmpp_stanza_set_ns(q, ns);
	xmpp_stanza_add_child_ex(iq, q, 0);
	xt_send_iq(xt, iq, on_proxy_disco, 0, kind, 30000);
}

static void find_proxy(struct xt *xt)
{
	const char *domain = strchr(xt->cfg.jid, '@');

	xt->proxy_jid[0] = '\0';
	if (xt->cfg.proxy && strcmp(xt->cfg.proxy, "none") == 0)
		return;
	if (xt->cfg.proxy) {
		disco_send(xt, xt->cfg.proxy, NS_BYTESTREAMS, DK_ADDR);
		return;
	}
	disco_send(xt, domain ? domain + 1 : xt->cfg.jid, NS_DISCO_ITEMS,
		   DK_ITEMS);
}

/* ---- requests from others -------------------------------------------- */

static void answer_disco(struct xt *xt, xmpp_stanza_t *iq)
{
	static const char *const features[] = {
		NS_DISCO_INFO, NS_SI, NS_SI_FT, NS_FEATURE_NEG,
		NS_BYTESTREAMS, NS_IBB, NS_PING,
	};
	const char *from = xmpp_stanza_get_from(iq);
	xmpp_stanza_t *r, *q, *id;
	xmpp_stanza_t *req = xmpp_stanza_get_child_by_ns(iq, NS_DISCO_INFO);
	const char *node = req ? xmpp_stanza_get_attribute(req, "node") : NULL;

	r = xmpp_iq_new(xt->ctx, "result", xmpp_stanza_get_id(iq));
	if (!r)
		return;
	if (from)
		xmpp_stanza_set_to(r, from);
	q = xmpp_stanza_new(xt->ctx);
	xmpp_stanza_set_name(q, "query");
	xmpp_stanza_set_ns(q, NS_DISCO_INFO);
	if (node)
		xmpp_stanza_set_attribute(q, "node", node);
	id = xmpp_stanza_new(xt->ctx);
	xmpp_stanza_set_name(id, "identity");
	xmpp_stanza_set_attribute(id, "category", "client");
	xmpp_stanza_set_attribute(id, "type", "pc");
	xmpp_stanza_set_attribute(id, "name", "xmppfs");
	xmpp_stanza_add_child_ex(q, id, 0);
	for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
		xmpp_stanza_t *f = xmpp_stanza_new(xt->ctx);

		xmpp_stanza_set_name(f, "feature");
		xmpp_stanza_set_attribute(f, "var", features[i]);
		xmpp_stanza_add_child_ex(q, f, 0);
	}
	xmpp_stanza_add_child_ex(r, q, 0);
	xt_send(xt, r);
}

static int from_server_or_self(struct xt *xt, const char *from)
{
	char bare[STORE_JID_MAX];

	if (!from)
		return 1;
	return jid_to_bare(from, bare, sizeof(bare)) == 0 &&
	       strcmp(bare, xt->cfg.jid) == 0;
}

static int on_iq(xmpp_conn_t *conn, xmpp_stanza_t *iq, void *ud)
{
	struct xt *xt = ud;
	const char *type = xmpp_stanza_get_type(iq);

	(void)conn;
	if (!type)
		return 1;
	if (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) {
		dispatch_reply(xt, iq);
		return 1;
	}
	if (strcmp(type, "get") != 0 && strcmp(type, "set") != 0)
		return 1;
	if (strcmp(type, "get") == 0 &&
	    xmpp_stanza_get_child_by_ns(iq, NS_DISCO_INFO)) {
		answer_disco(xt, iq);
		return 1;
	}
	if (strcmp(type, "get") == 0 &&
	    xmpp_stanza_get_child_by_ns(iq, NS_PING)) {
		xt_reply_result(xt, iq);
		return 1;
	}
	if (strcmp(type, "set") == 0 &&
	    xmpp_stanza_get_child_by_ns(iq, NS_ROSTER)) {
		/* RFC 6121 §2.1.6: pushes come only from our own account. */
		if (from_server_or_self(xt, xmpp_stanza_get_from(iq))) {
			roster_items(xt, xmpp_stanza_get_child_by_ns(
						 iq, NS_ROSTER));
			xt_reply_result(xt, iq);
		}
		return 1;
	}
	if (xfer_handle_iq(xt, iq))
		return 1;
	/* RFC 6120 §8.2.3: an iq get/set nobody understands gets an error. */
	xt_reply_error(xt, iq, "cancel", "service-unavailable", NULL, NULL,
		       NULL);
	return 1;
}

/* ---- connection ------------------------------------------------------ */

static void free_subscribed(struct xt *xt);

static void start_result(struct xt *xt, int rc, const char *msg)
{
	pthread_mutex_lock(&xt->start_lock);
	if (!xt->start_done) {
		xt->start_done = 1;
		xt->start_rc = rc;
		snprintf(xt->start_err, sizeof(xt->start_err), "%s",
			 msg ? msg : "");
		pthread_cond_broadcast(&xt->start_cond);
	}
	pthread_mutex_unlock(&xt->start_lock);
}

/* cafile= means "trust this CA alone", as curl's --cacert: libstrophe
 * added it to the system store, so verify the peer certificate again
 * against a store that holds nothing else. */
static int cert_pinned_ok(struct xt *xt, char *why, size_t len)
{
	xmpp_tlscert_t *cert;
	X509_STORE *store = NULL;
	X509_STORE_CTX *vctx = NULL;
	X509 *x = NULL;
	BIO *bio = NULL;
	const char *pem = NULL;
	int ok = 0;

	if (!xt->cfg.cafile)
		return 1;
	cert = xmpp_conn_get_peer_cert(xt->conn);
	if (!cert) {
		snprintf(why, len, "server sent no certificate");
		return 0;
	}
	pem = xmpp_tlscert_get_pem(cert);
	bio = pem ? BIO_new_mem_buf(pem, -1) : NULL;
	x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	store = X509_STORE_new();
	vctx = X509_STORE_CTX_new();
	if (x && store && vctx &&
	    X509_STORE_load_file(store, xt->cfg.cafile) == 1 &&
	    X509_STORE_CTX_init(vctx, store, x, NULL) == 1) {
		/* The chain the server sent may hold intermediates; a
		 * self-contained test CA signs the leaf directly. */
		ok = X509_verify_cert(vctx) == 1;
		if (!ok)
			snprintf(why, len, "certificate not signed by %s: %s",
				 xt->cfg.cafile,
				 X509_verify_cert_error_string(
					 X509_STORE_CTX_get_error(vctx)));
	} else {
		snprintf(why, len, "cannot check the certificate against %s",
			 xt->cfg.cafile);
	}
	X509_STORE_CTX_free(vctx);
	X509_STORE_free(store);
	X509_free(x);
	BIO_free(bio);
	xmpp_tlscert_free(cert);
	return ok;
}

static void go_online(struct xt *xt)
{
	const char *bound = xmpp_conn_get_bound_jid(xt->conn);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[PROTO_HOST_MAX] = "";

	snprintf(xt->self, sizeof(xt->self), "%s", bound ? bound : "");
	xt->online = 1;
	xt->connecting = 0;
	xt->backoff_ms = 0;
	xt->ping_due_ms = now_ms() + XT_PING_MS;
	xt->ping_deadline_ms = 0;
	store_set_link(xt->st, "online");
	log_info("xt", "logged in as %s", xt->self);

	/* The direct streamhost: s5b_host=, else the local address of the
	 * link to the server (INTEROP.md §2.1: never blindly offer
	 * loopback; this is an address the server could reach us on). */
	if (!xt->cfg.s5b_host || strcmp(xt->cfg.s5b_host, "none") != 0) {
		if (xt->cfg.s5b_host) {
			snprintf(host, sizeof(host), "%s", xt->cfg.s5b_host);
		} else if (xt->sock >= 0 &&
			   getsockname(xt->sock, (struct sockaddr *)&ss,
				       &sl) == 0) {
			getnameinfo((struct sockaddr *)&ss, sl, host,
				    sizeof(host), NULL, 0, NI_NUMERICHOST);
		}
		if (host[0] && (xt->listen_fd < 0 ||
				strcmp(host, xt->listen_host) != 0)) {
			xt_s5b_stop(xt);
			if (xt_s5b_listen(xt, host) < 0)
				log_warn("xt", "cannot listen on %s for "
					 "SOCKS5", host);
		}
	}
	request_roster(xt);
	find_proxy(xt);
	start_result(xt, 0, NULL);
	xt_wake(xt);
}

static void go_offline(struct xt *xt)
{
	xt->online = 0;
	xt->connecting = 0;
	xt->sock = -1;
	/* Transfers first, so the pending replies expired next find no
	 * transfer and do not count as refusals. */
	xfer_disconnected(xt);
	expire_pending(xt, 1);
	while (xt->peers) {
		struct xt_peer *p = xt->peers;

		xt->peers = p->next;
		free(p);
	}
	xt->proxy_jid[0] = '\0';
	free_subscribed(xt);
}

static void conn_cb(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
		    xmpp_stream_error_t *se, void *ud)
{
	struct xt *xt = ud;
	char why[400];

	(void)conn;
	log_debug("xt", "connection event %d (error %d)", (int)ev, error);
	if (ev == XMPP_CONN_CONNECT) {
		if (!cert_pinned_ok(xt, why, sizeof(why))) {
			log_warnx("xt", "%s", why);
			start_result(xt, -EPERM, why);
			store_set_link(xt->st, "error: untrusted certificate");
			xmpp_disconnect(xt->conn);
			xt->reconnect_at_ms = INT64_MAX; /* until restart */
			return;
		}
		go_online(xt);
		return;
	}
	if (ev != XMPP_CONN_DISCONNECT)
		return;
	if (xt->online)
		log_warnx("xt", "disconnected from the server");
	go_offline(xt);
	if (xt->reconnect_at_ms == INT64_MAX)
		return;
	if (se && se->type == XMPP_SE_CONFLICT) {
		snprintf(why, sizeof(why), "resource '%s' is in use by another "
			 "login", xt->cfg.resource);
	} else if (xt->cert_failed) {
		/* Only the certfail handler tells this apart: the error code
		 * (ECONNABORTED) is the same as for a server that went down
		 * mid-handshake. */
		snprintf(why, sizeof(why), "TLS certificate of the server is "
			 "not trusted: %s (set cafile= to its CA)",
			 xt->cert_why);
		start_result(xt, -EPERM, why);
		store_set_link(xt->st, "error: untrusted certificate");
		xt->reconnect_at_ms = INT64_MAX;
		return;
	} else {
		snprintf(why, sizeof(why), "cannot reach %s:%u",
			 xt->cfg.server ? xt->cfg.server : "the server",
			 xt->cfg.port ? xt->cfg.port : 5222);
	}
	/* Only the first outcome counts: an auth failure was recorded by
	 * the log handler before this DISCONNECT. */
	start_result(xt, -ECONNREFUSED, why);
	store_set_link(xt->st, "offline");
	/* Exponential backoff with jitter, capped near a minute. */
	xt->backoff_ms = xt->backoff_ms ? xt->backoff_ms * 2 : 1000;
	if (xt->backoff_ms > 60000)
		xt->backoff_ms = 60000;
	xt->reconnect_at_ms = now_ms() + xt->backoff_ms / 2 +
			      (int64_t)(rand() % (xt->backoff_ms / 2 + 1));
}

/* libstrophe gives the socket only to the sockopt callback, which has no
 * user data: one engine per process, so a static pointer does. */
static struct xt *sock_owner;

/* Runs only when libstrophe's own verification failed: refuse, and
 * remember why, so the disconnect that follows is not taken for a
 * network problem. */
static int certfail(const xmpp_tlscert_t *cert, const char *msg)
{
	(void)cert;
	if (sock_owner) {
		sock_owner->cert_failed = 1;
		snprintf(sock_owner->cert_why, sizeof(sock_owner->cert_why),
			 "%s", msg ? msg : "verification failed");
	}
	return 0;
}
static int sockopt_keep(xmpp_conn_t *conn, void *sock)
{
	if (sock_owner)
		sock_owner->sock = *(int *)sock;
	xmpp_sockopt_cb_keepalive(conn, sock);
	return 0;
}

/* libstrophe's error lines we turn into our own messages. */
static void strophe_log(void *ud, xmpp_log_level_t level, const char *area,
			const char *msg)
{
	struct xt *xt = ud;

	if (strncmp(msg, "SENT:", 5) == 0 || strncmp(msg, "RECV:", 5) == 0)
		return; /* never log stanzas: they carry passwords and data */
	if (level == XMPP_LEVEL_ERROR) {
		if (strstr(msg, "authenticate") || strstr(msg, "auth"))
			start_result(xt, -EACCES, "login refused: wrong "
				     "password or unknown account");
		log_warnx("strophe", "%s: %s", area, msg);
	} else if (xt->cfg.debug) {
		log_debug("strophe", "%s: %s", area, msg);
	}
}

static int connect_now(struct xt *xt)
{
	char full[PROTO_JID_MAX];
	int rc;

	if (xt->conn)
		xmpp_conn_release(xt->conn);
	xt->conn = xmpp_conn_new(xt->ctx);
	if (!xt->conn)
		return -ENOMEM;
	snprintf(full, sizeof(full), "%s/%s", xt->cfg.jid, xt->cfg.resource);
	xmpp_conn_set_jid(xt->conn, full);
	xmpp_conn_set_pass(xt->conn, xt->cfg.password);
	/* LIBSTROPHE.md §1: without MANDATORY_TLS a failed TLS setup means
	 * a plaintext login. */
	xmpp_conn_set_flags(xt->conn, XMPP_CONN_FLAG_MANDATORY_TLS);
	if (xt->cfg.cafile)
		xmpp_conn_set_cafile(xt->conn, xt->cfg.cafile);
	sock_owner = xt;
	xt->cert_failed = 0;
	xmpp_conn_set_sockopt_callback(xt->conn, sockopt_keep);
	xmpp_conn_set_certfail_handler(xt->conn, certfail);
	xmpp_handler_add(xt->conn, on_iq, NULL, "iq", NULL, xt);
	xmpp_handler_add(xt->conn, on_presence, NULL, "presence", NULL, xt);
	xt->connecting = 1;
	xt->connect_started_ms = now_ms();
	xt->sock = -1;
	store_set_link(xt->st, "connecting");
	rc = xmpp_connect_client(xt->conn, xt->cfg.server, xt->cfg.port,
				 conn_cb, xt);
	if (rc < 0) {
		xt->connecting = 0;
		return -ECONNREFUSED;
	}
	return 0;
}

/* XEP-0199 keepalive: only a ping catches a hung server (LIBSTROPHE §5). */
static void on_pong(struct xt *xt, xmpp_stanza_t *iq, uint64_t serial,
		    int kind)
{
	(void)serial;
	(void)kind;
	(void)iq;
	xt->ping_deadline_ms = 0;
}

static void keepalive(struct xt *xt, int64_t now)
{
	if (!xt->online)
		return;
	if (xt->ping_deadline_ms && now > xt->ping_deadline_ms) {
		log_warnx("xt", "server does not answer pings; reconnecting");
		xt->ping_deadline_ms = 0;
		if (xt->sock >= 0)
			shutdown(xt->sock, SHUT_RDWR);
		xmpp_disconnect(xt->conn);
		return;
	}
	if (now >= xt->ping_due_ms) {
		xmpp_stanza_t *iq = xmpp_iq_new(xt->ctx, "get", NULL);
		xmpp_stanza_t *p = xmpp_stanza_new(xt->ctx);
		const char *domain = strchr(xt->cfg.jid, '@');

		xmpp_stanza_set_to(iq, domain ? domain + 1 : xt->cfg.jid);
		xmpp_stanza_set_name(p, "ping");
		xmpp_stanza_set_ns(p, NS_PING);
		xmpp_stanza_add_child_ex(iq, p, 0);
		xt->ping_deadline_ms = now + XT_PING_TIMEOUT_MS;
		xt->ping_due_ms = now + XT_PING_MS;
		xt_send_iq(xt, iq, on_pong, 0, 0, XT_PING_TIMEOUT_MS + 5000);
	}
}

/* DESIGN: "mkdir outbox/dave@example.com adds a recipient (and asks for a
 * presence subscription)". A contact made by mkdir that the roster does
 * not know yet gets one subscribe per session (RFC 6121 §3.1.1); the
 * server then pushes the new roster item to us. */
struct sub_ctx {
	struct xt *xt;
};

static int subscribe_one(const struct store_contact *c, void *arg)
{
	struct xt *xt = ((struct sub_ctx *)arg)->xt;
	struct xt_subscribed *s;
	xmpp_stanza_t *p;

	if ((c->origin & STORE_CONTACT_ROSTER) ||
	    !(c->origin & STORE_CONTACT_USER))
		return 0;
	for (s = xt->subscribed; s; s = s->next)
		if (strcmp(s->jid, c->jid) == 0)
			return 0;
	s = calloc(1, sizeof(*s));
	if (!s)
		return 1;
	snprintf(s->jid, sizeof(s->jid), "%s", c->jid);
	s->next = xt->subscribed;
	xt->subscribed = s;
	p = xmpp_presence_new(xt->ctx);
	if (!p)
		return 1;
	xmpp_stanza_set_type(p, "subscribe");
	xmpp_stanza_set_to(p, c->jid);
	log_info("xt", "asking %s for a presence subscription", c->jid);
	xt_send(xt, p);
	return 0;
}

static void subscribe_new_contacts(struct xt *xt)
{
	struct sub_ctx sc = {.xt = xt};

	if (atomic_load(&xt->rows_changed))
		store_contact_list(xt->st, subscribe_one, &sc);
}

static void free_subscribed(struct xt *xt)
{
	while (xt->subscribed) {
		struct xt_subscribed *s = xt->subscribed;

		xt->subscribed = s->next;
		free(s);
	}
}

static void drain_events(struct xt *xt)
{
	struct xt_ev *ev;
	uint64_t v;

	if (read(xt->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("xt", "eventfd");
	pthread_mutex_lock(&xt->qlock);
	ev = xt->q_head;
	xt->q_head = xt->q_tail = NULL;
	pthread_mutex_unlock(&xt->qlock);
	while (ev) {
		struct xt_ev *next = ev->next;

		xfer_on_event(xt, ev);
		if (ev->job)
			xt_job_unref(ev->job);
		free(ev);
		ev = next;
	}
}

/* Drop queued events without handling them (shutdown). */
static void drain_queue(struct xt *xt)
{
	struct xt_ev *ev;

	pthread_mutex_lock(&xt->qlock);
	ev = xt->q_head;
	xt->q_head = xt->q_tail = NULL;
	pthread_mutex_unlock(&xt->qlock);
	while (ev) {
		struct xt_ev *next = ev->next;

		if (ev->job)
			xt_job_unref(ev->job);
		free(ev);
		ev = next;
	}
}

void xt_post(struct xt *xt, enum xt_ev_kind kind, struct xt_job *job)
{
	struct xt_ev *ev = calloc(1, sizeof(*ev));
	uint64_t one = 1;

	if (!ev)
		return; /* the job's deadline catches it */
	ev->kind = kind;
	ev->job = job;
	if (job)
		atomic_fetch_add(&job->refs, 1);
	pthread_mutex_lock(&xt->qlock);
	if (xt->q_tail)
		xt->q_tail->next = ev;
	else
		xt->q_head = ev;
	xt->q_tail = ev;
	pthread_mutex_unlock(&xt->qlock);
	if (write(xt->evfd, &one, sizeof(one)) < 0)
		(void)0;
}

void xt_wake(void *arg)
{
	struct xt *xt = arg;
	uint64_t one = 1;

	if (!xt)
		return;
	atomic_store(&xt->rows_changed, 1);
	if (write(xt->evfd, &one, sizeof(one)) < 0)
		(void)0;
}

static void *xt_thread(void *arg)
{
	struct xt *xt = arg;

	pthread_setname_np(pthread_self(), "xmpp");
	while (!atomic_load(&xt->stopping)) {
		struct pollfd fds[2];
		int64_t now = now_ms();
		int n = 1;

		/* A login that hangs (a server going down mid-handshake
		 * accepts the TCP connection, then says nothing) would never
		 * end on its own: give it up and try again. */
		if (xt->connecting && !xt->online &&
		    now - xt->connect_started_ms > XT_CONNECT_TIMEOUT_MS) {
			log_warnx("xt", "login timed out; retrying");
			xt->connecting = 0;
			xmpp_conn_release(xt->conn);
			xt->conn = NULL;
			xt->sock = -1;
			store_set_link(xt->st, "offline");
			start_result(xt, -ETIMEDOUT, "login timed out");
			xt->backoff_ms = xt->backoff_ms ? xt->backoff_ms * 2
							: 1000;
			if (xt->backoff_ms > 60000)
				xt->backoff_ms = 60000;
			xt->reconnect_at_ms = now + xt->backoff_ms;
		}
		if (!xt->conn || (!xt->online && !xt->connecting)) {
			if (now >= xt->reconnect_at_ms &&
			    xt->reconnect_at_ms != INT64_MAX) {
				if (connect_now(xt) < 0) {
					xt->backoff_ms = xt->backoff_ms
						? xt->backoff_ms * 2 : 1000;
					if (xt->backoff_ms > 60000)
						xt->backoff_ms = 60000;
					xt->reconnect_at_ms =
						now + xt->backoff_ms;
					char m[300];

					snprintf(m, sizeof(m), "unknown host "
						 "'%s' (check server= or the "
						 "JID's domain)",
						 xt->cfg.server
						 ? xt->cfg.server
						 : strchr(xt->cfg.jid, '@')
						 ? strchr(xt->cfg.jid, '@') + 1
						 : xt->cfg.jid);
					start_result(xt, -ENOENT, m);
				}
			}
		}
		fds[0].fd = xt->evfd;
		fds[0].events = POLLIN;
		if (xt->sock >= 0) {
			fds[1].fd = xt->sock;
			fds[1].events = POLLIN;
			n = 2;
		}
		/* Bounded: libstrophe's timers and our deadlines run only
		 * when we come round (STYLE.md §5.3). */
		poll(fds, (nfds_t)n, xt->connecting ? 10 : 100);
		drain_events(xt);
		expire_pending(xt, 0);
		if (xt->online) {
			subscribe_new_contacts(xt);
			xfer_check_rows(xt);
			xfer_tick(xt);
			keepalive(xt, now_ms());
		}
		for (int i = 0; i < 8; i++)
			xmpp_run_once(xt->ctx, 0);
	}
	if (xt->conn && (xt->online || xt->connecting)) {
		xfer_disconnected(xt);
		xmpp_disconnect(xt->conn);
		for (int i = 0; i < 50 && (xt->online || xt->connecting); i++)
			xmpp_run_once(xt->ctx, 10);
	}
	return NULL;
}

/* ---- public ------------------------------------------------------------ */

int xt_new(const struct xt_config *cfg, struct xt **out)
{
	struct xt *xt = calloc(1, sizeof(*xt));

	if (!xt)
		return -ENOMEM;
	xt->cfg = *cfg;
	xt->cfg.jid = xstrdup(cfg->jid);
	xt->cfg.password = xstrdup(cfg->password);
	xt->cfg.resource = xstrdup(cfg->resource ? cfg->resource : "xmppfs");
	xt->cfg.server = xstrdup(cfg->server);
	xt->cfg.cafile = xstrdup(cfg->cafile);
	xt->cfg.proxy = xstrdup(cfg->proxy);
	xt->cfg.s5b_host = xstrdup(cfg->s5b_host);
	xt->cfg.on_receive = xstrdup(cfg->on_receive);
	xt->cfg.mountpoint = xstrdup(cfg->mountpoint);
	if (xt->cfg.nmethods <= 0) {
		xt->cfg.methods[0] = PROTO_M_S5B;
		xt->cfg.methods[1] = PROTO_M_IBB;
		xt->cfg.nmethods = 2;
	}
	xt->st = cfg->store;
	xt->sock = -1;
	xt->listen_fd = -1;
	xt->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&xt->start_lock, NULL);
	pthread_cond_init(&xt->start_cond, NULL);
	pthread_mutex_init(&xt->qlock, NULL);
	pthread_mutex_init(&xt->s5b_lock, NULL);
	for (size_t i = 0; i < sizeof(xt->s5b_slots) / sizeof(xt->s5b_slots[0]);
	     i++)
		xt->s5b_slots[i].sock = -1;
	if (xt->evfd < 0 || !xt->cfg.jid || !xt->cfg.password) {
		xt_free(xt);
		return -ENOMEM;
	}
	xmpp_initialize();
	xt->log.handler = strophe_log;
	xt->log.userdata = xt;
	xt->ctx = xmpp_ctx_new(NULL, &xt->log);
	if (!xt->ctx) {
		xt_free(xt);
		return -ENOMEM;
	}
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	*out = xt;
	return 0;
}

int xt_start(struct xt *xt, int timeout_ms, char *err, size_t errlen)
{
	struct timespec ts;
	int rc;

	if (xt->cfg.cafile) {
		/* A missing or unreadable cafile would otherwise look like an
		 * unreachable server: libstrophe just fails every TLS setup. */
		X509_STORE *s = X509_STORE_new();
		int ok = s && X509_STORE_load_file(s, xt->cfg.cafile) == 1;

		X509_STORE_free(s);
		if (!ok) {
			snprintf(err, errlen, "cafile %s: %s", xt->cfg.cafile,
				 access(xt->cfg.cafile, R_OK) < 0
				 ? strerror(errno)
				 : "no PEM certificate in it");
			return -EINVAL;
		}
	}
	store_out_requeue_inflight(xt->st);
	if (pthread_create(&xt->thread, NULL, xt_thread, xt) != 0) {
		snprintf(err, errlen, "cannot start the xmpp thread");
		return -EAGAIN;
	}
	xt->thread_started = 1;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&xt->start_lock);
	while (!xt->start_done)
		if (pthread_cond_timedwait(&xt->start_cond, &xt->start_lock,
					   &ts) == ETIMEDOUT)
			break;
	rc = xt->start_done ? xt->start_rc : -ETIMEDOUT;
	if (rc == -ETIMEDOUT)
		snprintf(err, errlen, "no answer from %s:%u within %d s",
			 xt->cfg.server ? xt->cfg.server : "the server",
			 xt->cfg.port ? xt->cfg.port : 5222, timeout_ms / 1000);
	else
		snprintf(err, errlen, "%s", xt->start_err);
	pthread_mutex_unlock(&xt->start_lock);
	return rc;
}

void xt_stop(struct xt *xt)
{
	if (!xt || !xt->thread_started)
		return;
	atomic_store(&xt->stopping, 1);
	xt_wake(xt);
	pthread_join(xt->thread, NULL);
	xt->thread_started = 0;
	xt_s5b_stop(xt);
	/* Cancel what is still running and let the workers finish before
	 * anything they point at goes away. */
	xfer_free_all(xt);
	xt_workers_wait(xt, 15000);
	drain_queue(xt);
}

void xt_free(struct xt *xt)
{
	if (!xt)
		return;
	xt_stop(xt);
	xfer_free_all(xt);
	expire_pending(xt, 1);
	free_subscribed(xt);
	while (xt->peers) {
		struct xt_peer *p = xt->peers;

		xt->peers = p->next;
		free(p);
	}
	if (xt->conn)
		xmpp_conn_release(xt->conn);
	if (xt->ctx)
		xmpp_ctx_free(xt->ctx);
	if (xt->evfd >= 0)
		close(xt->evfd);
	if (xt->cfg.password)
		explicit_bzero((char *)xt->cfg.password,
			       strlen(xt->cfg.password));
	free((char *)xt->cfg.jid);
	free((char *)xt->cfg.password);
	free((char *)xt->cfg.resource);
	free((char *)xt->cfg.server);
	free((char *)xt->cfg.cafile);
	free((char *)xt->cfg.proxy);
	free((char *)xt->cfg.s5b_host);
	free((char *)xt->cfg.on_receive);
	free((char *)xt->cfg.mountpoint);
	free(xt);
}
