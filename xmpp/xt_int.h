/*
 * xmpp/xt_int.h: what the files of the XMPP engine share. Not a public API.
 *
 * Threads: everything in struct xt except the fields marked otherwise is
 * owned by the xmpp thread. Worker threads (SOCKS5 streams, hashing) own a
 * struct xt_job each and talk back only through xt_post() (the event queue,
 * protected by xt->qlock) and the job's atomics.
 *
 * Lock order: xt->qlock and xt->s5b_lock are leaves; never hold one while
 * taking the other or calling the store.
 */
#ifndef XFS_XT_INT_H
#define XFS_XT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <strophe.h>

#include "store/store.h"
#include "xmpp/proto.h"
#include "xmpp/xt.h"

#define XT_MAX_OUT 32         /* outgoing transfers at once */
#define XT_MAX_IN 64          /* incoming transfers pending or running */
#define XT_IBB_BLOCK 4096     /* XEP-0047 §usage RECOMMENDED */
#define XT_IBB_WINDOW 16      /* unacknowledged IBB data iqs in flight */
#define XT_S5B_CONNECT_MS 5000 /* per streamhost (libpurple 15 s, QXmpp 7 s) */
#define XT_OFFER_TIMEOUT_MS (10 * 60 * 1000)
#define XT_STREAM_WAIT_MS (60 * 1000)  /* silence allowed inside a stream */
#define XT_START_WAIT_MS (30 * 1000)   /* accept -> bytestream must start */
#define XT_GONE_GRACE_MS 10000 /* sender offline, stream still silent */
#define XT_MAX_IN_PER_SENDER 16 /* so one sender cannot starve the others */
#define XT_MAX_OUT_PER_PEER 16  /* = what a receiving xmppfs accepts */
#define XT_MAX_PROXY_PER_PEER 5 /* ejabberd's proxy65 max_connections */
#define XT_IBB_FALLBACK_MS (30 * 1000) /* libpurple waits 30 s too */
#define XT_IQ_TIMEOUT_MS (60 * 1000)
#define XT_MAX_ATTEMPTS 5
#define XT_CONNECT_TIMEOUT_MS 15000 /* TCP + TLS + SASL + bind */
#define XT_PING_MS 10000
#define XT_PING_TIMEOUT_MS 10000

/* ---- jobs: work done on a worker thread ---------------------------- */

enum xt_job_kind {
	JOB_HASH,        /* MD5 of a spool file */
	JOB_S5B_SEND,    /* stream a spool file into a connected socket */
	JOB_S5B_PROXY,   /* connect to a proxy as initiator, then send */
	JOB_S5B_RECV,    /* try streamhosts in order, then receive */
};

struct xt_job {
	atomic_int refs;
	enum xt_job_kind kind;
	uint64_t xfer_serial;      /* which transfer it belongs to */
	int fd;                    /* file: spool (send) or partial (recv) */
	int sock;                  /* connected socket, or -1 */
	uint64_t offset, length;   /* byte range to move */
	char dstaddr[41];
	struct proto_streamhost hosts[PROTO_MAX_HOSTS];
	int nhosts;
	int used_host;             /* index that connected */
	atomic_uint_fast64_t done_bytes;
	atomic_int cancel;
	/* JOB_S5B_PROXY waits for activation: go becomes 1 (send) or -1. */
	pthread_mutex_t go_lock;
	pthread_cond_t go_cond;
	int go;
	/* results */
	int err;                   /* 0 or -errno */
	char errmsg[STORE_ERR_MAX];
	char md5[33];              /* JOB_HASH and JOB_S5B_RECV */
	void *md5_ctx;             /* EVP_MD_CTX *, primed with a resumed prefix */
};

struct xt_job *xt_job_new(enum xt_job_kind kind, uint64_t serial);
void xt_job_unref(struct xt_job *j);
/* Start the job on its own detached thread (takes a reference). */
int xt_job_start(struct xt *xt, struct xt_job *j);
void xt_job_go(struct xt_job *j, int go);

/* ---- events from workers to the xmpp thread ----------------------- */

enum xt_ev_kind {
	EV_JOB_CONNECTED, /* S5B recv: connected to hosts[used_host];
			     S5B proxy: SOCKS5 to the proxy done */
	EV_JOB_DONE,      /* job finished; err says how */
	EV_S5B_INCOMING,  /* listener parked a socket for dstaddr */
};

struct xt_ev {
	struct xt_ev *next;
	enum xt_ev_kind kind;
	struct xt_job *job; /* a reference, or NULL */
};

void xt_post(struct xt *xt, enum xt_ev_kind kind, struct xt_job *job);

/* ---- transfers ------------------------------------------------------ */

