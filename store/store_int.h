/*
 * store_int.h: what store.c, store_out.c and store_in.c share. Not part of
 * the store API; nothing outside store/ includes it.
 */
#ifndef XFS_STORE_INT_H
#define XFS_STORE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store.h"

/*
 * States appear as literals in SQL so that SQLite can use the partial
 * indexes (a bound parameter cannot match an index's WHERE clause).
 */
#define SQL_STAGED "0"
#define SQL_WAITING "1"
#define SQL_OFFERED "2"
#define SQL_SENDING "3"
#define SQL_FAILED "6"
#define SQL_CANCELLED "7"
#define SQL_RECEIVING "8"
#define SQL_RECEIVED "9"

/* Rows copied per lock hold by the list functions (see store.c). */
#define STORE_LIST_CHUNK 64

/* store_out_set_progress writes a row at most this often. */
#define STORE_PROGRESS_MS 500

/* Cached prepared statements; SQL text in store.c. */
enum store_stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_CONTACT_GET,
	S_CONTACT_INS,
	S_CONTACT_UPD,
	S_CONTACT_DEL,
	S_CONTACT_LIST,
	S_CONTACT_ATTR,
	S_OUT_INS,
	S_OUT_GET_NAME,
	S_OUT_GET_ID,
	S_OUT_LIST,
	S_OUT_COUNT,
	S_OUT_UPD,
	S_OUT_DEL,
	S_OUT_PROGRESS,
	S_OUT_READY,
	S_OUT_NEXT,
	S_OUT_REQUEUE,
	S_OUT_INFLIGHT,
	S_HIST_INS,
	S_HIST_PRUNE,
	S_IN_INS,
	S_IN_GET_ID,
	S_IN_GET_NAME,
	S_IN_UPD,
	S_IN_DEL,
	S_IN_PROGRESS,
	S_IN_FIND,
	S_IN_LIST,
	S_IN_SENDERS,
	S_XFER,
	S_COUNT_
};

/* Progress reported but not yet written (store_*_set_progress). */
struct store_pend {
	int64_t id;
	int incoming;
	int dirty;
	uint64_t gen;        /* == the row's gen while the entry exists */
	uint64_t bytes;
	int64_t written_ms;  /* CLOCK_MONOTONIC of the last write */
};

/* A growable byte buffer (event lines of the open transaction). */
struct store_evbuf {
	char *p;
	size_t len, cap;
	int err;
};

/*
 * Lock order: lock, then ev_lock (store_ev_commit); link_lock is never
 * nested with either.
 */
struct store {
	pthread_mutex_t lock;
	sqlite3 *db;                    /* protected by lock */
	sqlite3_stmt *stmt[S_COUNT_];   /* protected by lock */
	struct store_pend *pend;        /* protected by lock */
	size_t npend, cappend;          /* protected by lock */

	char *dir;                      /* immutable after open */
	int dir_fd;                     /* flock()ed: one daemon per dir */
	int spool_fd, partial_fd, inbox_fd; /* for fsync of the dirs */
	int fresh;                      /* state.db was created by this open */

	pthread_mutex_t link_lock;
	char link[STORE_ERR_MAX];       /* protected by link_lock */

	/* Event lines of the open transaction (store_events.c). */
	struct store_evbuf ev_pend;     /* protected by lock */
	/* The event ring; see store_events.c. */
	pthread_mutex_t ev_lock;
	pthread_cond_t ev_cond;         /* signalled when ev_end grows */
	char *ev_ring;                  /* ev_cap bytes; protected by ev_lock */
	size_t ev_cap;                  /* immutable after open */
	uint64_t ev_start, ev_end;      /* protected by ev_lock */
	int64_t ev_last_ms;             /* protected by ev_lock */
	int ev_ready;                   /* ev_lock/ev_cond initialised */
};

/* store.c: helpers for the other store files. Callers hold st->lock. */
sqlite3_stmt *store_stmt(struct store *st, enum store_stmt_id id);
void store_stmt_done(sqlite3_stmt *s);
int store_sqlerr(struct store *st, int rc);
int store_step_done(struct store *st, sqlite3_stmt *s);
int store_tx_begin(struct store *st);
int store_tx_commit(struct store *st);
void store_tx_rollback(struct store *st);

void store_col_text(sqlite3_stmt *s, int col, char *dst, size_t cap);
void store_bind_text(sqlite3_stmt *s, int idx, const char *v);
int store_check_name(const char *name);
int store_check_jid(const char *jid);
int store_check_str(const char *s, size_t cap);
void store_copy_trunc(char *dst, size_t cap, const char *src);
size_t store_utf8_cut(const char *s, size_t max);
int store_contact_exists(struct store *st, const char *jid);
int64_t store_mono_ms(void);
int store_fsync_dir(int fd);
void store_unlink_at(int dir_fd, int64_t id);

struct store_pend *store_pend_find(struct store *st, int incoming,
				   int64_t id);
struct store_pend *store_pend_add(struct store *st, int incoming, int64_t id,
				  uint64_t gen);
void store_pend_drop(struct store *st, int incoming, int64_t id);
int store_pend_flush_all(struct store *st);

/* store_events.c. Staged lines reach the ring at the next successful
 * store_tx_commit(); store_tx_rollback() drops them. Callers hold lock. */
int store_ev_init(struct store *st);
void store_ev_fini(struct store *st);
void store_ev_stage(struct store *st, const struct store_xfer *x);
/* state and error override the row's (error NULL: the row's). */
void store_ev_stage_out(struct store *st, const struct store_out *o,
			enum store_state state, const char *error);
void store_ev_stage_in(struct store *st, const struct store_in *in);
void store_ev_commit(struct store *st);
void store_ev_discard(struct store *st);

/* store_out.c */
int store_out_read_id(struct store *st, int64_t id, struct store_out *o);
int store_out_requeue_locked(struct store *st);

/* store_in.c */
int store_in_read_id(struct store *st, int64_t id, struct store_in *in);

#endif
