/*
 * xmpp/xfer_out: sending. See xfer.c for the whole flow.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/jid.h"
#include "util/log.h"
#include "xmpp/xt_int.h"

enum { IQ_OFFER = 1, IQ_HOSTS, IQ_ACTIVATE, IQ_IBB_OPEN };

static struct xt_path *path_find(struct xt *xt, const char *bare,
				 int create);

static int64_t now_ms(void)
{
	return store_now_ms();
}

void xfer_out_fail(struct xt *xt, struct xfer *x, enum store_state st,
		     const char *why)
{
	log_info("xt", "%s to %s: %s: %s", x->name, x->peer,
		 store_state_name(st), why);
	store_out_set_state(xt->st, x->row, x->gen, st, NULL, NULL, NULL, why);
	xfer_free(xt, x);
}

static struct xt_retry *retry_find(struct xt *xt, int64_t row, int create)
{
	struct xt_retry *oldest = &xt->retries[0];
	size_t n = sizeof(xt->retries) / sizeof(xt->retries[0]);

	for (size_t i = 0; i < n; i++) {
		if (xt->retries[i].row == row)
			return &xt->retries[i];
		if (xt->retries[i].not_before_ms < oldest->not_before_ms)
			oldest = &xt->retries[i];
	}
	if (!create)
		return NULL;
	memset(oldest, 0, sizeof(*oldest));
	oldest->row = row;
	return oldest;
}

static void retry_clear(struct xt *xt, int64_t row)
{
	struct xt_retry *r = retry_find(xt, row, 0);

	if (r)
		memset(r, 0, sizeof(*r));
}

/*
 * The stream broke off (peer vanished, connection reset): back to waiting
 * with a growing delay, so the next offer resumes with <range/> where the
 * receiver's partial ends. After XT_MAX_ATTEMPTS it counts as failed.
 */
static void out_retry(struct xt *xt, struct xfer *x, const char *why)
{
	struct xt_retry *r = retry_find(xt, x->row, 1);
	int64_t delay;

	if (r->attempts >= XT_MAX_ATTEMPTS) {
		char msg[STORE_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s (gave up after %d attempts)",
			 why, r->attempts);
		retry_clear(xt, x->row);
		xfer_out_fail(xt, x, STORE_FAILED, msg);
		return;
	}
	r->attempts++;
	delay = 1000LL << (r->attempts < 6 ? r->attempts : 6);
	if (delay > 60000)
		delay = 60000;
	r->not_before_ms = now_ms() + delay;
	log_info("xt", "%s to %s broke off (%s); retrying in %lld s", x->name,
		 x->peer, why, (long long)(delay / 1000));
	store_out_set_state(xt->st, x->row, x->gen, STORE_WAITING, "", "", "",
			    "");
	xfer_free(xt, x);
}

/* Back to waiting: the peer went away or the link dropped. */
void xfer_out_requeue(struct xt *xt, struct xfer *x)
{
	store_out_set_state(xt->st, x->row, x->gen, STORE_WAITING, "", "", "",
			    "");
	xfer_free(xt, x);
}

static void out_done(struct xt *xt, struct xfer *x)
{
	retry_clear(xt, x->row);
	store_out_set_progress(xt->st, x->row, x->gen, x->size);
	store_out_set_state(xt->st, x->row, x->gen, STORE_SENT, NULL,
			    x->method_name, NULL, "");
	log_info("xt", "sent %s (%llu bytes) to %s by %s", x->name,
		 (unsigned long long)x->size, x->peer, x->method_name);
	xfer_free(xt, x);
}

static void set_sending(struct xt *xt, struct xfer *x, const char *method)
{
	snprintf(x->method_name, sizeof(x->method_name), "%s", method);
	x->phase = XP_STREAMING;
	store_out_set_state(xt->st, x->row, x->gen, STORE_SENDING, NULL,
			    method, NULL, NULL);
}

static int can_ibb(struct xt *xt)
{
	for (int i = 0; i < xt->cfg.nmethods; i++)
		if (xt->cfg.methods[i] == PROTO_M_IBB)
			return 1;
	return 0;
}

static void ibb_pump(struct xt *xt, struct xfer *x);