enum xfer_phase {
	XP_HASHING,      /* out: computing MD5 */
	XP_OFFERED,      /* out: offer sent; in: accepted, waiting for stream */
	XP_S5B_HOSTS,    /* out: streamhosts sent, waiting for streamhost-used */
	XP_S5B_PROXY,    /* out: connecting to the proxy / activating */
	XP_S5B_RECV,     /* in: trying streamhosts */
	XP_STREAMING,    /* bytes moving on a job (S5B) */
	XP_IBB_OPENING,  /* out: <open/> sent */
	XP_IBB,          /* IBB data flowing */
	XP_IBB_WAIT,     /* in: S5B failed, waiting for IBB on the same SID */
	XP_CLOSING,
};

struct xfer {
	struct xfer *next;
	uint64_t serial;
	int out;                  /* 1 = we send */
	int64_t row;              /* store id */
	uint64_t gen;             /* out: row gen this transfer is for */
	enum xfer_phase phase;
	char sid[PROTO_SID_MAX];
	char peer[PROTO_JID_MAX]; /* full JID of the other side */
	char bare[STORE_JID_MAX];
	char name[STORE_NAME_MAX];
	uint64_t size;
	char hash[33];
	int64_t deadline_ms;
	enum proto_method method;
	int s5b_failed;           /* tried S5B, fall back to IBB */
	uint64_t offset;          /* resume offset */
	int fd;                   /* spool or partial file */
	struct xt_job *job;       /* running job or NULL */
	char method_name[STORE_METHOD_MAX];
	/* S5B */
	char dstaddr[41];
	char s5b_iq_id[PROTO_SID_MAX]; /* in: the streamhosts iq to answer */
	int used_proxy;
	int direct_first;         /* our own streamhost was offered first */
	int proxy_offered;        /* the proxy is among our streamhosts */
	/* IBB */
	unsigned block;
	uint16_t seq;             /* next seq to send / expect */
	unsigned inflight;
	uint64_t ibb_sent, ibb_acked; /* bytes from offset */
	uint64_t received;        /* in: bytes in the partial file */
	void *md5_ctx;            /* in: EVP_MD_CTX * over the whole file */
	int64_t progress_ms;
};

/* ---- the engine ----------------------------------------------------- */

struct xt_peer {
	struct xt_peer *next;
	char full[PROTO_JID_MAX];
	char bare[STORE_JID_MAX];
	int priority;
	int ft;          /* disco says SI file transfer: -1 unknown, 0, 1 */
	int disco_sent;
};

typedef void (*xt_iq_fn)(struct xt *xt, xmpp_stanza_t *iq, uint64_t serial,
			 int kind);

struct xt_pending {
	struct xt_pending *next;
	char id[32];
	xt_iq_fn fn;
	uint64_t serial;
	int kind;
	int64_t deadline_ms;
};

struct xt {
	struct xt_config cfg;     /* strings owned (copied) */
	struct store *st;
	xmpp_ctx_t *ctx;
	xmpp_conn_t *conn;
	xmpp_log_t log;
	pthread_t thread;
	int thread_started;
	int evfd;                 /* wakes the loop: xt_wake, xt_post */
	atomic_int stopping;
	int sock;                 /* the server connection's fd, or -1 */
	int online;               /* logged in */
	int connecting;
	int cert_failed;          /* the last TLS handshake failed verification */
	char cert_why[200];
	int64_t connect_started_ms;
	char self[PROTO_JID_MAX]; /* our full JID once bound */
	int64_t reconnect_at_ms;
	unsigned backoff_ms;
	int64_t ping_due_ms, ping_deadline_ms;
	char ping_id[32];
	uint64_t next_id;
	uint64_t next_serial;

	/* first-login handshake with xt_start() */
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	int start_done;
	int start_rc;
	char start_err[512];

	/* event queue from workers (protected by qlock) */
	pthread_mutex_t qlock;
	struct xt_ev *q_head, *q_tail;

	struct xt_pending *pending;
	struct xt_peer *peers;
	struct xfer *xfers;
	struct xt_path {          /* which S5B path worked, per contact */
		char bare[STORE_JID_MAX];
		int proxy_first;
	} paths[16];
	struct xt_subscribed {
		struct xt_subscribed *next;
		char jid[STORE_JID_MAX];
	} *subscribed;            /* subscribe sent this session */
	int nout, nin;
	/* Outgoing rows whose last attempt broke off: retried with backoff,
	 * XT_MAX_ATTEMPTS times, then failed (xmpp thread). */
	struct xt_retry {
		int64_t row;
		int attempts;
		int64_t not_before_ms;
	} retries[XT_MAX_OUT * 4];
	atomic_int rows_changed;  /* set by xt_wake(): rescan the store */
	atomic_int workers;       /* job and handshake threads alive */
	int64_t last_scan_ms;
	int64_t next_ready_ms;    /* earliest settling row, 0 = none */
	uint8_t ibb_buf[65536];   /* decoded IBB block (xmpp thread) */

	/* SOCKS5 proxy (xmpp thread) */
	char proxy_jid[PROTO_JID_MAX];
	char proxy_host[PROTO_HOST_MAX];
	uint16_t proxy_port;

