/*
 * store_out: outgoing files (outbox/<jid>/<name>), one out_file row and one
 * spool file each.
 *
 * Most changes are read-modify-write of a whole row inside one transaction
 * (store_out_modify): the row is read, a small function edits the struct
 * (the policy lives there, in C, where it can be read), the row is written
 * back and committed. gen is the row's content/name generation; the XMPP
 * side passes the gen it started with, and a mismatch (-ESTALE) tells it
 * that the user changed the file meanwhile.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

static int store_name_hidden(const char *name)
{
	return name[0] == '.';
}

static void store_out_from_row(struct store *st, sqlite3_stmt *s,
			       struct store_out *o)
{
	o->id = sqlite3_column_int64(s, 0);
	store_col_text(s, 1, o->contact, sizeof(o->contact));
	store_col_text(s, 2, o->name, sizeof(o->name));
	o->state = (enum store_state)sqlite3_column_int(s, 3);
	o->gen = (uint64_t)sqlite3_column_int64(s, 4);
	o->size = (uint64_t)sqlite3_column_int64(s, 5);
	o->progress = (uint64_t)sqlite3_column_int64(s, 6);
	o->ready_at_ms = sqlite3_column_int64(s, 7);
	o->updated_ms = sqlite3_column_int64(s, 8);
	store_col_text(s, 9, o->hash, sizeof(o->hash));
	o->hash_gen = (uint64_t)sqlite3_column_int64(s, 10);
	store_col_text(s, 11, o->error, sizeof(o->error));
	store_col_text(s, 12, o->peer, sizeof(o->peer));
	store_col_text(s, 13, o->method, sizeof(o->method));
	store_col_text(s, 14, o->sid, sizeof(o->sid));
	if (st->npend) {
		struct store_pend *p = store_pend_find(st, 0, o->id);

		if (p)
			o->progress = p->bytes;
	}
}

/* Step a one-row query into *o: 0, -ENOENT, -errno. Resets s. */
static int store_out_step_one(struct store *st, sqlite3_stmt *s,
			      struct store_out *o)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		store_out_from_row(st, s, o);
	store_stmt_done(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : store_sqlerr(st, rc);
}

int store_out_read_id(struct store *st, int64_t id, struct store_out *o)
{
	sqlite3_stmt *s = st->stmt[S_OUT_GET_ID];

	sqlite3_bind_int64(s, 1, id);
	return store_out_step_one(st, s, o);
}

static int store_out_read_name(struct store *st, const char *contact,
			       const char *name, struct store_out *o)
{
	sqlite3_stmt *s = st->stmt[S_OUT_GET_NAME];

	store_bind_text(s, 1, contact);
	store_bind_text(s, 2, name);
	return store_out_step_one(st, s, o);
}

static int store_out_write(struct store *st, const struct store_out *o)
{
	sqlite3_stmt *s = st->stmt[S_OUT_UPD];

	sqlite3_bind_int64(s, 1, o->id);
	store_bind_text(s, 2, o->contact);
	store_bind_text(s, 3, o->name);
	sqlite3_bind_int(s, 4, (int)o->state);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)o->gen);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)o->size);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)o->progress);
	sqlite3_bind_int64(s, 8, o->ready_at_ms);
	sqlite3_bind_int64(s, 9, o->updated_ms);
	store_bind_text(s, 10, o->hash);
	sqlite3_bind_int64(s, 11, (sqlite3_int64)o->hash_gen);
	store_bind_text(s, 12, o->error);
	store_bind_text(s, 13, o->peer);
	store_bind_text(s, 14, o->method);
	store_bind_text(s, 15, o->sid);
	return store_step_done(st, s);
}

/* Remember a deleted in-flight row as cancelled, for the status file. */
static int store_out_hist(struct store *st, const struct store_out *o)
{
	sqlite3_stmt *s = st->stmt[S_HIST_INS];
	int rc;

	if (o->state != STORE_OFFERED && o->state != STORE_SENDING)
		return 0;
	sqlite3_bind_int64(s, 1, o->id);
	store_bind_text(s, 2, o->contact);
	store_bind_text(s, 3, o->name);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)o->size);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)o->progress);
	store_bind_text(s, 6, o->peer);
	store_bind_text(s, 7, o->method);
	store_bind_text(s, 8, "deleted");
	sqlite3_bind_int64(s, 9, store_now_ms());
	rc = store_step_done(st, s);
	if (rc == 0)
		rc = store_step_done(st, st->stmt[S_HIST_PRUNE]);
	return rc;
}