static void on_ibb_ack(struct xt *xt, xmpp_stanza_t *iq, uint64_t serial,
		       int kind)
{
	struct xfer *x = xfer_find(xt, serial);
	const char *type = iq ? xmpp_stanza_get_type(iq) : NULL;
	char why[300];

	if (!x || x->phase != XP_IBB)
		return;
	if (!iq) {
		xfer_ibb_send_close(xt, x);
		out_retry(xt, x, "in-band data not acknowledged");
		return;
	}
	if (!type || strcmp(type, "result") != 0) {
		char cond[150];

		snprintf(why, sizeof(why), "in-band data refused: %s",
			 xfer_cond_text(iq, cond, sizeof(cond)));
		xfer_ibb_send_close(xt, x);
		xfer_out_fail(xt, x, STORE_FAILED, why);
		return;
	}
	x->inflight--;
	x->ibb_acked += (uint64_t)kind;
	store_out_set_progress(xt->st, x->row, x->gen,
			       x->offset + x->ibb_acked);
	ibb_pump(xt, x);
}

static void ibb_pump(struct xt *xt, struct xfer *x)
{
	uint64_t total = x->size - x->offset;
	uint8_t *buf = xt->ibb_buf;

	while (x->inflight < XT_IBB_WINDOW && x->ibb_sent < total) {
		size_t want = x->block;
		ssize_t n;
		xmpp_stanza_t *d;

		if (total - x->ibb_sent < want)
			want = (size_t)(total - x->ibb_sent);
		n = pread(x->fd, buf, want, (off_t)(x->offset + x->ibb_sent));
		if (n <= 0) {
			xfer_ibb_send_close(xt, x);
			xfer_out_fail(xt, x, STORE_FAILED,
				 "cannot read the spooled file");
			return;
		}
		d = proto_build_ibb_data(xt->ctx, NULL, x->peer, x->sid,
					 x->seq, buf, (size_t)n);
		if (!d)
			return;
		/* XEP-0047 §2.2: seq is a 16-bit counter that wraps. */
		x->seq = (uint16_t)(x->seq + 1);
		x->inflight++;
		x->ibb_sent += (uint64_t)n;
		xt_send_iq(xt, d, on_ibb_ack, x->serial, (int)n, 120000);
	}
	if (x->inflight == 0 && x->ibb_acked == total) {
		/* Sent once every block is acknowledged; the close reply
		 * gets a grace only (libpurple never answers it). */
		xfer_ibb_send_close(xt, x);
		out_done(xt, x);
	}
}

static void ibb_open(struct xt *xt, struct xfer *x, unsigned block);

static void on_ibb_open(struct xt *xt, xmpp_stanza_t *iq, uint64_t serial,
			int kind)
{
	struct xfer *x = xfer_find(xt, serial);
	const char *type = iq ? xmpp_stanza_get_type(iq) : NULL;
	char cond[64] = "", text[200] = "", why[300];

	(void)kind;
	if (!x || x->phase != XP_IBB_OPENING)
		return;
	if (type && strcmp(type, "result") == 0) {
		x->phase = XP_IBB;
		set_sending(xt, x, "ibb");
		x->phase = XP_IBB;
		ibb_pump(xt, x);
		return;
	}
	if (iq)
		proto_parse_error(iq, cond, sizeof(cond), text, sizeof(text));
	/* XEP-0047 §2.1: a responder that wants smaller blocks answers
	 * resource-constraint; try again smaller. */
	if (strcmp(cond, "resource-constraint") == 0 && x->block > 1024) {
		ibb_open(xt, x, x->block / 2);
		return;
	}
	snprintf(why, sizeof(why), "in-band stream refused: %s",
		 xfer_cond_text(iq, text, sizeof(text)));
	xfer_out_fail(xt, x, STORE_FAILED, why);
}

static void ibb_open(struct xt *xt, struct xfer *x, unsigned block)
{
	xmpp_stanza_t *o = proto_build_ibb_open(xt->ctx, NULL, x->peer, x->sid,
						block);

	if (!o) {
		xfer_out_fail(xt, x, STORE_FAILED, "out of memory");
		return;
	}
	x->block = block;
	x->seq = 0;
	x->inflight = 0;
	x->ibb_sent = x->ibb_acked = 0;
	x->phase = XP_IBB_OPENING;
	snprintf(x->method_name, sizeof(x->method_name), "ibb");
	xt_send_iq(xt, o, on_ibb_open, x->serial, IQ_IBB_OPEN, 60000);
}

