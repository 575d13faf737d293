/*
 * xmpp/xfer: the transfer engine, on the xmpp thread.
 *
 * Outgoing (store row waiting -> sent):
 *   hash (job) -> SI offer (XEP-0095 §3, XEP-0096 §3) with every method we
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

struct xfer *xfer_find_by_row(struct xt *xt, int64_t row, int out)
{
	for (struct xfer *x = xt->xfers; x; x = x->next)
		if (x->row == row && x->out == out)
			return x;
	return NULL;
}

/* A transfer by SID and peer: SIDs are only unique per initiator and
 * target (XEP-0095 §3), so an iq about a SID must come from its peer. */
struct xfer *xfer_find_by_sid(struct xt *xt, const char *sid,
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

struct xfer *xfer_new(struct xt *xt, int out)
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

void xfer_job_stop(struct xfer *x)
{
	if (!x->job)
		return;
	atomic_store(&x->job->cancel, 1);
	xt_job_go(x->job, -1);
	xt_job_unref(x->job);
	x->job = NULL;
}

void xfer_free(struct xt *xt, struct xfer *x)
{
	for (struct xfer **pp = &xt->xfers; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	}
	xfer_job_stop(x);
	if (x->dstaddr[0] && x->out)
		xt_s5b_forget(xt, x->dstaddr);
	if (x->fd >= 0)
		close(x->fd);
	if (x->md5_ctx)
		xt_md5_free(x->md5_ctx);
	if (x->out) {
		xt->nout--;
		xt->last_scan_ms = 0; /* a slot is free: look for more now */
	} else {
		xt->nin--;
	}
	free(x);
}

void xfer_free_all(struct xt *xt)
{
	while (xt->xfers)
		xfer_free(xt, xt->xfers);
}

void xfer_make_sid(char *buf, size_t len)
{
	uint8_t r[12];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (uint8_t)rand();
	snprintf(buf, len, "xfs");
	for (size_t i = 0; i < sizeof(r) && 3 + 2 * i + 2 < len; i++)
		snprintf(buf + 3 + 2 * i, 3, "%02x", r[i]);
}

const char *xfer_cond_text(xmpp_stanza_t *iq, char *buf, size_t len)
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

int xfer_same_jid(const char *a, const char *b)
{
	char na[PROTO_JID_MAX], nb[PROTO_JID_MAX];

	if (jid_normalize(a, na, sizeof(na)) < 0 ||
	    jid_normalize(b, nb, sizeof(nb)) < 0)
		return 0;
	return strcmp(na, nb) == 0;
}

static void on_ibb_close_reply(struct xt *xt, xmpp_stanza_t *iq,
			       uint64_t serial, int kind)
{
	(void)xt;
	(void)iq;
	(void)serial;
	(void)kind;
}

void xfer_ibb_send_close(struct xt *xt, struct xfer *x)
{
	xmpp_stanza_t *c = proto_build_ibb_close(xt->ctx, NULL, x->peer,
						 x->sid);

	if (c)
		xt_send_iq(xt, c, on_ibb_close_reply, 0, 0, 10000);
}

int xfer_handle_iq(struct xt *xt, xmpp_stanza_t *iq)
{
	const char *type = xmpp_stanza_get_type(iq);
	xmpp_stanza_t *c;

	if (!type || strcmp(type, "set") != 0)
		return 0;
	if ((c = xmpp_stanza_get_child_by_name_and_ns(iq, "si", NS_SI))) {
		xfer_in_offer(xt, iq);
		return 1;
	}
	if ((c = xmpp_stanza_get_child_by_name_and_ns(iq, "query",
						       NS_BYTESTREAMS))) {
		xfer_in_streamhosts(xt, iq);
		return 1;
	}
	if (xmpp_stanza_get_child_by_name_and_ns(iq, "open", NS_IBB)) {
		xfer_in_ibb_open(xt, iq);
		return 1;
	}
	if (xmpp_stanza_get_child_by_name_and_ns(iq, "data", NS_IBB)) {
		xfer_in_ibb_data(xt, iq);
		return 1;
	}
	if (xmpp_stanza_get_child_by_name_and_ns(iq, "close", NS_IBB)) {
		xfer_in_ibb_close(xt, iq);
		return 1;
	}
	return 0;
}

/* ---- job events --------------------------------------------------------- */

void xfer_on_event(struct xt *xt, struct xt_ev *ev)
{
	struct xt_job *j = ev->job;
	struct xfer *x = j ? xfer_find(xt, j->xfer_serial) : NULL;

	if (!x || x->job != j)
		return; /* a transfer that is gone, or a stale job */
	if (ev->kind == EV_JOB_CONNECTED) {
		if (x->out && x->phase == XP_S5B_PROXY) {
			xfer_out_job_connected(xt, x);
		} else if (!x->out) {
			xfer_in_job_connected(xt, x, j);
		}
		return;
	}
	if (ev->kind != EV_JOB_DONE)
		return;
	/* The transfer's own reference is handed to the done handlers. */
	if (x->out)
		xfer_out_job_done(xt, x, j);
	else
		xfer_in_job_done(xt, x, j);
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
		if (x->phase == XP_STREAMING && x->job &&
		    atomic_load(&x->job->done_bytes) > 0) {
			x->deadline_ms = 0; /* bytes flow after all */
			continue;
		}
		if (x->out)
			xfer_out_fail(xt, x, STORE_FAILED, "timed out");
		else
			xfer_in_fail(xt, x, x->phase == XP_IBB_WAIT
				? "no stream after SOCKS5 failed"
				: x->phase == XP_IBB
				? "in-band data stopped arriving"
				: x->phase == XP_STREAMING
				? "the sender went offline before the stream "
				  "started"
				: "the sender never started the stream", 1);
	}
}

void xfer_tick(struct xt *xt)
{
	int64_t now = now_ms();

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
		xfer_out_start_ready(xt, now);
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
			xfer_ibb_send_close(xt, x);
		xfer_free(xt, x);
	}
}

void xfer_peer_gone(struct xt *xt, const char *full)
{
	struct xfer *x = xt->xfers, *next;

	for (; x; x = next) {
		next = x->next;
		if (strcmp(x->peer, full) != 0)
			continue;
		/* A running SOCKS5 stream needs no presence: its bytes may
		 * still be in flight after the sender logged off. One that
		 * has not moved a byte yet (say a proxy stream never
		 * activated) gets a short grace, then fails. */
		if (x->phase == XP_STREAMING) {
			if (x->job && atomic_load(&x->job->done_bytes) == 0)
				x->deadline_ms = now_ms() + XT_GONE_GRACE_MS;
			continue;
		}
		if (x->out)
			xfer_out_requeue(xt, x);
		else
			xfer_in_fail(xt, x, "the sender went offline", 1);
	}
}

void xfer_disconnected(struct xt *xt)
{
	while (xt->xfers) {
		struct xfer *x = xt->xfers;

		if (x->out)
			xfer_out_requeue(xt, x);
		else
			xfer_in_fail(xt, x, "connection to the server lost", 1);
	}
}