static int store_out_del_row(struct store *st, const struct store_out *o)
{
	sqlite3_stmt *s = st->stmt[S_OUT_DEL];
	int rc;

	rc = store_out_hist(st, o);
	if (rc < 0)
		return rc;
	if (o->state == STORE_OFFERED || o->state == STORE_SENDING)
		store_ev_stage_out(st, o, STORE_CANCELLED, "deleted");
	sqlite3_bind_int64(s, 1, o->id);
	return store_step_done(st, s);
}

typedef int (*store_out_mod_fn)(struct store *st, struct store_out *o,
				void *arg);

/* What makes a change worth an event line: the state, or who/how. */
static int store_out_ev_differs(const struct store_out *a,
				const struct store_out *b)
{
	return a->state != b->state || strcmp(a->peer, b->peer) != 0 ||
	       strcmp(a->method, b->method) != 0;
}

/*
 * One transaction: read row id, let fn edit it, write it back, commit.
 * fn returning != 0 aborts (rolled back). The row as written goes to *res
 * if not NULL. Takes the lock.
 */
static int store_out_modify(struct store *st, int64_t id, store_out_mod_fn fn,
			    void *arg, struct store_out *res)
{
	struct store_out o, before;
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = store_tx_begin(st);
	if (rc < 0)
		goto out;
	rc = store_out_read_id(st, id, &o);
	if (rc == 0) {
		before = o;
		rc = fn(st, &o, arg);
	}
	if (rc == 0 && store_out_ev_differs(&before, &o))
		store_ev_stage_out(st, &o, o.state, NULL);
	if (rc == 0)
		rc = store_out_write(st, &o);
	if (rc == 0)
		rc = store_tx_commit(st);
	if (rc < 0) {
		store_tx_rollback(st);
		goto out;
	}
	/* The row now holds the newest progress; the entry would only
	 * repeat it, under a gen that may have changed. */
	store_pend_drop(st, 0, id);
	if (res)
		*res = o;
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* ---- create / read -------------------------------------------------- */

static int store_spool_create(struct store *st, int64_t id, mode_t mode)
{
	char name[32];
	int fd, rc = 0;

	snprintf(name, sizeof(name), "%" PRId64, id);
	fd = openat(st->spool_fd, name,
		    O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		    0600);
	if (fd < 0)
		return -errno;
	/* The spool file's mode is the outbox file's mode: set it exactly,
	 * whatever the umask. */
	if (fchmod(fd, mode & 07777) < 0)
		rc = -errno;
	close(fd);
	if (rc < 0)
		unlinkat(st->spool_fd, name, 0);
	return rc;
}

static int store_out_create_locked(struct store *st, const char *contact,
				   const char *name, mode_t mode,
				   struct store_out *out)
{
	sqlite3_stmt *s = st->stmt[S_OUT_INS];
	int64_t id;
	int rc;

	rc = store_contact_exists(st, contact);
	if (rc <= 0)
		return rc ? rc : -ENOENT;
	store_bind_text(s, 1, contact);
	store_bind_text(s, 2, name);
	sqlite3_bind_int64(s, 3, store_now_ms());
	rc = store_step_done(st, s);
	if (rc < 0)
		return rc;
	id = sqlite3_last_insert_rowid(st->db);
	rc = store_spool_create(st, id, mode);
	if (rc < 0)
		return rc;
	rc = store_out_read_id(st, id, out);
	if (rc == 0) {
		store_ev_stage_out(st, out, out->state, NULL);
		rc = store_tx_commit(st);
	}
	if (rc < 0)
		store_unlink_at(st->spool_fd, id);
	return rc;
}

int store_out_create(struct store *st, const char *contact, const char *name,
		     mode_t mode, struct store_out *out)
{
	struct store_out tmp;
	int rc;

	rc = store_check_jid(contact);
	if (rc == 0)
		rc = store_check_name(name);
	if (rc < 0)
		return rc;
	if (!out)
		out = &tmp;
	pthread_mutex_lock(&st->lock);
	rc = store_tx_begin(st);
	if (rc == 0) {
		rc = store_out_create_locked(st, contact, name, mode, out);
		if (rc < 0)
			store_tx_rollback(st);
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int store_out_get(struct store *st, const char *contact, const char *name,
		  struct store_out *out)
{
	int rc;

	if (store_check_jid(contact) < 0 || store_check_name(name) < 0)
		return -ENOENT;
	pthread_mutex_lock(&st->lock);
	rc = store_out_read_name(st, contact, name, out);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int store_out_get_id(struct store *st, int64_t id, struct store_out *out)
{
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = store_out_read_id(st, id, out);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* Up to STORE_LIST_CHUNK rows of contact after name `after`. */
static int store_out_chunk(struct store *st, const char *contact,
			   const char *after, struct store_out *buf)
{
	sqlite3_stmt *s = st->stmt[S_OUT_LIST];
	int n = 0, rc;

	store_bind_text(s, 1, contact);
	store_bind_text(s, 2, after);
	sqlite3_bind_int(s, 3, STORE_LIST_CHUNK);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		store_out_from_row(st, s, &buf[n++]);
	store_stmt_done(s);
	return rc == SQLITE_DONE ? n : store_sqlerr(st, rc);
}

int store_out_list(struct store *st, const char *contact, store_out_fn cb,
		   void *arg)
{
	struct store_out *buf;
	char last[STORE_NAME_MAX] = "";
	int n, i, rc = 0;

	if (store_check_jid(contact) < 0)
		return -ENOENT;
	buf = malloc(STORE_LIST_CHUNK * sizeof(*buf));
	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&st->lock);
	n = store_contact_exists(st, contact);
	pthread_mutex_unlock(&st->lock);
	if (n <= 0) {
		free(buf);
		return n ? n : -ENOENT;
	}
	do {
		pthread_mutex_lock(&st->lock);
		n = store_out_chunk(st, contact, last, buf);
		pthread_mutex_unlock(&st->lock);
		if (n < 0) {
			rc = n;
			break;
		}
		for (i = 0; i < n && rc == 0; i++)
			rc = cb(&buf[i], arg);
		if (n > 0)
			memcpy(last, buf[n - 1].name, sizeof(last));
	} while (rc == 0 && n == STORE_LIST_CHUNK);
	free(buf);
	return rc;
}

static int store_out_count_locked(struct store *st, const char *contact,
				  uint64_t *out)
{
	sqlite3_stmt *s = st->stmt[S_OUT_COUNT];
	int rc;

	rc = store_contact_exists(st, contact);
	if (rc <= 0)
		return rc ? rc : -ENOENT;
	store_bind_text(s, 1, contact);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*out = (uint64_t)sqlite3_column_int64(s, 0);
	store_stmt_done(s);
	return rc == SQLITE_ROW ? 0 : store_sqlerr(st, rc);
}

int store_out_count(struct store *st, const char *contact, uint64_t *out)
{
	int rc;

	if (store_check_jid(contact) < 0)
		return -ENOENT;
	pthread_mutex_lock(&st->lock);
	rc = store_out_count_locked(st, contact, out);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* ---- changes by the user (fs) --------------------------------------- */

static int store_out_touch_fn(struct store *st, struct store_out *o,
			      void *arg)
{
	(void)st;
	(void)arg;
	o->gen++;
	o->state = STORE_STAGED;
	o->progress = 0;
	o->error[0] = '\0';
	o->sid[0] = '\0';
	o->updated_ms = store_now_ms();
	return 0;
}

int store_out_touch(struct store *st, int64_t id, uint64_t *gen_out)
{
	struct store_out o;
	int rc;

	rc = store_out_modify(st, id, store_out_touch_fn, NULL, &o);
	if (rc == 0 && gen_out)
		*gen_out = o.gen;
	return rc;
}

struct store_out_release_arg {
	uint64_t size;
	int64_t ready_at_ms;
};

static int store_out_release_fn(struct store *st, struct store_out *o,
				void *arg)
{
	struct store_out_release_arg *a = arg;

	(void)st;
	o->size = a->size;
	if (o->state == STORE_STAGED && !store_name_hidden(o->name)) {
		o->state = STORE_WAITING;
		o->ready_at_ms = a->ready_at_ms;
		o->progress = 0;
		o->updated_ms = store_now_ms();
	}
	return 0;
}

int store_out_release(struct store *st, int64_t id, uint64_t size,
		      int64_t ready_at_ms)
{
	struct store_out_release_arg a = {size, ready_at_ms};

	return store_out_modify(st, id, store_out_release_fn, &a, NULL);
}

struct store_out_rename_arg {
	const char *contact, *name;
	int64_t ready_at_ms;
	int64_t replaced;
	int noop;
};

/*
 * The state policy of a rename. Hidden names are never sent. A visible
 * name goes out (again) when the row was staged, when an offer of the old
 * name was in flight (it is abandoned by gen++ and must be re-offered
 * under the new name), and when the file moves to another contact, who
 * has not got it yet. A finished row renamed within its folder keeps its
 * state, so `mv` does not resend.
 */
static void store_out_rename_state(struct store_out *o, int cross,
				   int64_t ready_at_ms)
{
	int send;

	if (store_name_hidden(o->name)) {
		o->state = STORE_STAGED;
		return;
	}
	switch (o->state) {
	case STORE_STAGED:
	case STORE_OFFERED:
	case STORE_SENDING:
		send = 1;
		break;
	case STORE_WAITING:
		send = 0;
		break;
	default:
		send = cross;
		break;
	}
	if (!send)
		return;
	o->state = STORE_WAITING;
	o->ready_at_ms = ready_at_ms;
	o->progress = 0;
	o->error[0] = '\0';
	o->sid[0] = '\0';
}

static int store_out_rename_fn(struct store *st, struct store_out *o,
			       void *arg)
{
	struct store_out_rename_arg *a = arg;
	struct store_out t;
	int rc, cross;

	cross = strcmp(o->contact, a->contact) != 0;
	if (!cross && !strcmp(o->name, a->name)) {
		a->noop = 1;
		return 0;
	}
	rc = store_contact_exists(st, a->contact);
	if (rc <= 0)
		return rc ? rc : -ENOENT;
	rc = store_out_read_name(st, a->contact, a->name, &t);
	if (rc == 0) {
		rc = store_out_del_row(st, &t);
		if (rc < 0)
			return rc;
		a->replaced = t.id;
	} else if (rc != -ENOENT) {
		return rc;
	}
	memcpy(o->contact, a->contact, strlen(a->contact) + 1);
	memcpy(o->name, a->name, strlen(a->name) + 1);
	o->gen++;
	store_out_rename_state(o, cross, a->ready_at_ms);
	o->updated_ms = store_now_ms();
	return 0;
}

int store_out_rename(struct store *st, int64_t id, const char *new_contact,
		     const char *new_name, int64_t ready_at_ms,
		     int64_t *replaced)
{
	struct store_out_rename_arg a = {new_contact, new_name, ready_at_ms,
					 0, 0};
	int rc;

	if (replaced)
		*replaced = 0;
	rc = store_check_jid(new_contact);
	if (rc == 0)
		rc = store_check_name(new_name);
	if (rc < 0)
		return rc;
	rc = store_out_modify(st, id, store_out_rename_fn, &a, NULL);
	if (rc < 0 || !a.replaced)
		return rc;
	pthread_mutex_lock(&st->lock);
	store_pend_drop(st, 0, a.replaced);
	pthread_mutex_unlock(&st->lock);
	store_unlink_at(st->spool_fd, a.replaced);
	if (replaced)
		*replaced = a.replaced;
	return 0;
}

int store_out_delete(struct store *st, int64_t id)
{
	struct store_out o;
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = store_tx_begin(st);
	if (rc < 0)
		goto out;
	rc = store_out_read_id(st, id, &o);
	if (rc == 0)
		rc = store_out_del_row(st, &o);
	if (rc == 0)
		rc = store_tx_commit(st);
	if (rc < 0) {
		store_tx_rollback(st);
		goto out;
	}
	store_pend_drop(st, 0, id);
	/* After the commit: a crash in between leaves an orphan that the
	 * next store_open() removes, never a row without its file. */
	store_unlink_at(st->spool_fd, id);
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* ---- the XMPP side -------------------------------------------------- */

struct store_ready_key {
	int64_t at, id;
};

static int store_out_ready_chunk(struct store *st, int64_t now_ms,
				 struct store_ready_key *k, int lim,
				 struct store_out *buf)
{
	sqlite3_stmt *s = st->stmt[S_OUT_READY];
	int n = 0, rc;

	sqlite3_bind_int64(s, 1, k->at);
	sqlite3_bind_int64(s, 2, k->id);
	sqlite3_bind_int64(s, 3, now_ms);
	sqlite3_bind_int(s, 4, lim);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		store_out_from_row(st, s, &buf[n++]);
	store_stmt_done(s);
	return rc == SQLITE_DONE ? n : store_sqlerr(st, rc);
}

int store_out_ready(struct store *st, int64_t now_ms, int max, store_out_fn cb,
		    void *arg)
{
	struct store_ready_key k = {INT64_MIN, 0};
	struct store_out *buf;
	int n, i, lim, left = max > 0 ? max : INT32_MAX, rc = 0;

	buf = malloc(STORE_LIST_CHUNK * sizeof(*buf));
	if (!buf)
		return -ENOMEM;
	do {
		lim = left < STORE_LIST_CHUNK ? left : STORE_LIST_CHUNK;
		pthread_mutex_lock(&st->lock);
		n = store_out_ready_chunk(st, now_ms, &k, lim, buf);
		pthread_mutex_unlock(&st->lock);
		if (n < 0) {
			rc = n;
			break;
		}
		for (i = 0; i < n && rc == 0; i++)
			rc = cb(&buf[i], arg);
		if (n > 0) {
			k.at = buf[n - 1].ready_at_ms;
			k.id = buf[n - 1].id;
		}
		left -= n;
	} while (rc == 0 && n == lim && left > 0);
	free(buf);
	return rc;
}

int store_out_next_ready(struct store *st, int64_t *at_ms)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&st->lock);
	s = st->stmt[S_OUT_NEXT];
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
		*at_ms = sqlite3_column_int64(s, 0);
		rc = 0;
	} else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
		rc = -ENOENT;
	} else {
		rc = store_sqlerr(st, rc);
	}
	store_stmt_done(s);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

struct store_out_state_arg {
	uint64_t gen;
	enum store_state state;
	const char *peer, *method, *sid, *error;
};

static int store_out_state_fn(struct store *st, struct store_out *o,
			      void *arg)
{
	struct store_out_state_arg *a = arg;

	(void)st;
	if (o->gen != a->gen)
		return -ESTALE;
	o->state = a->state;
	if (a->peer)
		store_copy_trunc(o->peer, sizeof(o->peer), a->peer);
	if (a->method)
		store_copy_trunc(o->method, sizeof(o->method), a->method);
	if (a->sid)
		store_copy_trunc(o->sid, sizeof(o->sid), a->sid);
	if (a->error)
		store_copy_trunc(o->error, sizeof(o->error), a->error);
	if (a->state != STORE_FAILED && a->state != STORE_REJECTED &&
	    a->state != STORE_CANCELLED)
		o->error[0] = '\0';
	if (a->state == STORE_WAITING)
		o->progress = 0;
	o->updated_ms = store_now_ms();
	return 0;
}

int store_out_set_state(struct store *st, int64_t id, uint64_t gen,
			enum store_state state, const char *peer,
			const char *method, const char *sid, const char *error)
{
	struct store_out_state_arg a = {gen, state, peer, method, sid, error};

	if ((unsigned)state > STORE_CANCELLED)
		return -EINVAL;
	if (store_check_str(peer, STORE_JID_MAX) < 0 ||
	    store_check_str(method, STORE_METHOD_MAX) < 0 ||
	    store_check_str(sid, STORE_SID_MAX) < 0)
		return -EINVAL;
	return store_out_modify(st, id, store_out_state_fn, &a, NULL);
}

static int store_out_progress_locked(struct store *st, int64_t id,
				     uint64_t gen, uint64_t bytes)
{
	struct store_pend *p = store_pend_find(st, 0, id);
	struct store_out o;
	sqlite3_stmt *s;
	int64_t now;
	int rc;

	if (!p) {
		rc = store_out_read_id(st, id, &o);
		if (rc < 0)
			return rc;
		if (o.gen != gen)
			return -ESTALE;
		p = store_pend_add(st, 0, id, gen);
		if (!p)
			return -ENOMEM;
	} else if (p->gen != gen) {
		return -ESTALE;
	}
	p->bytes = bytes;
	p->dirty = 1;
	now = store_mono_ms();
	if (p->written_ms && now - p->written_ms < STORE_PROGRESS_MS)
		return 0;
	s = st->stmt[S_OUT_PROGRESS];
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)bytes);
	rc = store_step_done(st, s);
	if (rc == 0) {
		p->dirty = 0;
		p->written_ms = now;
	}
	/* A failed write is not fatal: the value stays in memory and is
	 * written with the next state change. */
	return 0;
}

int store_out_set_progress(struct store *st, int64_t id, uint64_t gen,
			   uint64_t bytes)
{
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = store_out_progress_locked(st, id, gen, bytes);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

static int store_is_md5hex(const char *s)
{
	size_t i;

	for (i = 0; i < 32; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		      (c >= 'A' && c <= 'F')))
			return 0;
	}
	return s[32] == '\0';
}

