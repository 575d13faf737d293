/*
 * store: the single source of truth of xmppfs.
 *
 * One SQLite database (WAL, foreign keys, user_version migrations) plus the
 * data directory's files:
 *
 *   <data_dir>/state.db          contacts, outgoing and incoming transfers
 *   <data_dir>/spool/<id>        content of outgoing file <id> (the bytes the
 *                                user wrote into outbox; mode and mtime of the
 *                                outbox file ARE the spool file's st_mode and
 *                                st_mtime, its size is the spool file's size)
 *   <data_dir>/partial/<id>      incoming file <id> while it is received
 *   <data_dir>/inbox/<id>        incoming file <id> once complete and verified
 *
 * The store knows nothing of FUSE or XMPP. Every state change is one
 * committed transaction. All functions are thread-safe (one connection behind
 * the store's mutex) and may block on disk; none blocks on the network.
 * Functions returning int give 0 (or a count) on success and -errno on
 * failure. Row structs are plain values owned by the caller.
 */
#ifndef XFS_STORE_H
#define XFS_STORE_H

#include <stdint.h>
#include <sys/types.h>

struct store;

#define STORE_JID_MAX 1024  /* bytes incl. NUL; longer JIDs are rejected */
#define STORE_NAME_MAX 256  /* a file name: 255 bytes + NUL */
#define STORE_ERR_MAX 256   /* human-readable error text */
#define STORE_SID_MAX 128
#define STORE_HASH_MAX 33   /* MD5 hex + NUL */
#define STORE_DATE_MAX 40   /* XEP-0082 date-time */
#define STORE_METHOD_MAX 16 /* "s5b-direct", "s5b-proxy", "ibb" */

/*
 * Transfer states. Outgoing files move
 *   staged -> waiting -> offered -> sending -> sent | rejected | failed
 * and back to staged whenever the user changes the file; cancelled is the
 * state of a transfer whose file was deleted while in flight (kept only in
 * the status history). Incoming rows move
 *   receiving -> received | failed
 */
enum store_state {
	STORE_STAGED = 0,
	STORE_WAITING,
	STORE_OFFERED,
	STORE_SENDING,
	STORE_SENT,
	STORE_REJECTED,
	STORE_FAILED,
	STORE_CANCELLED,
	STORE_RECEIVING,
	STORE_RECEIVED,
};

/* "staged", "waiting", ...; never NULL. */
const char *store_state_name(enum store_state s);

/* ---- open / close -------------------------------------------------- */

/*
 * Open (creating if needed, mode 0700) the data directory and its database,
 * run migrations, and make the layout above. After an unclean stop, outgoing
 * rows in offered/sending go back to waiting (resumable); incoming rows in
 * receiving stay, with their partial file, for resume.
 */
int store_open(const char *data_dir, struct store **out);
void store_close(struct store *st); /* NULL is fine */
const char *store_data_dir(const struct store *st); /* borrowed */

/* Milliseconds of CLOCK_REALTIME, the clock all *_ms fields use. */
int64_t store_now_ms(void);

/* Free bytes in the data directory's filesystem (statvfs f_bavail). */
int store_free_bytes(struct store *st, uint64_t *out);

/*
 * Link state shown to the user (root xattr user.xmppfs.link and the status
 * header): "online", "offline", "connecting", or an error line. Kept in
 * memory only; the XMPP thread sets it, fs reads it. get copies into buf.
 */
void store_set_link(struct store *st, const char *text);
void store_get_link(struct store *st, char *buf, size_t len);

/* ---- contacts: outbox/<jid>/ folders ----------------------------- */

enum store_contact_origin {
	STORE_CONTACT_USER = 1,   /* made by mkdir */
	STORE_CONTACT_ROSTER = 2, /* from the XMPP roster */
};

struct store_contact {
	char jid[STORE_JID_MAX]; /* bare JID, already normalised */
	int origin;              /* bitmask of store_contact_origin */
	int subscribed;          /* roster subscription 'to' or 'both': we asked
				    for and see their presence */
	int64_t created_ms;
	/* Attributes of the outbox/<jid>/ folder as the user set them
	 * (chmod, utime: rsync -a does both). Until set: 0755 and
	 * created_ms. */
	uint32_t mode;           /* permission bits (07777) */
	int64_t mtime_ns;        /* ns since the epoch */
};