/* SOCKS5 did not work out: libpurple's answer is IBB on the same SID. */
static void s5b_fallback(struct xt *xt, struct xfer *x, const char *why)
{
	xfer_job_stop(x);
	if (x->dstaddr[0])
		xt_s5b_forget(xt, x->dstaddr);
	x->s5b_failed = 1;
	if (!can_ibb(xt)) {
		char msg[300];

		snprintf(msg, sizeof(msg), "no SOCKS5 path: %s (in-band "
			 "disabled by methods=)", why);
		xfer_out_fail(xt, x, STORE_FAILED, msg);
		return;
	}
	log_info("xt", "%s: SOCKS5 failed (%s), falling back to in-band",
		 x->name, why);
	ibb_open(xt, x, XT_IBB_BLOCK);
}

static void on_activate(struct xt *xt, xmpp_stanza_t *iq, uint64_t serial,
			int kind)
{
	struct xfer *x = xfer_find(xt, serial);
	const char *type = iq ? xmpp_stanza_get_type(iq) : NULL;
	char why[200];

	(void)kind;
	if (!x || x->phase != XP_S5B_PROXY || !x->job)
		return;
	if (!type || strcmp(type, "result") != 0) {
		s5b_fallback(xt, x, xfer_cond_text(iq, why, sizeof(why)));
		return;
	}
	set_sending(xt, x, "s5b-proxy");
	xt_job_go(x->job, 1);
}

static int start_send_job(struct xt *xt, struct xfer *x,
			  enum xt_job_kind kind, int sock)
{
	struct xt_job *j = xt_job_new(kind, x->serial);

	if (!j) {
		if (sock >= 0)
			close(sock);
		return -ENOMEM;
	}
	j->sock = sock;
	j->fd = dup(x->fd);
	j->offset = x->offset;
	j->length = x->size - x->offset;
	memcpy(j->dstaddr, x->dstaddr, sizeof(j->dstaddr));
	if (kind == JOB_S5B_PROXY) {
		snprintf(j->hosts[0].jid, sizeof(j->hosts[0].jid), "%s",
			 xt->proxy_jid);
		snprintf(j->hosts[0].host, sizeof(j->hosts[0].host), "%s",
			 xt->proxy_host);
		j->hosts[0].port = xt->proxy_port;
		j->nhosts = 1;
	}
	if (j->fd < 0 || xt_job_start(xt, j) < 0) {
		xt_job_unref(j);
		return -EIO;
	}
	x->job = j;
	return 0;
}

static void on_hosts_reply(struct xt *xt, xmpp_stanza_t *iq, uint64_t serial,
			   int kind)
{
	struct xfer *x = xfer_find(xt, serial);
	const char *type = iq ? xmpp_stanza_get_type(iq) : NULL;
	char used[PROTO_JID_MAX], why[200];

	(void)kind;
	if (!x || x->phase != XP_S5B_HOSTS)
		return;
	if (!type || strcmp(type, "result") != 0) {
		s5b_fallback(xt, x, xfer_cond_text(iq, why, sizeof(why)));
		return;
	}
	if (proto_parse_streamhost_used(iq, used, sizeof(used)) < 0) {
		s5b_fallback(xt, x, "no streamhost-used in the answer");
		return;
	}
	if (xfer_same_jid(used, xt->self)) {
		int sock = xt_s5b_take(xt, x->dstaddr);

		if (sock < 0) {
			s5b_fallback(xt, x, "peer named our streamhost but "
				     "did not connect to it");
			return;
		}
		x->dstaddr[0] = '\0';
		path_find(xt, x->bare, 1)->proxy_first = 0;
		set_sending(xt, x, "s5b-direct");
		if (start_send_job(xt, x, JOB_S5B_SEND, sock) < 0)
			s5b_fallback(xt, x, "cannot start the stream");
		return;
	}
	if (xt->proxy_jid[0] && xfer_same_jid(used, xt->proxy_jid)) {
		xt_s5b_forget(xt, x->dstaddr);
		x->phase = XP_S5B_PROXY;
		x->used_proxy = 1;
		if (x->direct_first) /* it could not reach us directly */
			path_find(xt, x->bare, 1)->proxy_first = 1;
		/* XEP-0065 §6.3.4/§6.3.5: connect to the proxy ourselves, then
		 * activate. */
		if (start_send_job(xt, x, JOB_S5B_PROXY, -1) < 0)
			s5b_fallback(xt, x, "cannot start the proxy stream");
		return;
	}
	/* XEP-0065 §5.3.3: a streamhost we did not offer is an error. */
	s5b_fallback(xt, x, "peer named a streamhost we did not offer");
}