	/* direct SOCKS5 listener; s5b_* protected by s5b_lock */
	int listen_fd;
	uint16_t listen_port;
	char listen_host[PROTO_HOST_MAX];
	pthread_t listen_thread;
	int listen_started;
	pthread_mutex_t s5b_lock;
	struct xt_s5b_slot {
		char dstaddr[41];
		int sock;            /* parked connection or -1 */
		int used;
	} s5b_slots[XT_MAX_OUT * 2];
};

/* session.c */
void xt_send(struct xt *xt, xmpp_stanza_t *st); /* sends and releases */
/* Send an iq and call fn(xt, reply, serial, kind) on its result/error, or
 * with reply NULL on timeout / disconnect. Takes the stanza (releases).
 * The id is set here. */
void xt_send_iq(struct xt *xt, xmpp_stanza_t *iq, xt_iq_fn fn,
		uint64_t serial, int kind, int timeout_ms);
void xt_next_id(struct xt *xt, char *buf, size_t len);
void xt_reply_error(struct xt *xt, xmpp_stanza_t *iq, const char *type,
		    const char *cond, const char *text, const char *app_ns,
		    const char *app_cond);
void xt_reply_result(struct xt *xt, xmpp_stanza_t *iq);
struct xt_peer *xt_best_peer(struct xt *xt, const char *bare);

/* xfer.c: the transfer engine */
void xfer_tick(struct xt *xt);           /* start ready files, deadlines */
void xfer_on_event(struct xt *xt, struct xt_ev *ev);
void xfer_disconnected(struct xt *xt);   /* everything back to resumable */
void xfer_check_rows(struct xt *xt);     /* fs changed/deleted files */
struct xfer *xfer_find(struct xt *xt, uint64_t serial);
int xfer_handle_iq(struct xt *xt, xmpp_stanza_t *iq); /* 1 = handled */
void xfer_peer_gone(struct xt *xt, const char *full);
void xfer_free_all(struct xt *xt);

/* xfer.c internals shared by xfer_out.c and xfer_in.c */
struct xfer *xfer_new(struct xt *xt, int out);
void xfer_free(struct xt *xt, struct xfer *x);
struct xfer *xfer_find_by_row(struct xt *xt, int64_t row, int out);
struct xfer *xfer_find_by_sid(struct xt *xt, const char *sid,
			      const char *from);
void xfer_job_stop(struct xfer *x);
void xfer_make_sid(char *buf, size_t len);
const char *xfer_cond_text(xmpp_stanza_t *iq, char *buf, size_t len);
int xfer_same_jid(const char *a, const char *b);
void xfer_ibb_send_close(struct xt *xt, struct xfer *x);
/* xfer_out.c */
void xfer_out_start_ready(struct xt *xt, int64_t now);
void xfer_out_fail(struct xt *xt, struct xfer *x, enum store_state st,
		   const char *why);
void xfer_out_requeue(struct xt *xt, struct xfer *x);
void xfer_out_job_done(struct xt *xt, struct xfer *x, struct xt_job *j);
void xfer_out_job_connected(struct xt *xt, struct xfer *x);
/* xfer_in.c */
void xfer_in_fail(struct xt *xt, struct xfer *x, const char *why, int keep);
void xfer_in_offer(struct xt *xt, xmpp_stanza_t *iq);
void xfer_in_streamhosts(struct xt *xt, xmpp_stanza_t *iq);
void xfer_in_ibb_open(struct xt *xt, xmpp_stanza_t *iq);
void xfer_in_ibb_data(struct xt *xt, xmpp_stanza_t *iq);
void xfer_in_ibb_close(struct xt *xt, xmpp_stanza_t *iq);
void xfer_in_job_connected(struct xt *xt, struct xfer *x, struct xt_job *j);
void xfer_in_job_done(struct xt *xt, struct xfer *x, struct xt_job *j);

/* s5b.c: the direct listener and the stream jobs */
int xt_s5b_listen(struct xt *xt, const char *host);
void xt_s5b_stop(struct xt *xt);
int xt_s5b_expect(struct xt *xt, const char *dstaddr);
int xt_s5b_take(struct xt *xt, const char *dstaddr); /* parked sock or -1 */
void xt_s5b_forget(struct xt *xt, const char *dstaddr);
/* Wait (bounded) until every worker thread has finished. */
void xt_workers_wait(struct xt *xt, int timeout_ms);

/* md5 helpers over EVP (util in s5b.c) */
void *xt_md5_new(void);
void xt_md5_update(void *ctx, const void *data, size_t len);
void xt_md5_final(void *ctx, char hex[33]); /* frees ctx */
void xt_md5_free(void *ctx);
/* MD5 of the first len bytes of fd into ctx; 0 or -errno. */
int xt_md5_prefix(void *ctx, int fd, uint64_t len);

#endif