/*
 * Add a contact (or add an origin bit to an existing one). Returns -EEXIST
 * when the contact existed and already had this origin (mkdir maps it to
 * EEXIST), 0 otherwise. The caller validates and normalises the JID.
 */
int store_contact_add(struct store *st, const char *jid, int origin);
/* Update the subscription flag of a roster contact (adds it if missing). */
int store_contact_set_roster(struct store *st, const char *jid, int subscribed);
/* Remove; -ENOTEMPTY while it has outbox files, -ENOENT if unknown. */
int store_contact_del(struct store *st, const char *jid);
int store_contact_get(struct store *st, const char *jid,
		      struct store_contact *out);
/*
 * Persist the folder attributes of a contact. mode STORE_KEEP_MODE and
 * mtime_ns STORE_KEEP_MTIME leave that attribute as it is; mode is masked
 * with 07777. -ENOENT if the contact does not exist. One transaction; the
 * attributes survive restart and are dropped with the contact.
 */
#define STORE_KEEP_MODE (-1)
#define STORE_KEEP_MTIME INT64_MIN
int store_contact_set_attr(struct store *st, const char *jid, int mode,
			   int64_t mtime_ns);
/* Calls cb for every contact in JID order; stops early if cb returns != 0
 * and returns that value. */
typedef int (*store_contact_fn)(const struct store_contact *c, void *arg);
int store_contact_list(struct store *st, store_contact_fn cb, void *arg);

/* ---- outgoing files: outbox/<jid>/<name> -------------------------- */

struct store_out {
	int64_t id;
	char contact[STORE_JID_MAX];
	char name[STORE_NAME_MAX];
	enum store_state state;
	uint64_t gen;         /* bumped on every change of content or name */
	uint64_t size;        /* size when the row was last released/closed */
	uint64_t progress;    /* bytes sent in the current/last transfer */
	int64_t ready_at_ms;  /* waiting rows are sendable from this time */
	int64_t updated_ms;   /* time of the last state change */
	char hash[STORE_HASH_MAX]; /* MD5 of gen hash_gen's content, or "" */
	uint64_t hash_gen;
	char error[STORE_ERR_MAX];
	char peer[STORE_JID_MAX];  /* full JID it was offered to */
	char method[STORE_METHOD_MAX];
	char sid[STORE_SID_MAX];
};

/* Path of a spool file into buf; returns buf. */
char *store_spool_path(const struct store *st, int64_t id, char *buf,
		       size_t len);

/*
 * Create an empty outbox file: the row (state staged) and its spool file
 * with the given mode. Returns -EEXIST if the name exists, -ENOENT if the
 * contact does not. The new row is written to *out.
 */
int store_out_create(struct store *st, const char *contact, const char *name,
		     mode_t mode, struct store_out *out);
int store_out_get(struct store *st, const char *contact, const char *name,
		  struct store_out *out);
int store_out_get_id(struct store *st, int64_t id, struct store_out *out);
typedef int (*store_out_fn)(const struct store_out *o, void *arg);
/* Files of one contact in name order (cb as for contacts). */
int store_out_list(struct store *st, const char *contact, store_out_fn cb,
		   void *arg);
int store_out_count(struct store *st, const char *contact, uint64_t *out);

/*
 * The content or metadata that makes a file "new" changed (write, truncate,
 * utimens): gen++, state staged, progress/error cleared. Returns the new gen
 * through *gen_out if not NULL. Cheap enough to call once per open handle,
 * not meant per write(2).
 */
int store_out_touch(struct store *st, int64_t id, uint64_t *gen_out);

/*
 * The last writer closed the file: record its size; a staged row with a
 * visible name (not starting with '.') becomes waiting, sendable at
 * ready_at_ms. Rows in other states only get their size updated.
 */
int store_out_release(struct store *st, int64_t id, uint64_t size,
		      int64_t ready_at_ms);

/*
 * Rename/move (POSIX semantics): an existing row at the target is deleted
 * (its id through *replaced, else 0) together with its spool file. A row
 * renamed to a hidden name becomes staged; a staged row renamed to a visible
 * name becomes waiting at ready_at_ms. gen++ so an in-flight offer of the
 * old name is abandoned. -ENOENT if the target contact does not exist.
 */