/* Per contact: did the last SOCKS5 stream go through the proxy although
 * our own streamhost came first? Then the peer cannot reach us directly
 * (NAT, firewall) and the proxy goes first next time, so the peer does
 * not wait out a connect timeout on every file (INTEROP.md §2.2). */
static struct xt_path *path_find(struct xt *xt, const char *bare, int create)
{
	size_t n = sizeof(xt->paths) / sizeof(xt->paths[0]);
	struct xt_path *free_slot = NULL;

	for (size_t i = 0; i < n; i++) {
		if (strcmp(xt->paths[i].bare, bare) == 0)
			return &xt->paths[i];
		if (!xt->paths[i].bare[0] && !free_slot)
			free_slot = &xt->paths[i];
	}
	if (!create)
		return NULL;
	if (!free_slot)
		free_slot = &xt->paths[(size_t)rand() % n];
	memset(free_slot, 0, sizeof(*free_slot));
	snprintf(free_slot->bare, sizeof(free_slot->bare), "%s", bare);
	return free_slot;
}

/* Proxy streams to one contact right now (ejabberd allows 5). */
static int proxy_streams_to(struct xt *xt, const char *bare)
{
	int n = 0;

	for (struct xfer *x = xt->xfers; x; x = x->next)
		if (x->out && (x->proxy_offered || x->used_proxy) &&
		    strcmp(x->bare, bare) == 0)
			n++;
	return n;
}

static void add_host(struct proto_streamhost *h, const char *jid,
		     const char *host, uint16_t port)
{
	snprintf(h->jid, sizeof(h->jid), "%s", jid);
	snprintf(h->host, sizeof(h->host), "%s", host);
	h->port = port;
}

static void s5b_offer_hosts(struct xt *xt, struct xfer *x)
{
	struct proto_streamhost hosts[2];
	struct xt_path *path = path_find(xt, x->bare, 0);
	int proxy_first = path && path->proxy_first;
	int direct = 0, proxy = 0;
	xmpp_stanza_t *iq;
	int n = 0;

	memset(hosts, 0, sizeof(hosts));
	/* XEP-0065 §5.3.2: DST.ADDR = SHA1(SID + initiator + target). */
	proto_s5b_dstaddr(x->sid, xt->self, x->peer, x->dstaddr);
	direct = xt->listen_fd >= 0 && xt_s5b_expect(xt, x->dstaddr) == 0;
	proxy = xt->proxy_jid[0] &&
		proxy_streams_to(xt, x->bare) < XT_MAX_PROXY_PER_PEER;
	if (proxy && proxy_first)
		add_host(&hosts[n++], xt->proxy_jid, xt->proxy_host,
			 xt->proxy_port);
	if (direct)
		add_host(&hosts[n++], xt->self, xt->listen_host,
			 xt->listen_port);
	if (proxy && !proxy_first)
		add_host(&hosts[n++], xt->proxy_jid, xt->proxy_host,
			 xt->proxy_port);
	x->proxy_offered = proxy;
	x->direct_first = direct && !(proxy && proxy_first);
	if (n == 0) {
		x->dstaddr[0] = '\0';
		s5b_fallback(xt, x, "no streamhost to offer (s5b_host=none "
			     "and no proxy)");
		return;
	}
	iq = proto_build_streamhosts(xt->ctx, NULL, x->peer, x->sid, hosts, n);
	if (!iq) {
		xfer_out_fail(xt, x, STORE_FAILED, "out of memory");
		return;
	}
	x->phase = XP_S5B_HOSTS;
	/* The target tries each host with a short timeout: allow for all
	 * of them plus the round trip. */
	xt_send_iq(xt, iq, on_hosts_reply, x->serial, IQ_HOSTS,
		   XT_STREAM_WAIT_MS + n * 16000);
}

