/*
 * xmpp/xfer: the transfer engine, on the xmpp thread.
 *
 * Outgoing (store row waiting -> sent):
 *   hash (job) -> SI offer (XEP-0095 §3, XEP-0096 §2) with every method we
 *   allow, <range/> and the MD5 -> the peer picks one method:
 *     S5B: streamhosts [own listener, proxy] -> streamhost-used ->
 *          direct: sendfile on the parked socket;
 *          proxy: connect + SOCKS5 (job), <activate/>, then sendfile.
 *          Any failure falls back to IBB on the same SID, as libpurple does
 *          (XEP-0095 has no fallback of its own; INTEROP.md §2.5).
 *     IBB: <open/> -> data iqs with a window of XT_IBB_WINDOW unacked ->
 *          <close/> (sent once all data is acked; its reply is not waited
 *          for: libpurple never sends it, INTEROP.md §6).
 * Incoming (offer -> received): policy checks, resume lookup, accept ->
 *   S5B: try streamhosts in order (job) -> streamhost-used -> receive with
 *   MD5 as the bytes arrive; or IBB data in seq order.
 *   Verify size and MD5 -> store_in_finish() makes it visible atomically.
 *
 * Every transfer is a struct xfer in xt->xfers, found by its serial from
 * iq replies and job events, so a late reply for a dead transfer is
 * ignored. The store is told every state change; on disconnect everything
 * goes back to a resumable state.
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

extern char **environ;

enum { IQ_OFFER = 1, IQ_HOSTS, IQ_ACTIVATE, IQ_IBB_OPEN, IQ_IBB_CLOSE };

static int64_t now_ms(void)
{
	return store_now_ms();
}

struct xfer *xfer_find(struct xt *xt, uint64_t serial)
{
	for (struct xfer *x = xt->xfers; x; x = x->next)
		if (x->serial == serial)
			return x;
	return NULL;
}

static struct xfer *find_by_row(struct xt *xt, int64_t row, int out)
{
	for (struct xfer *x = xt->xfers; x; x = x->next)
		if (x->row == row && x->out == out)
			return x;
	return NULL;
}

/* A transfer by SID and peer: SIDs are only unique per initiator and
 * target (XEP-0095 §3), so an iq about a SID must come from its peer. */
static struct xfer *find_by_sid(struct xt *xt, const char *sid,
				const char *from)
{
	char full[PROTO_JID_MAX];

	if (!sid || !from || jid_normalize(from, full, sizeof(full)) < 0)
		return NULL;
	for (struct xfer *x = xt->xfers; x; x = x->next)
		if (strcmp(x->sid, sid) == 0 && strcmp(x->peer, full) == 0)
			return x;
	return NULL;
}

static struct xfer *xfer_new(struct xt *xt, int out)
{
	struct xfer *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->serial = ++xt->next_serial;
	x->out = out;
	x->fd = -1;
	x->next = xt->xfers;
	xt->xfers = x;
	if (out)
		xt->nout++;
	else
		xt->nin++;
	return x;
}

static void job_stop(struct xfer *x)
{
	if (!x->job)
		return;
	atomic_store(&x->job->cancel, 1);
	xt_job_go(x->job, -1);
	xt_job_unref(x->job);
	x->job = NULL;
}

static void xfer_free(struct xt *xt, struct xfer *x)
{
	for (struct xfer **pp = &xt->xfers; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	}
	job_stop(x);
	if (x->dstaddr[0] && x->out)
		xt_s5b_forget(xt, x->dstaddr);
	if (x->fd >= 0)
		close(x->fd);
	if (x->md5_ctx)
		xt_md5_free(x->md5_ctx);
	if (x->out)
		xt->nout--;
	else
		xt->nin--;
	free(x);
}

void xfer_free_all(struct xt *xt)
{
	while (xt->xfers)
		xfer_free(xt, xt->xfers);
}

static void make_sid(char *buf, size_t len)
{
	uint8_t r[12];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (uint8_t)rand();
	snprintf(buf, len, "xfs");
	for (size_t i = 0; i < sizeof(r) && 3 + 2 * i + 2 < len; i++)
		snprintf(buf + 3 + 2 * i, 3, "%02x", r[i]);
}

static const char *cond_text(xmpp_stanza_t *iq, char *buf, size_t len)
{
	char cond[64], text[200];

	if (!iq) {
		snprintf(buf, len, "no answer (timeout)");
		return buf;
	}
	proto_parse_error(iq, cond, sizeof(cond), text, sizeof(text));
	if (text[0])
		snprintf(buf, len, "%s (%s)", text, cond[0] ? cond : "error");
	else
		snprintf(buf, len, "%s", cond[0] ? cond : "error");
	return buf;
}

/* ---- outgoing ---------------------------------------------------------- */

