/*
 * xmpp/xfer_in: receiving. See xfer.c for the whole flow.
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

static int64_t now_ms(void)
{
	return store_now_ms();
}

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

void xfer_in_fail(struct xt *xt, struct xfer *x, const char *why, int keep)
{
	int rc;

	log_info("xt", "receiving %s from %s failed: %s", x->name, x->peer,
		 why);
	/* A doomed partial goes first: on a full disk the database cannot
	 * commit the failure until its space is back. */
	if (!keep && x->fd >= 0 && ftruncate(x->fd, 0) < 0)
		log_warn("xt", "truncating the partial of %s", x->name);
	if (keep)
		store_in_set_progress(xt->st, x->row, x->received);
	rc = store_in_fail(xt->st, x->row, why, keep);
	if (rc < 0)
		log_warnx("xt", "cannot record the failure of %s: %s", x->name,
			  strerror(-rc));
	xfer_free(xt, x);
}

/* Incoming transfers pending or running from one sender. */
static int in_from(struct xt *xt, const char *bare)
{
	int n = 0;

	for (struct xfer *x = xt->xfers; x; x = x->next)
		if (!x->out && strcmp(x->bare, bare) == 0)
			n++;
	return n;
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
		xfer_in_fail(xt, x, why, 1);
		return;
	}
	if (x->hash[0] && strcasecmp(x->hash, md5hex) != 0) {
		snprintf(why, sizeof(why), "MD5 mismatch: offered %s, "
			 "received %s", x->hash, md5hex);
		xfer_in_fail(xt, x, why, 0);
		return;
	}
	store_in_set_progress(xt->st, x->row, x->received);
	rc = store_in_finish(xt->st, x->row, name);
	if (rc < 0) {
		snprintf(why, sizeof(why), "cannot store the file: %s",
			 strerror(-rc));
		xfer_in_fail(xt, x, why, 0);
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
	/* XEP-0095 §3 (and its error table): rejection is 403 forbidden. */
	log_info("xt", "declined an offer from %s: %s",
		 xmpp_stanza_get_from(iq), why);
	xt_reply_error(xt, iq, "cancel", "forbidden", why, NULL, NULL);
}

void xfer_in_offer(struct xt *xt, xmpp_stanza_t *iq)
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
		log_info("xt", "refused a malformed offer from %s (%s)",
			 xmpp_stanza_get_from(iq) ? xmpp_stanza_get_from(iq)
						  : "?", strerror(-rc));
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
	if (xt->nin >= XT_MAX_IN || in_from(xt, bare) >= XT_MAX_IN_PER_SENDER) {
		/* Temporary: RFC 6120 §8.3.2 type 'wait', so a sender may
		 * try again later rather than give up. */
		log_info("xt", "busy: deferred an offer from %s", full);
		xt_reply_error(xt, iq, "wait", "resource-constraint",
			       "too many transfers at once, try later", NULL,
			       NULL);
		goto out;
	}
	if (xfer_find_by_sid(xt, o->sid, full)) {
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

	/* Resume (XEP-0096 §3, <range/>): only when the sender offered <range/>. */
	if (o->range &&
	    store_in_find_partial(xt->st, bare, in.offer_name, o->size,
				  o->hash, o->date, &in) == 0 &&
	    in.progress <= o->size) {
		struct xfer *old = xfer_find_by_row(xt, in.id, 0);

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
		xfer_in_fail(xt, x, "cannot open the partial file", 0);
		decline(xt, iq, "cannot store the file here");
		goto out;
	}
	x->received = x->offset;
	x->phase = XP_OFFERED;
	x->deadline_ms = now_ms() + XT_START_WAIT_MS;
	r = proto_build_accept(xt->ctx, o->from, o->id, m, x->offset);
	if (r)
		xt_send(xt, r);
	log_info("xt", "accepted %s (%llu bytes) from %s by %s%s", x->name,
		 (unsigned long long)x->size, x->peer, x->method_name,
		 x->offset ? ", resuming" : "");
out:
	free(o);
}

void xfer_in_streamhosts(struct xt *xt, xmpp_stanza_t *iq)
{
	struct proto_streamhosts *h = calloc(1, sizeof(*h));
	struct xfer *x;
	struct xt_job *j;
	int rc;

	if (!h)
		return;
	rc = proto_parse_streamhosts(iq, h);
	x = rc == 0 ? xfer_find_by_sid(xt, h->sid, h->from) : NULL;
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
		xfer_job_stop(x);
		xfer_in_fail(xt, x, "cannot start receiving", 1);
	}
out:
	free(h);
}

static void ibb_close_peer(struct xt *xt, struct xfer *x)
{
	xfer_ibb_send_close(xt, x);
}