static void on_offer_reply(struct xt *xt, xmpp_stanza_t *iq, uint64_t serial,
			   int kind)
{
	struct xfer *x = xfer_find(xt, serial);
	const char *type = iq ? xmpp_stanza_get_type(iq) : NULL;
	struct proto_accept acc;
	char cond[64] = "", text[200] = "", why[300];

	(void)kind;
	if (!x || x->phase != XP_OFFERED)
		return;
	if (!iq) {
		xfer_out_fail(xt, x, STORE_FAILED, "the peer did not answer the "
			 "offer");
		return;
	}
	if (!type || strcmp(type, "result") != 0) {
		proto_parse_error(iq, cond, sizeof(cond), text, sizeof(text));
		if (strcmp(cond, "forbidden") == 0 ||
		    strcmp(cond, "not-allowed") == 0 ||
		    strcmp(cond, "not-acceptable") == 0) {
			snprintf(why, sizeof(why), "declined by %.80s%s%s",
				 x->peer, text[0] ? ": " : "", text);
			xfer_out_fail(xt, x, STORE_REJECTED, why);
		} else if (strcmp(cond, "service-unavailable") == 0 ||
			   strcmp(cond, "recipient-unavailable") == 0 ||
			   strcmp(cond, "remote-server-not-found") == 0) {
			/* Gone offline meanwhile: store and forward. */
			xfer_out_requeue(xt, x);
		} else if (strcmp(cond, "resource-constraint") == 0) {
			/* The receiver is busy: flow control, not a failure.
			 * Again shortly, as often as it takes. */
			struct xt_retry *r = retry_find(xt, x->row, 1);

			r->not_before_ms = now_ms() + 500 + rand() % 1000;
			xfer_out_requeue(xt, x);
		} else {
			xfer_out_fail(xt, x, STORE_FAILED,
				 xfer_cond_text(iq, why, sizeof(why)));
		}
		return;
	}
	if (proto_parse_accept(iq, xt->cfg.methods, xt->cfg.nmethods, &acc) <
	    0 || acc.method == PROTO_M_NONE) {
		xfer_out_fail(xt, x, STORE_FAILED, "the peer's answer names no "
			 "stream method we offered");
		return;
	}
	x->offset = 0;
	if (acc.has_range) {
		/* XEP-0096 §3 (range): send from offset. A length, if given,
		 * is not honoured: we always send to the end, which is what
		 * the whole-file MD5 needs and what every resumer asks. */
		if (acc.offset > x->size) {
			xfer_out_fail(xt, x, STORE_FAILED, "peer asked for a range "
				 "beyond the end of the file");
			return;
		}
		x->offset = acc.offset;
	}
	x->method = acc.method;
	store_out_set_progress(xt->st, x->row, x->gen, x->offset);
	if (acc.method == PROTO_M_S5B)
		s5b_offer_hosts(xt, x);
	else
		ibb_open(xt, x, XT_IBB_BLOCK);
}

static void send_offer(struct xt *xt, struct xfer *x)
{
	struct proto_offer_args a;
	struct xt_peer *p = xt_best_peer(xt, x->bare);
	struct stat sb;
	char date[40] = "";
	xmpp_stanza_t *iq;
	int rc;

	if (!p) { /* went away while we hashed */
		xfer_free(xt, x);
		return;
	}
	snprintf(x->peer, sizeof(x->peer), "%s", p->full);
	if (fstat(x->fd, &sb) == 0) {
		struct tm tm;

		gmtime_r(&sb.st_mtime, &tm);
		strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
		x->size = (uint64_t)sb.st_size;
	}
	xfer_make_sid(x->sid, sizeof(x->sid));
	memset(&a, 0, sizeof(a));
	a.to = x->peer;
	a.sid = x->sid;
	a.name = x->name;
	a.hash = x->hash[0] ? x->hash : NULL;
	a.date = date[0] ? date : NULL;
	a.size = x->size;
	a.range = 1;
	a.methods = xt->cfg.methods;
	a.nmethods = xt->cfg.nmethods;
	iq = proto_build_offer(xt->ctx, &a);
	if (!iq) {
		xfer_out_fail(xt, x, STORE_FAILED, "out of memory");
		return;
	}
	rc = store_out_set_state(xt->st, x->row, x->gen, STORE_OFFERED,
				 x->peer, "", x->sid, "");
	if (rc < 0) { /* changed or deleted meanwhile */
		xmpp_stanza_release(iq);
		xfer_free(xt, x);
		return;
	}
	x->phase = XP_OFFERED;
	log_info("xt", "offering %s (%llu bytes) to %s", x->name,
		 (unsigned long long)x->size, x->peer);
	xt_send_iq(xt, iq, on_offer_reply, x->serial, IQ_OFFER,
		   XT_OFFER_TIMEOUT_MS);
}

struct ready_ctx {
	struct xt *xt;
	int started;
};