struct store_out_hash_arg {
	const char *md5;
	uint64_t gen;
};

static int store_out_hash_fn(struct store *st, struct store_out *o, void *arg)
{
	struct store_out_hash_arg *a = arg;

	(void)st;
	if (o->gen != a->gen)
		return -ESTALE;
	store_copy_trunc(o->hash, sizeof(o->hash), a->md5);
	o->hash_gen = a->md5[0] ? a->gen : 0;
	return 0;
}

int store_out_set_hash(struct store *st, int64_t id, uint64_t gen,
		       const char *md5hex)
{
	struct store_out_hash_arg a = {md5hex, gen};

	if (!md5hex || (md5hex[0] && !store_is_md5hex(md5hex)))
		return -EINVAL;
	return store_out_modify(st, id, store_out_hash_fn, &a, NULL);
}

/* An event line (waiting, progress 0) for every offered/sending row. */
static int store_out_stage_requeue(struct store *st)
{
	sqlite3_stmt *s = st->stmt[S_OUT_INFLIGHT];
	struct store_out *o;
	int rc;

	o = malloc(sizeof(*o));
	if (!o)
		return -ENOMEM;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		store_out_from_row(st, s, o);
		o->progress = 0;
		o->error[0] = '\0';
		store_ev_stage_out(st, o, STORE_WAITING, NULL);
	}
	store_stmt_done(s);
	free(o);
	return rc == SQLITE_DONE ? 0 : store_sqlerr(st, rc);
}

int store_out_requeue_locked(struct store *st)
{
	sqlite3_stmt *s = st->stmt[S_OUT_REQUEUE];
	size_t i;
	int rc;

	store_pend_flush_all(st);
	rc = store_tx_begin(st);
	if (rc < 0)
		return rc;
	rc = store_out_stage_requeue(st);
	if (rc == 0) {
		sqlite3_bind_int64(s, 1, store_now_ms());
		rc = store_step_done(st, s);
	}
	if (rc == 0)
		rc = store_tx_commit(st);
	if (rc < 0) {
		store_tx_rollback(st);
		return rc;
	}
	for (i = 0; i < st->npend;) {
		if (!st->pend[i].incoming)
			st->pend[i] = st->pend[--st->npend];
		else
			i++;
	}
	return 0;
}

int store_out_requeue_inflight(struct store *st)
{
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = store_out_requeue_locked(st);
	pthread_mutex_unlock(&st->lock);
	return rc;
}