void xfer_in_ibb_open(struct xt *xt, xmpp_stanza_t *iq)
{
	struct proto_ibb_open o;
	struct xfer *x;

	if (proto_parse_ibb_open(iq, &o) < 0) {
		xt_reply_error(xt, iq, "modify", "bad-request", NULL, NULL,
			       NULL);
		return;
	}
	x = xfer_find_by_sid(xt, o.sid, o.from);
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

void xfer_in_ibb_data(struct xt *xt, xmpp_stanza_t *iq)
{
	struct proto_ibb_data d;
	struct xfer *x;
	size_t len = 0;
	char why[200];
	int rc;

	rc = proto_parse_ibb_data(iq, &d, xt->ibb_buf, sizeof(xt->ibb_buf),
				  &len);
	x = xfer_find_by_sid(xt, d.sid, d.from[0] ? d.from
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
		xfer_in_fail(xt, x, "bad in-band data (base64)", 0);
		return;
	}
	/* XEP-0047 §2.2: out-of-sequence data MUST close the stream. */
	if (d.seq != x->seq) {
		snprintf(why, sizeof(why), "in-band data out of sequence "
			 "(got %u, expected %u)", d.seq, x->seq);
		xt_reply_error(xt, iq, "cancel", "unexpected-request", NULL,
			       NULL, NULL);
		ibb_close_peer(xt, x);
		xfer_in_fail(xt, x, why, 0);
		return;
	}
	if (len > x->block || x->received + len > x->size) {
		xt_reply_error(xt, iq, "modify", "not-acceptable", NULL, NULL,
			       NULL);
		ibb_close_peer(xt, x);
		xfer_in_fail(xt, x, len > x->block
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
		xfer_in_fail(xt, x, why, 0);
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

void xfer_in_ibb_close(struct xt *xt, xmpp_stanza_t *iq)
{
	char sid[PROTO_SID_MAX];
	struct xfer *x;
	char md5[33], why[200];

	if (proto_parse_ibb_close(iq, sid, sizeof(sid)) < 0) {
		xt_reply_error(xt, iq, "modify", "bad-request", NULL, NULL,
			       NULL);
		return;
	}
	x = xfer_find_by_sid(xt, sid, xmpp_stanza_get_from(iq));
	if (!x) {
		xt_reply_error(xt, iq, "cancel", "item-not-found", NULL, NULL,
			       NULL);
		return;
	}
	xt_reply_result(xt, iq);
	if (x->out) {
		if (x->phase == XP_IBB || x->phase == XP_IBB_OPENING)
			xfer_out_fail(xt, x, STORE_FAILED,
				 "the peer closed the in-band stream");
		return;
	}
	if (x->phase != XP_IBB) {
		xfer_in_fail(xt, x, "the peer closed the stream", 1);
		return;
	}
	if (x->received < x->size) {
		snprintf(why, sizeof(why), "stream closed after %llu of %llu "
			 "bytes", (unsigned long long)x->received,
			 (unsigned long long)x->size);
		xfer_in_fail(xt, x, why, 1);
		return;
	}
	xt_md5_final(x->md5_ctx, md5);
	x->md5_ctx = NULL;
	in_finish(xt, x, md5);
}

void xfer_in_job_connected(struct xt *xt, struct xfer *x, struct xt_job *j)
{
	const struct proto_streamhost *h = &j->hosts[j->used_host];
	xmpp_stanza_t *r;

	r = proto_build_streamhost_used(xt->ctx, x->peer, x->s5b_iq_id, x->sid,
					h->jid);
	if (r)
		xt_send(xt, r);
	snprintf(x->method_name, sizeof(x->method_name), "%s",
		 xfer_same_jid(h->jid, x->peer) ? "s5b-direct" : "s5b-proxy");
	store_in_rebind(xt->st, x->row, x->sid, x->peer, x->method_name);
	x->phase = XP_STREAMING;
}

void xfer_in_job_done(struct xt *xt, struct xfer *x, struct xt_job *j)
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
		/* Keep what arrived for a resume, unless the peer lied
		 * about the size or the disk is full (then it must go). */
		int keep = j->err != -EMSGSIZE && j->err != -ENOSPC &&
			   j->err != -EDQUOT;
		char why[STORE_ERR_MAX];

		snprintf(why, sizeof(why), "%s", j->errmsg);
		xt_job_unref(j);
		store_in_set_progress(xt->st, x->row, x->received);
		xfer_in_fail(xt, x, why, keep);
		return;
	}
	xt_md5_final(j->md5_ctx, md5);
	j->md5_ctx = NULL;
	xt_job_unref(j);
	in_finish(xt, x, md5);
}