int store_out_rename(struct store *st, int64_t id, const char *new_contact,
		     const char *new_name, int64_t ready_at_ms,
		     int64_t *replaced);
/* Delete the row and its spool file; in-flight transfers see -ENOENT. */
int store_out_delete(struct store *st, int64_t id);

/* -- used by the XMPP side -- */

/* Waiting rows with ready_at_ms <= now_ms, oldest first, at most max. */
int store_out_ready(struct store *st, int64_t now_ms, int max, store_out_fn cb,
		    void *arg);
/* Earliest ready_at_ms among waiting rows, or -ENOENT when none. */
int store_out_next_ready(struct store *st, int64_t *at_ms);

/*
 * Move row id to a new state, only if its gen is still gen (else -ESTALE:
 * the user changed the file meanwhile; -ENOENT: deleted). Fields passed as
 * NULL are left as they are; "" clears. error is only kept for failed,
 * rejected and cancelled; moving to waiting clears progress.
 */
int store_out_set_state(struct store *st, int64_t id, uint64_t gen,
			enum store_state state, const char *peer,
			const char *method, const char *sid, const char *error);
/* Progress in bytes; not a new transaction per call: batched in memory and
 * written at most every 500 ms or at the next state change. */
int store_out_set_progress(struct store *st, int64_t id, uint64_t gen,
			   uint64_t bytes);
int store_out_set_hash(struct store *st, int64_t id, uint64_t gen,
		       const char *md5hex);
/* All offered/sending rows back to waiting (connection lost, restart). */
int store_out_requeue_inflight(struct store *st);

/* ---- incoming files: inbox/<sender>/<name> ------------------------ */

struct store_in {
	int64_t id;
	char sender[STORE_JID_MAX]; /* bare JID */
	char peer[STORE_JID_MAX];   /* full JID of the sending resource */
	char name[STORE_NAME_MAX];  /* sanitized; for received rows the
				       unique name shown in inbox */
	char offer_name[STORE_NAME_MAX]; /* sanitized name as offered */
	enum store_state state;          /* receiving, received, failed */
	uint64_t size;                   /* announced size */
	uint64_t progress;               /* bytes in the partial file */
	char hash[STORE_HASH_MAX];       /* offered MD5 or "" */
	char date[STORE_DATE_MAX];       /* offered date or "" */
	char sid[STORE_SID_MAX];
	char method[STORE_METHOD_MAX];
	char error[STORE_ERR_MAX];
	int64_t created_ms, updated_ms;
	int64_t mtime_ms; /* file time shown in inbox (offered date or arrival) */
};

/* Paths of an incoming row's partial and final file into buf. */
char *store_partial_path(const struct store *st, int64_t id, char *buf,
			 size_t len);
char *store_inbox_path(const struct store *st, int64_t id, char *buf,
		       size_t len);

/*
 * Start receiving: inserts a receiving row from in (sender, peer,
 * offer_name, size, hash, date, sid, method) and creates an empty partial
 * file (mode 0600). Sets in->id.
 */
int store_in_begin(struct store *st, struct store_in *in);
/*
 * Find a resumable partial for the same offer (sender, offer_name, size, and
 * hash when both have one, else date when both have one) in state receiving
 * or failed-with-partial. On success fills *out (progress = the size of
 * the partial file, which is what counts); the caller then calls
 * store_in_rebind() to attach the new offer's sid, peer and method.
 * -ENOENT when there is none.
 */
int store_in_find_partial(struct store *st, const char *sender,
			  const char *offer_name, uint64_t size,
			  const char *hash, const char *date,
			  struct store_in *out);
int store_in_rebind(struct store *st, int64_t id, const char *sid,
		    const char *peer, const char *method);
int store_in_get_id(struct store *st, int64_t id, struct store_in *out);
int store_in_set_progress(struct store *st, int64_t id, uint64_t bytes);
/*
 * The partial file is complete and verified: fsync it, pick the unique
 * visible name in the sender's folder (offer_name, "name (2).ext", ...),
 * rename partial/<id> to inbox/<id>, mark received, commit. The final name
 * is written to name_out (STORE_NAME_MAX) if not NULL.
 */