static void out_fail(struct xt *xt, struct xfer *x, enum store_state st,
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
		out_fail(xt, x, STORE_FAILED, msg);
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
static void out_requeue(struct xt *xt, struct xfer *x)
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

static void on_ibb_close_reply(struct xt *xt, xmpp_stanza_t *iq,
			       uint64_t serial, int kind)
{
	(void)xt;
	(void)iq;
	(void)serial;
	(void)kind;
}

static void ibb_send_close(struct xt *xt, struct xfer *x)
{
	xmpp_stanza_t *c = proto_build_ibb_close(xt->ctx, NULL, x->peer,
						 x->sid);

	if (c)
		xt_send_iq(xt, c, on_ibb_close_reply, 0, IQ_IBB_CLOSE, 10000);
}

static void on_ibb_ack(struct xt *xt, xmpp_stanza_t *iq, uint64_t serial,
		       int kind)
{
	struct xfer *x = xfer_find(xt, serial);
	const char *type = iq ? xmpp_stanza_get_type(iq) : NULL;
	char why[300];

	if (!x || x->phase != XP_IBB)
		return;
	if (!iq) {
		ibb_send_close(xt, x);
		out_retry(xt, x, "in-band data not acknowledged");
		return;
	}
	if (!type || strcmp(type, "result") != 0) {
		char cond[150];

		snprintf(why, sizeof(why), "in-band data refused: %s",
			 cond_text(iq, cond, sizeof(cond)));
		ibb_send_close(xt, x);
		out_fail(xt, x, STORE_FAILED, why);
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
			ibb_send_close(xt, x);
			out_fail(xt, x, STORE_FAILED,
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
		ibb_send_close(xt, x);
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
		 cond_text(iq, text, sizeof(text)));
	out_fail(xt, x, STORE_FAILED, why);
}

static void ibb_open(struct xt *xt, struct xfer *x, unsigned block)
{
	xmpp_stanza_t *o = proto_build_ibb_open(xt->ctx, NULL, x->peer, x->sid,
						block);

	if (!o) {
		out_fail(xt, x, STORE_FAILED, "out of memory");
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
	job_stop(x);
	if (x->dstaddr[0])
		xt_s5b_forget(xt, x->dstaddr);
	x->s5b_failed = 1;
	if (!can_ibb(xt)) {
		char msg[300];

		snprintf(msg, sizeof(msg), "no SOCKS5 path: %s (in-band "
			 "disabled by methods=)", why);
		out_fail(xt, x, STORE_FAILED, msg);
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
		s5b_fallback(xt, x, cond_text(iq, why, sizeof(why)));
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

static int same_jid(const char *a, const char *b)
{
	char na[PROTO_JID_MAX], nb[PROTO_JID_MAX];

	if (jid_normalize(a, na, sizeof(na)) < 0 ||
	    jid_normalize(b, nb, sizeof(nb)) < 0)
		return 0;
	return strcmp(na, nb) == 0;
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
		s5b_fallback(xt, x, cond_text(iq, why, sizeof(why)));
		return;
	}
	if (proto_parse_streamhost_used(iq, used, sizeof(used)) < 0) {
		s5b_fallback(xt, x, "no streamhost-used in the answer");
		return;
	}
	if (same_jid(used, xt->self)) {
		int sock = xt_s5b_take(xt, x->dstaddr);

		if (sock < 0) {
			s5b_fallback(xt, x, "peer named our streamhost but "
				     "did not connect to it");
			return;
		}
		x->dstaddr[0] = '\0';
		set_sending(xt, x, "s5b-direct");
		if (start_send_job(xt, x, JOB_S5B_SEND, sock) < 0)
			s5b_fallback(xt, x, "cannot start the stream");
		return;
	}
	if (xt->proxy_jid[0] && same_jid(used, xt->proxy_jid)) {
		xt_s5b_forget(xt, x->dstaddr);
		x->phase = XP_S5B_PROXY;
		x->used_proxy = 1;
		/* XEP-0065 §6.3.3: connect to the proxy ourselves, then
		 * activate. */
		if (start_send_job(xt, x, JOB_S5B_PROXY, -1) < 0)
			s5b_fallback(xt, x, "cannot start the proxy stream");
		return;
	}
	/* XEP-0065 §5.3.3: a streamhost we did not offer is an error. */
	s5b_fallback(xt, x, "peer named a streamhost we did not offer");
}

static void s5b_offer_hosts(struct xt *xt, struct xfer *x)
{
	struct proto_streamhost hosts[2];
	xmpp_stanza_t *iq;
	int n = 0;

	memset(hosts, 0, sizeof(hosts));
	/* XEP-0065 §5.3.2: DST.ADDR = SHA1(SID + initiator + target). */
	proto_s5b_dstaddr(x->sid, xt->self, x->peer, x->dstaddr);
	if (xt->listen_fd >= 0 && xt_s5b_expect(xt, x->dstaddr) == 0) {
		snprintf(hosts[n].jid, sizeof(hosts[n].jid), "%s", xt->self);
		snprintf(hosts[n].host, sizeof(hosts[n].host), "%s",
			 xt->listen_host);
		hosts[n].port = xt->listen_port;
		n++;
	}
	if (xt->proxy_jid[0]) {
		snprintf(hosts[n].jid, sizeof(hosts[n].jid), "%s",
			 xt->proxy_jid);
		snprintf(hosts[n].host, sizeof(hosts[n].host), "%s",
			 xt->proxy_host);
		hosts[n].port = xt->proxy_port;
		n++;
	}
	if (n == 0) {
		x->dstaddr[0] = '\0';
		s5b_fallback(xt, x, "no streamhost to offer (s5b_host=none "
			     "and no proxy)");
		return;
	}
	iq = proto_build_streamhosts(xt->ctx, NULL, x->peer, x->sid, hosts, n);
	if (!iq) {
		out_fail(xt, x, STORE_FAILED, "out of memory");
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
		out_fail(xt, x, STORE_FAILED, "the peer did not answer the "
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
			out_fail(xt, x, STORE_REJECTED, why);
		} else if (strcmp(cond, "service-unavailable") == 0 ||
			   strcmp(cond, "recipient-unavailable") == 0 ||
			   strcmp(cond, "remote-server-not-found") == 0) {
			/* Gone offline meanwhile: store and forward. */
			out_requeue(xt, x);
		} else {
			out_fail(xt, x, STORE_FAILED,
				 cond_text(iq, why, sizeof(why)));
		}
		return;
	}
	if (proto_parse_accept(iq, xt->cfg.methods, xt->cfg.nmethods, &acc) <
	    0 || acc.method == PROTO_M_NONE) {
		out_fail(xt, x, STORE_FAILED, "the peer's answer names no "
			 "stream method we offered");
		return;
	}
	x->offset = 0;
	if (acc.has_range) {
		/* XEP-0096 §3.4 (range): send from offset; length, if
		 * given, must reach the end for our whole-file hash. */
		if (acc.offset > x->size) {
			out_fail(xt, x, STORE_FAILED, "peer asked for a range "
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
	make_sid(x->sid, sizeof(x->sid));
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
		out_fail(xt, x, STORE_FAILED, "out of memory");
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

static int start_one(const struct store_out *o, void *arg)
{
	struct ready_ctx *rc = arg;
	struct xt *xt = rc->xt;
	struct xfer *x;
	char path[4096];

	if (xt->nout >= XT_MAX_OUT)
		return 1;
	if (find_by_row(xt, o->id, 1) || !xt_best_peer(xt, o->contact))
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
		out_fail(xt, x, STORE_FAILED, "cannot open the spooled file");
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
	x->phase = XP_HASHING;
	x->job = xt_job_new(JOB_HASH, x->serial);
	if (x->job) {
		x->job->fd = dup(x->fd);
		if (xt_job_start(xt, x->job) == 0)
			return 0;
	}
	out_fail(xt, x, STORE_FAILED, "cannot start hashing");
	return 0;
}

/* ---- incoming -------------------------------------------------------- */

static void run_on_receive(struct xt *xt, const struct store_in *in,
			   const char *name)
{
	char file[4600], sender[STORE_JID_MAX + 20], fenv[4700], nenv[300];
	char sh[] = "/bin/sh", dash_c[] = "-c";
	char *argv[] = {sh, dash_c, (char *)xt->cfg.on_receive, NULL};
	char **env;
	size_t n = 0;
	pid_t pid;

	if (!xt->cfg.on_receive)
		return;
	if (xt->cfg.mountpoint)
		snprintf(file, sizeof(file), "%s/inbox/%s/%s",
			 xt->cfg.mountpoint, in->sender, name);
	else
		store_inbox_path(xt->st, in->id, file, sizeof(file));
	while (environ[n])
		n++;
	env = calloc(n + 4, sizeof(*env));
	if (!env)
		return;
	memcpy(env, environ, n * sizeof(*env));
	snprintf(fenv, sizeof(fenv), "XMPPFS_FILE=%s", file);
	snprintf(sender, sizeof(sender), "XMPPFS_SENDER=%s", in->sender);
	snprintf(nenv, sizeof(nenv), "XMPPFS_NAME=%s", name);
	env[n] = fenv;
	env[n + 1] = sender;
	env[n + 2] = nenv;
	if (posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, env) != 0)
		log_warnx("xt", "on_receive: cannot run the command");
	free(env);
}

static void in_fail(struct xt *xt, struct xfer *x, const char *why, int keep)
{
	log_info("xt", "receiving %s from %s failed: %s", x->name, x->peer,
		 why);
	store_in_fail(xt->st, x->row, why, keep);
	xfer_free(xt, x);
}

static void in_finish(struct xt *xt, struct xfer *x, const char *md5hex)
{
	char name[STORE_NAME_MAX], why[200];
	struct store_in in;
	int rc;

	if (x->received != x->size) {
		snprintf(why, sizeof(why), "got %llu of %llu bytes",
			 (unsigned long long)x->received,
			 (unsigned long long)x->size);
		in_fail(xt, x, why, 1);
		return;
	}
	if (x->hash[0] && strcasecmp(x->hash, md5hex) != 0) {
		snprintf(why, sizeof(why), "MD5 mismatch: offered %s, "
			 "received %s", x->hash, md5hex);
		in_fail(xt, x, why, 0);
		return;
	}
	store_in_set_progress(xt->st, x->row, x->received);
	rc = store_in_finish(xt->st, x->row, name);
	if (rc < 0) {
		snprintf(why, sizeof(why), "cannot store the file: %s",
			 strerror(-rc));
		in_fail(xt, x, why, 0);
		return;
	}
	log_info("xt", "received %s (%llu bytes) from %s by %s", name,
		 (unsigned long long)x->size, x->peer, x->method_name);
	if (store_in_get_id(xt->st, x->row, &in) == 0)
		run_on_receive(xt, &in, name);
	xfer_free(xt, x);
}

static int sender_allowed(struct xt *xt, const char *bare)
{
	struct store_contact c;

	switch (xt->cfg.accept) {
	case XT_ACCEPT_ALL:
		return 1;
	case XT_ACCEPT_NONE:
		return 0;
	case XT_ACCEPT_ROSTER:
	default:
		return store_contact_get(xt->st, bare, &c) == 0 &&
		       (c.origin & STORE_CONTACT_ROSTER) && c.subscribed;
	}
}

static enum proto_method choose_method(struct xt *xt, unsigned offered)
{
	/* XEP-0095 §3: the receiver picks one; ours in preference order. */
	for (int i = 0; i < xt->cfg.nmethods; i++)
		if (offered & (unsigned)xt->cfg.methods[i])
			return xt->cfg.methods[i];
	return PROTO_M_NONE;
}

static void decline(struct xt *xt, xmpp_stanza_t *iq, const char *why)
{
	/* XEP-0096 §3.1 / XEP-0095 §3.2: rejection is 403 forbidden. */
	log_info("xt", "declined an offer from %s: %s",
		 xmpp_stanza_get_from(iq), why);
	xt_reply_error(xt, iq, "cancel", "forbidden", why, NULL, NULL);
}

static void handle_offer(struct xt *xt, xmpp_stanza_t *iq)
{
	struct proto_offer *o = calloc(1, sizeof(*o));
	struct store_in in;
	char bare[STORE_JID_MAX], full[PROTO_JID_MAX], why[200];
	enum proto_method m;
	uint64_t free_b = 0;
	struct xfer *x;
	xmpp_stanza_t *r;
	int rc;

	if (!o)
		return;
	rc = proto_parse_offer(iq, o);
	if (rc == -ENOTSUP) {
		xt_reply_error(xt, iq, "cancel", "bad-request", NULL, NS_SI,
			       "bad-profile");
		goto out;
	}
	if (rc < 0 || jid_normalize(o->from, full, sizeof(full)) < 0 ||
	    jid_to_bare(full, bare, sizeof(bare)) < 0) {
		xt_reply_error(xt, iq, "modify", "bad-request",
			       "malformed offer", NULL, NULL);
		goto out;
	}
	if (!o->has_size)
		o->size = 0; /* QXmpp omits size for 0 bytes (INTEROP §6) */
	if (!sender_allowed(xt, bare)) {
		decline(xt, iq, "Offer Declined");
		goto out;
	}
	if (xt->nin >= XT_MAX_IN) {
		decline(xt, iq, "too many transfers at once");
		goto out;
	}
	if (find_by_sid(xt, o->sid, full)) {
		xt_reply_error(xt, iq, "cancel", "conflict", "SID in use",
			       NULL, NULL);
		goto out;
	}
	if (xt->cfg.max_size && o->size > xt->cfg.max_size) {
		snprintf(why, sizeof(why), "File too large (limit %llu bytes)",
			 (unsigned long long)xt->cfg.max_size);
		decline(xt, iq, why);
		goto out;
	}
	if (store_free_bytes(xt->st, &free_b) == 0 &&
	    o->size + (1 << 20) > free_b) {
		decline(xt, iq, "Not enough free space");
		goto out;
	}
	m = choose_method(xt, o->methods);
	if (m == PROTO_M_NONE) {
		xt_reply_error(xt, iq, "cancel", "bad-request",
			       "no stream method in common", NS_SI,
			       "no-valid-streams");
		goto out;
	}

	memset(&in, 0, sizeof(in));
	proto_sanitize_name(o->raw_name, strlen(o->raw_name), in.offer_name);
	x = xfer_new(xt, 0);
	if (!x)
		goto out;
	snprintf(x->sid, sizeof(x->sid), "%s", o->sid);
	snprintf(x->peer, sizeof(x->peer), "%s", full);
	snprintf(x->bare, sizeof(x->bare), "%s", bare);
	snprintf(x->name, sizeof(x->name), "%s", in.offer_name);
	snprintf(x->hash, sizeof(x->hash), "%s", o->hash);
	x->size = o->size;
	x->method = m;
	snprintf(x->method_name, sizeof(x->method_name), "%s",
		 m == PROTO_M_S5B ? "s5b" : "ibb");

	/* Resume (XEP-0096 §3.4): only when the sender offered <range/>. */
	if (o->range &&
	    store_in_find_partial(xt->st, bare, in.offer_name, o->size,
				  o->hash, o->date, &in) == 0 &&
	    in.progress <= o->size) {
		struct xfer *old = find_by_row(xt, in.id, 0);

		/* The same sender offers the same file again: whatever
		 * transfer still writes that partial is dead. */
		if (old && old != x)
			xfer_free(xt, old);
		x->row = in.id;
		x->offset = in.progress;
		store_in_rebind(xt->st, in.id, o->sid, full, x->method_name);
	} else {
		snprintf(in.sender, sizeof(in.sender), "%s", bare);
		snprintf(in.peer, sizeof(in.peer), "%s", full);
		in.size = o->size;
		snprintf(in.hash, sizeof(in.hash), "%s", o->hash);
		snprintf(in.date, sizeof(in.date), "%s", o->date);
		snprintf(in.sid, sizeof(in.sid), "%s", o->sid);
		snprintf(in.method, sizeof(in.method), "%s", x->method_name);
		rc = store_in_begin(xt->st, &in);
		if (rc < 0) {
			xfer_free(xt, x);
			decline(xt, iq, "cannot store the file here");
			goto out;
		}
		x->row = in.id;
		x->offset = 0;
	}
	{
		char path[4096];

		store_partial_path(xt->st, x->row, path, sizeof(path));
		x->fd = open(path, O_RDWR | O_CLOEXEC);
	}
	x->md5_ctx = xt_md5_new();
	if (x->fd < 0 || !x->md5_ctx ||
	    ftruncate(x->fd, (off_t)x->offset) < 0 ||
	    (x->offset && xt_md5_prefix(x->md5_ctx, x->fd, x->offset) < 0)) {
		in_fail(xt, x, "cannot open the partial file", 0);
		decline(xt, iq, "cannot store the file here");
		goto out;
	}
	x->received = x->offset;
	x->phase = XP_OFFERED;
	x->deadline_ms = now_ms() + XT_STREAM_WAIT_MS;
	r = proto_build_accept(xt->ctx, o->from, o->id, m, x->offset);
	if (r)
		xt_send(xt, r);
	log_info("xt", "accepted %s (%llu bytes) from %s by %s%s", x->name,
		 (unsigned long long)x->size, x->peer, x->method_name,
		 x->offset ? ", resuming" : "");
out:
	free(o);
}

static void handle_streamhosts(struct xt *xt, xmpp_stanza_t *iq)
{
	struct proto_streamhosts *h = calloc(1, sizeof(*h));
	struct xfer *x;
	struct xt_job *j;
	int rc;

	if (!h)
		return;
	rc = proto_parse_streamhosts(iq, h);
	x = rc == 0 ? find_by_sid(xt, h->sid, h->from) : NULL;
	if (rc == -ENOTSUP) {
		xt_reply_error(xt, iq, "cancel", "feature-not-implemented",
			       "only tcp mode", NULL, NULL);
		goto out;
	}
	if (rc < 0 || !x || x->out || x->phase != XP_OFFERED ||
	    x->method != PROTO_M_S5B) {
		xt_reply_error(xt, iq, "cancel", "item-not-found", NULL, NULL,
			       NULL);
		goto out;
	}
	snprintf(x->s5b_iq_id, sizeof(x->s5b_iq_id), "%s", h->id);
	proto_s5b_dstaddr(x->sid, x->peer, xt->self, x->dstaddr);
	j = xt_job_new(JOB_S5B_RECV, x->serial);
	if (!j)
		goto out;
	memcpy(j->hosts, h->hosts, sizeof(j->hosts));
	j->nhosts = h->nhosts;
	memcpy(j->dstaddr, x->dstaddr, sizeof(j->dstaddr));
	j->fd = dup(x->fd);
	j->offset = x->offset;
	j->length = x->size - x->offset;
	j->md5_ctx = x->md5_ctx;
	x->md5_ctx = NULL;
	x->job = j;
	x->phase = XP_S5B_RECV;
	x->deadline_ms = 0;
	if (j->fd < 0 || xt_job_start(xt, j) < 0) {
		x->md5_ctx = j->md5_ctx;
		j->md5_ctx = NULL;
		job_stop(x);
		in_fail(xt, x, "cannot start receiving", 1);
	}
out:
	free(h);
}

static void ibb_close_peer(struct xt *xt, struct xfer *x)
{
	ibb_send_close(xt, x);
}

static void handle_ibb_open(struct xt *xt, xmpp_stanza_t *iq)
{
	struct proto_ibb_open o;
	struct xfer *x;

	if (proto_parse_ibb_open(iq, &o) < 0) {
		xt_reply_error(xt, iq, "modify", "bad-request", NULL, NULL,
			       NULL);
		return;
	}
	x = find_by_sid(xt, o.sid, o.from);
	if (!x || x->out ||
	    (x->phase != XP_OFFERED && x->phase != XP_IBB_WAIT)) {
		xt_reply_error(xt, iq, "cancel", "item-not-found", NULL, NULL,
			       NULL);
		return;
	}
	if (o.message) {
		/* XEP-0047 §2.1 lets the responder refuse message stanzas. */
		xt_reply_error(xt, iq, "cancel", "feature-not-implemented",
			       "use iq stanzas", NULL, NULL);
		return;
	}
	if (o.block_size == 0 || o.block_size > sizeof(xt->ibb_buf)) {
		xt_reply_error(xt, iq, "modify", "resource-constraint", NULL,
			       NULL, NULL);
		return;
	}
	x->block = o.block_size;
	x->seq = 0;
	x->phase = XP_IBB;
	x->deadline_ms = now_ms() + XT_STREAM_WAIT_MS;
	snprintf(x->method_name, sizeof(x->method_name), "ibb");
	store_in_rebind(xt->st, x->row, x->sid, x->peer, "ibb");
	xt_reply_result(xt, iq);
}

static void handle_ibb_data(struct xt *xt, xmpp_stanza_t *iq)
{
	struct proto_ibb_data d;
	struct xfer *x;
	size_t len = 0;
	char why[200];
	int rc;

	rc = proto_parse_ibb_data(iq, &d, xt->ibb_buf, sizeof(xt->ibb_buf),
				  &len);
	x = find_by_sid(xt, d.sid, d.from[0] ? d.from
					     : xmpp_stanza_get_from(iq));
	if (!x || x->out || x->phase != XP_IBB) {
		xt_reply_error(xt, iq, "cancel", "item-not-found", NULL, NULL,
			       NULL);
		return;
	}
	if (rc < 0) {
		xt_reply_error(xt, iq, "cancel", "bad-request", NULL, NULL,
			       NULL);
		ibb_close_peer(xt, x);
		in_fail(xt, x, "bad in-band data (base64)", 0);
		return;
	}
	/* XEP-0047 §2.2: out-of-sequence data MUST close the stream. */
	if (d.seq != x->seq) {
		snprintf(why, sizeof(why), "in-band data out of sequence "
			 "(got %u, expected %u)", d.seq, x->seq);
		xt_reply_error(xt, iq, "cancel", "unexpected-request", NULL,
			       NULL, NULL);
		ibb_close_peer(xt, x);
		in_fail(xt, x, why, 0);
		return;
	}
	if (len > x->block || x->received + len > x->size) {
		xt_reply_error(xt, iq, "modify", "not-acceptable", NULL, NULL,
			       NULL);
		ibb_close_peer(xt, x);
		in_fail(xt, x, len > x->block
			? "in-band block larger than negotiated"
			: "peer sent more bytes than it announced", 0);
		return;
	}
	if (len && pwrite(x->fd, xt->ibb_buf, len, (off_t)x->received) !=
		   (ssize_t)len) {
		snprintf(why, sizeof(why), "writing: %s", strerror(errno));
		xt_reply_error(xt, iq, "cancel", "resource-constraint", NULL,
			       NULL, NULL);
		ibb_close_peer(xt, x);
		in_fail(xt, x, why, 0);
		return;
	}
	xt_md5_update(x->md5_ctx, xt->ibb_buf, len);
	x->received += len;
	x->seq = (uint16_t)(x->seq + 1);
	x->deadline_ms = now_ms() + XT_STREAM_WAIT_MS;
	if (now_ms() - x->progress_ms > 500) {
		x->progress_ms = now_ms();
		store_in_set_progress(xt->st, x->row, x->received);
	}
	xt_reply_result(xt, iq);
}

static void handle_ibb_close(struct xt *xt, xmpp_stanza_t *iq)
{
	char sid[PROTO_SID_MAX];
	struct xfer *x;
	char md5[33], why[200];

	if (proto_parse_ibb_close(iq, sid, sizeof(sid)) < 0) {
		xt_reply_error(xt, iq, "modify", "bad-request", NULL, NULL,
			       NULL);
		return;
	}
	x = find_by_sid(xt, sid, xmpp_stanza_get_from(iq));
	if (!x) {
		xt_reply_error(xt, iq, "cancel", "item-not-found", NULL, NULL,
			       NULL);
		return;
	}
	xt_reply_result(xt, iq);
	if (x->out) {
		if (x->phase == XP_IBB || x->phase == XP_IBB_OPENING)
			out_fail(xt, x, STORE_FAILED,
				 "the peer closed the in-band stream");
		return;
	}
	if (x->phase != XP_IBB) {
		in_fail(xt, x, "the peer closed the stream", 1);
		return;
	}
	if (x->received < x->size) {
		snprintf(why, sizeof(why), "stream closed after %llu of %llu "
			 "bytes", (unsigned long long)x->received,
			 (unsigned long long)x->size);
		in_fail(xt, x, why, 1);
		return;
	}
	xt_md5_final(x->md5_ctx, md5);
	x->md5_ctx = NULL;
	in_finish(xt, x, md5);
}

int xfer_handle_iq(struct xt *xt, xmpp_stanza_t *iq)
{
	const char *type = xmpp_stanza_get_type(iq);
	xmpp_stanza_t *c;

	if (!type || strcmp(type, "set") != 0)
		return 0;
	if ((c = xmpp_stanza_get_child_by_name_and_ns(iq, "si", NS_SI))) {
		handle_offer(xt, iq);
		return 1;
	}
	if ((c = xmpp_stanza_get_child_by_name_and_ns(iq, "query",
						       NS_BYTESTREAMS))) {
		handle_streamhosts(xt, iq);
		return 1;
	}
	if (xmpp_stanza_get_child_by_name_and_ns(iq, "open", NS_IBB)) {
		handle_ibb_open(xt, iq);
		return 1;
	}
	if (xmpp_stanza_get_child_by_name_and_ns(iq, "data", NS_IBB)) {
		handle_ibb_data(xt, iq);
		return 1;
	}
	if (xmpp_stanza_get_child_by_name_and_ns(iq, "close", NS_IBB)) {
		handle_ibb_close(xt, iq);
		return 1;
	}
	return 0;
}

/* ---- job events --------------------------------------------------------- */

static void on_in_connected(struct xt *xt, struct xfer *x, struct xt_job *j)
{
	const struct proto_streamhost *h = &j->hosts[j->used_host];
	xmpp_stanza_t *r;

	r = proto_build_streamhost_used(xt->ctx, x->peer, x->s5b_iq_id, x->sid,
					h->jid);
	if (r)
		xt_send(xt, r);
	snprintf(x->method_name, sizeof(x->method_name), "%s",
		 same_jid(h->jid, x->peer) ? "s5b-direct" : "s5b-proxy");
	store_in_rebind(xt->st, x->row, x->sid, x->peer, x->method_name);
	x->phase = XP_STREAMING;
}

static void on_in_done(struct xt *xt, struct xfer *x, struct xt_job *j)
{
	uint64_t got = atomic_load(&j->done_bytes);
	char md5[33];

	x->job = NULL;
	x->received = x->offset + got;
	if (j->used_host < 0) {
		/* XEP-0065 §5.3.2: tell the initiator no host worked; then,
		 * like libpurple, wait for IBB on the same SID. */
		xmpp_stanza_t *e = proto_build_error(
			xt->ctx, x->peer, x->s5b_iq_id, "cancel",
			"item-not-found", "could not connect to any streamhost",
			NULL, NULL);

		if (e)
			xt_send(xt, e);
		x->md5_ctx = j->md5_ctx;
		j->md5_ctx = NULL;
		x->phase = XP_IBB_WAIT;
		x->deadline_ms = now_ms() + XT_IBB_FALLBACK_MS;
		xt_job_unref(j);
		return;
	}
	if (j->err) {
		int keep = j->err != -EMSGSIZE;
		char why[STORE_ERR_MAX];

		snprintf(why, sizeof(why), "%s", j->errmsg);
		xt_job_unref(j);
		store_in_set_progress(xt->st, x->row, x->received);
		in_fail(xt, x, why, keep);
		return;
	}
	xt_md5_final(j->md5_ctx, md5);
	j->md5_ctx = NULL;
	xt_job_unref(j);
	in_finish(xt, x, md5);
}

static void on_out_done(struct xt *xt, struct xfer *x, struct xt_job *j)
{
	char why[STORE_ERR_MAX];

	x->job = NULL;
	if (j->kind == JOB_HASH) {
		if (j->err) {
			snprintf(why, sizeof(why), "%s", j->errmsg);
			xt_job_unref(j);
			out_fail(xt, x, STORE_FAILED, why);
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

void xfer_on_event(struct xt *xt, struct xt_ev *ev)
{
	struct xt_job *j = ev->job;
	struct xfer *x = j ? xfer_find(xt, j->xfer_serial) : NULL;

	if (!x || x->job != j)
		return; /* a transfer that is gone, or a stale job */
	if (ev->kind == EV_JOB_CONNECTED) {
		if (x->out && x->phase == XP_S5B_PROXY) {
			xmpp_stanza_t *a = proto_build_activate(
				xt->ctx, NULL, xt->proxy_jid, x->sid,
				x->peer);

			if (a)
				xt_send_iq(xt, a, on_activate, x->serial,
					   IQ_ACTIVATE, 30000);
		} else if (!x->out) {
			on_in_connected(xt, x, j);
		}
		return;
	}
	if (ev->kind != EV_JOB_DONE)
		return;
	/* The transfer's own reference is handed to the done handlers. */
	if (x->out)
		on_out_done(xt, x, j);
	else
		on_in_done(xt, x, j);
}

/* ---- periodic work -------------------------------------------------------- */

static void progress_and_deadlines(struct xt *xt, int64_t now)
{
	struct xfer *x = xt->xfers, *next;

	for (; x; x = next) {
		next = x->next;
		if (x->job && x->phase == XP_STREAMING &&
		    now - x->progress_ms >= 500) {
			uint64_t b = x->offset + atomic_load(&x->job->done_bytes);

			x->progress_ms = now;
			if (x->out)
				store_out_set_progress(xt->st, x->row, x->gen,
						       b);
			else
				store_in_set_progress(xt->st, x->row, b);
		}
		if (!x->deadline_ms || now < x->deadline_ms)
			continue;
		if (x->out)
			out_fail(xt, x, STORE_FAILED, "timed out");
		else
			in_fail(xt, x, x->phase == XP_IBB_WAIT
				? "no stream after SOCKS5 failed"
				: "the sender never started the stream", 1);
	}
}

void xfer_tick(struct xt *xt)
{
	int64_t now = now_ms();
	struct ready_ctx rc = {.xt = xt};

	progress_and_deadlines(xt, now);
	while (waitpid(-1, NULL, WNOHANG) > 0) /* on_receive children */
		;
	/* Scan when fs changed something, when the earliest settling file
	 * becomes ready, and once a second for retries and new peers. */
	if (!atomic_exchange(&xt->rows_changed, 0) &&
	    now - xt->last_scan_ms < 1000 &&
	    (xt->next_ready_ms == 0 || now < xt->next_ready_ms))
		return;
	xt->last_scan_ms = now;
	if (xt->nout < XT_MAX_OUT)
		store_out_ready(xt->st, now, XT_MAX_OUT * 4, start_one, &rc);
	{
		int64_t at = 0;

		xt->next_ready_ms = store_out_next_ready(xt->st, &at) == 0 &&
				    at > now ? at : 0;
	}
}

void xfer_check_rows(struct xt *xt)
{
	struct xfer *x = xt->xfers, *next;

	if (!atomic_load(&xt->rows_changed))
		return;
	for (; x; x = next) {
		struct store_out o;

		next = x->next;
		if (!x->out)
			continue;
		if (store_out_get_id(xt->st, x->row, &o) == 0 &&
		    o.gen == x->gen)
			continue;
		/* The user changed, renamed or deleted the file: stop.
		 * fs already put the row where it belongs. */
		log_info("xt", "%s changed or deleted; stopping its transfer",
			 x->name);
		if (x->phase == XP_IBB || x->phase == XP_IBB_OPENING)
			ibb_send_close(xt, x);
		xfer_free(xt, x);
	}
}

void xfer_peer_gone(struct xt *xt, const char *full)
{
	struct xfer *x = xt->xfers, *next;

	for (; x; x = next) {
		next = x->next;
		if (strcmp(x->peer, full) != 0 || x->phase == XP_STREAMING)
			continue; /* a running SOCKS5 stream needs no presence */
		if (x->out)
			out_requeue(xt, x);
		else
			in_fail(xt, x, "the sender went offline", 1);
	}
}

void xfer_disconnected(struct xt *xt)
{
	while (xt->xfers) {
		struct xfer *x = xt->xfers;

		if (x->out)
			out_requeue(xt, x);
		else
			in_fail(xt, x, "connection to the server lost", 1);
	}
}