/* Outgoing transfers to one contact right now. */
static int out_to(struct xt *xt, const char *bare)
{
	int n = 0;

	for (struct xfer *x = xt->xfers; x; x = x->next)
		if (x->out && strcmp(x->bare, bare) == 0)
			n++;
	return n;
}

static int xfer_out_start_one(const struct store_out *o, void *arg)
{
	struct ready_ctx *rc = arg;
	struct xt *xt = rc->xt;
	struct xfer *x;
	char path[4096];

	if (xt->nout >= XT_MAX_OUT)
		return 1;
	if (xfer_find_by_row(xt, o->id, 1) || !xt_best_peer(xt, o->contact) ||
	    out_to(xt, o->contact) >= XT_MAX_OUT_PER_PEER)
		return 0;
	/* When the proxy is the only SOCKS5 path, wait for one of its
	 * slots rather than end up in-band. */
	if (xt->listen_fd < 0 && xt->proxy_jid[0] &&
	    out_to(xt, o->contact) >= XT_MAX_PROXY_PER_PEER)
		return 0;
	{
		struct xt_retry *r = retry_find(xt, o->id, 0);

		if (r && r->not_before_ms > now_ms())
			return 0;
	}
	x = xfer_new(xt, 1);
	if (!x)
		return 1;
	x->row = o->id;
	x->gen = o->gen;
	snprintf(x->bare, sizeof(x->bare), "%s", o->contact);
	snprintf(x->name, sizeof(x->name), "%s", o->name);
	store_spool_path(xt->st, o->id, path, sizeof(path));
	x->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (x->fd < 0) {
		xfer_out_fail(xt, x, STORE_FAILED, "cannot open the spooled file");
		return 0;
	}
	rc->started++;
	if (o->hash[0] && o->hash_gen == o->gen) {
		struct stat sb;

		snprintf(x->hash, sizeof(x->hash), "%s", o->hash);
		if (fstat(x->fd, &sb) == 0)
			x->size = (uint64_t)sb.st_size;
		send_offer(xt, x);
		return 0;
	}
	log_debug("xt", "hashing %s (no MD5 from the writer for gen %llu)",
		  x->name, (unsigned long long)o->gen);
	x->phase = XP_HASHING;
	x->job = xt_job_new(JOB_HASH, x->serial);
	if (x->job) {
		x->job->fd = dup(x->fd);
		if (xt_job_start(xt, x->job) == 0)
			return 0;
	}
	xfer_out_fail(xt, x, STORE_FAILED, "cannot start hashing");
	return 0;
}

void xfer_out_start_ready(struct xt *xt, int64_t now)
{
	struct ready_ctx rc = {.xt = xt};

	store_out_ready(xt->st, now, XT_MAX_OUT * 4, xfer_out_start_one, &rc);
}

void xfer_out_job_done(struct xt *xt, struct xfer *x, struct xt_job *j)
{
	char why[STORE_ERR_MAX];

	x->job = NULL;
	if (j->kind == JOB_HASH) {
		if (j->err) {
			snprintf(why, sizeof(why), "%s", j->errmsg);
			xt_job_unref(j);
			xfer_out_fail(xt, x, STORE_FAILED, why);
			return;
		}
		snprintf(x->hash, sizeof(x->hash), "%s", j->md5);
		x->size = j->length;
		xt_job_unref(j);
		if (store_out_set_hash(xt->st, x->row, x->gen, x->hash) < 0) {
			xfer_free(xt, x); /* changed meanwhile */
			return;
		}
		send_offer(xt, x);
		return;
	}
	snprintf(why, sizeof(why), "%s", j->errmsg);
	if (j->err == 0) {
		xt_job_unref(j);
		out_done(xt, x);
		return;
	}
	if (x->phase == XP_S5B_PROXY) {
		xt_job_unref(j);
		s5b_fallback(xt, x, why);
		return;
	}
	xt_job_unref(j);
	out_retry(xt, x, why);
}

/* The proxy job finished SOCKS5 with the proxy: XEP-0065 §6.3.5, now
 * ask the proxy to activate the stream. */
void xfer_out_job_connected(struct xt *xt, struct xfer *x)
{
	xmpp_stanza_t *a = proto_build_activate(xt->ctx, NULL, xt->proxy_jid,
						x->sid, x->peer);

	if (a)
		xt_send_iq(xt, a, on_activate, x->serial, IQ_ACTIVATE, 30000);
}