int store_in_finish(struct store *st, int64_t id, char *name_out);
/*
 * The transfer failed. keep_partial != 0 keeps the partial for a later
 * resume (connection lost); 0 deletes it (verification failed, bad peer).
 */
int store_in_fail(struct store *st, int64_t id, const char *error,
		  int keep_partial);

typedef int (*store_in_fn)(const struct store_in *in, void *arg);
/* Senders that have at least one received file, in order (cb gets a row
 * whose only meaningful field is sender). */
int store_in_senders(struct store *st, store_in_fn cb, void *arg);
/* Received files of one sender, in name order. */
int store_in_list(struct store *st, const char *sender, store_in_fn cb,
		  void *arg);
/* A received file by its visible name. */
int store_in_get(struct store *st, const char *sender, const char *name,
		 struct store_in *out);
/* Rename within the sender's folder; an existing target is replaced
 * (deleted with its file), POSIX-style. */
int store_in_rename(struct store *st, int64_t id, const char *new_name);
/* Delete a received row and its file. */
int store_in_delete(struct store *st, int64_t id);

/* ---- status: every live and recent transfer, both directions ------- */

struct store_xfer {
	int outgoing;  /* 1 = outbox row, 0 = incoming row */
	int64_t id;
	const char *jid;   /* contact or sender (bare) */
	const char *peer;  /* full JID or "" */
	const char *name;
	enum store_state state;
	uint64_t size, progress;
	const char *method, *error;
	int64_t updated_ms;
};
typedef int (*store_xfer_fn)(const struct store_xfer *x, void *arg);
/* Outgoing rows not staged, and incoming rows, newest change first,
 * at most max rows (0 = all). Strings are borrowed for the call. */
int store_xfer_list(struct store *st, int max, store_xfer_fn cb, void *arg);
/* The same rows, read straight from a data directory's database, opened
 * read-only (no lock: works while a daemon has it, or none). For
 * `xmppfs status DATA_DIR`. -ENOENT when there is no state.db. */
int store_peek_xfers(const char *data_dir, int max, store_xfer_fn cb,
		     void *arg);

/* ---- events: the stream behind /events ------------------------------ */

/*
 * Every committed state change of a row is appended to an event stream as
 * one line of JSON, in commit order:
 *   outgoing: created (staged), touched (staged), released (waiting),
 *             store_out_set_state (any state, or a new peer/method),
 *             renames that change the state, store_out_requeue_inflight
 *             (waiting), deletion while offered/sending (cancelled, error
 *             "deleted");
 *   incoming: store_in_begin and store_in_rebind from failed (receiving),
 *             store_in_finish (received), store_in_fail (failed).
 * Line: {"time":"2024-05-01T12:00:00.123Z","dir":"out"|"in","state":...,
 *   "jid":bare,"peer":full or "","name":...,"size":N,"progress":N,
 *   "method":...,"error":...,"id":N}\n, valid UTF-8 (invalid bytes of
 *   names become U+FFFD; control characters are escaped).
 *
 * The store keeps the newest STORE_EVENTS_RING bytes in memory (nothing is
 * persisted). Offsets count bytes since store_open(), starting at 0, and
 * only grow. Thread-safe; readers never hold the store's main lock.
 */
#define STORE_EVENTS_RING (256 * 1024)

/* Bytes emitted since open (the offset where the next line will start);
 * *last_ms (if not NULL) gets the time of the last event, 0 if none. */
uint64_t store_events_end(struct store *st, int64_t *last_ms);

/*
 * Copy up to len bytes of the stream starting at offset off into buf.
 * An off older than the ring moves forward to the oldest whole line still
 * held; an off past the end moves back to the end. At the end, waits up to
 * timeout_ms (0: not at all, < 0: forever) for the next line. Returns the
 * number of bytes copied (0: nothing new before the timeout), -EINVAL on
 * bad arguments. *next_off gets the offset after the last byte copied, so
 * the bytes came from *next_off - n. Blocks (timeout_ms != 0) on a
 * condition variable only; any thread.
 */
int store_events_read(struct store *st, uint64_t off, char *buf, size_t len,
		      int timeout_ms, uint64_t *next_off);

#endif
