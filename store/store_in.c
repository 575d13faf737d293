/*
 * store_in: incoming files. A row is inserted when an offer is accepted
 * (receiving, data in partial/<id>), and on success becomes received: its
 * file is fsync()ed, renamed to inbox/<id> and the directory fsync()ed
 * before the commit that makes it visible, so a visible file is always
 * complete on disk. A crash between that rename and the commit leaves a
 * receiving row with its data in inbox/; store_open() moves it back.
 *
 * Visible names are unique per sender among received rows (a partial
 * unique index enforces it); store_in_finish() picks "name (2).ext" etc.
 * Rows in other states keep the offered name and take no part.
 */
#include "store_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

static void store_in_from_row(struct store *st, sqlite3_stmt *s,
			      struct store_in *in)
{
	in->id = sqlite3_column_int64(s, 0);
	store_col_text(s, 1, in->sender, sizeof(in->sender));
	store_col_text(s, 2, in->peer, sizeof(in->peer));
	store_col_text(s, 3, in->name, sizeof(in->name));
	store_col_text(s, 4, in->offer_name, sizeof(in->offer_name));
	in->state = (enum store_state)sqlite3_column_int(s, 5);
	in->size = (uint64_t)sqlite3_column_int64(s, 6);
	in->progress = (uint64_t)sqlite3_column_int64(s, 7);
	store_col_text(s, 8, in->hash, sizeof(in->hash));
	store_col_text(s, 9, in->date, sizeof(in->date));
	store_col_text(s, 10, in->sid, sizeof(in->sid));
	store_col_text(s, 11, in->method, sizeof(in->method));
	store_col_text(s, 12, in->error, sizeof(in->error));
	in->created_ms = sqlite3_column_int64(s, 13);
	in->updated_ms = sqlite3_column_int64(s, 14);
	in->mtime_ms = sqlite3_column_int64(s, 15);
	if (st->npend) {
		struct store_pend *p = store_pend_find(st, 1, in->id);

		if (p)
			in->progress = p->bytes;
	}
}

static int store_in_step_one(struct store *st, sqlite3_stmt *s,
			     struct store_in *in)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		store_in_from_row(st, s, in);
	store_stmt_done(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : store_sqlerr(st, rc);
}

int store_in_read_id(struct store *st, int64_t id, struct store_in *in)
{
	sqlite3_stmt *s = st->stmt[S_IN_GET_ID];

	sqlite3_bind_int64(s, 1, id);
	return store_in_step_one(st, s, in);
}

static int store_in_read_name(struct store *st, const char *sender,
			      const char *name, struct store_in *in)
{
	sqlite3_stmt *s = st->stmt[S_IN_GET_NAME];

	store_bind_text(s, 1, sender);
	store_bind_text(s, 2, name);
	return store_in_step_one(st, s, in);
}

/* 1 if row id exists, 0 if not, -errno. */
static int store_in_exists(struct store *st, int64_t id)
{
	sqlite3_stmt *s = st->stmt[S_IN_GET_ID];
	int rc;

	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	store_stmt_done(s);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : store_sqlerr(st, rc);
}

static int store_in_write(struct store *st, const struct store_in *in)
{
	sqlite3_stmt *s = st->stmt[S_IN_UPD];

	sqlite3_bind_int64(s, 1, in->id);
	store_bind_text(s, 2, in->peer);
	store_bind_text(s, 3, in->name);
	sqlite3_bind_int(s, 4, (int)in->state);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)in->progress);
	store_bind_text(s, 6, in->sid);
	store_bind_text(s, 7, in->method);
	store_bind_text(s, 8, in->error);
	sqlite3_bind_int64(s, 9, in->updated_ms);
	sqlite3_bind_int64(s, 10, in->mtime_ms);
	return store_step_done(st, s);
}

static int store_in_del_row(struct store *st, int64_t id)
{
	sqlite3_stmt *s = st->stmt[S_IN_DEL];

	sqlite3_bind_int64(s, 1, id);
	return store_step_done(st, s);
}

static void store_id_name(int64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRId64, id);
}

/*
 * XEP-0082 DateTime (CCYY-MM-DDThh:mm:ss[.sss][TZD]) to ms since the
 * epoch; 0 when it does not parse. A missing TZD is taken as UTC.
 */
static int64_t store_parse_date(const char *s)
{
	int y, mo, d, h, mi, sec, oh, om, n = 0, ms = 0, digits = 0;
	int64_t off = 0;
	struct tm tm;
	const char *p;
	time_t t;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
		   &n) != 6 || n == 0)
		return 0;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || sec > 60 || h < 0 || mi < 0 || sec < 0)
		return 0;
	p = s + n;
	if (*p == '.') {
		for (p++; isdigit((unsigned char)*p); p++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*p - '0');
		while (digits > 0 && digits < 3) {
			ms *= 10;
			digits++;
		}
	}
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || strlen(p) != 6)
			return 0;
		off = ((int64_t)oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
		p += 6;
	}
	if (*p)
		return 0;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return 0;
	return ((int64_t)t - off) * 1000 + ms;
}

/* ---- begin / resume ------------------------------------------------- */

static int store_in_check(const struct store_in *in)
{
	int rc;

	rc = store_check_jid(in->sender);
	if (rc == 0)
		rc = store_check_name(in->offer_name);
	if (rc < 0)
		return rc;
	if (store_check_str(in->peer, STORE_JID_MAX) < 0 ||
	    store_check_str(in->hash, STORE_HASH_MAX) < 0 ||
	    store_check_str(in->date, STORE_DATE_MAX) < 0 ||
	    store_check_str(in->sid, STORE_SID_MAX) < 0 ||
	    store_check_str(in->method, STORE_METHOD_MAX) < 0)
		return -EINVAL;
	return 0;
}

static int store_partial_create(struct store *st, int64_t id, int trunc)
{
	char name[32];
	int fd;

	store_id_name(id, name, sizeof(name));
	fd = openat(st->partial_fd, name,
		    O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
			    (trunc ? O_TRUNC : 0),
		    0600);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

static int store_in_begin_locked(struct store *st, struct store_in *in)
{
	sqlite3_stmt *s = st->stmt[S_IN_INS];
	int64_t now = store_now_ms(), id;
	int rc;

	store_bind_text(s, 1, in->sender);
	store_bind_text(s, 2, in->peer);
	store_bind_text(s, 3, in->offer_name);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)in->size);
	store_bind_text(s, 5, in->hash);
	store_bind_text(s, 6, in->date);
	store_bind_text(s, 7, in->sid);
	store_bind_text(s, 8, in->method);
	sqlite3_bind_int64(s, 9, now);
	sqlite3_bind_int64(s, 10, in->date[0] ? store_parse_date(in->date) : 0);
	rc = store_step_done(st, s);
	if (rc < 0)
		return rc;
	id = sqlite3_last_insert_rowid(st->db);
	rc = store_partial_create(st, id, 1);
	if (rc < 0)
		return rc;
	/* Hand back the row as stored (and tell the event stream). */
	rc = store_in_read_id(st, id, in);
	if (rc == 0)
		store_ev_stage_in(st, in);
	else
		in->id = id;
	rc = store_tx_commit(st);
	if (rc < 0) {
		store_unlink_at(st->partial_fd, id);
		return rc;
	}
	return 0;
}

int store_in_begin(struct store *st, struct store_in *in)
{
	int rc;

	rc = store_in_check(in);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&st->lock);
	rc = store_tx_begin(st);
	if (rc == 0) {
		rc = store_in_begin_locked(st, in);
		if (rc < 0)
			store_tx_rollback(st);
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* Size of partial/<id>, or -errno. */
static int64_t store_partial_size(struct store *st, int64_t id)
{
	struct stat sb;
	char name[32];

	store_id_name(id, name, sizeof(name));
	if (fstatat(st->partial_fd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(sb.st_mode))
		return -EINVAL;
	return (int64_t)sb.st_size;
}

static int store_in_same_offer(const struct store_in *c, const char *hash,
			       const char *date)
{
	if (hash && hash[0] && c->hash[0])
		return strcasecmp(hash, c->hash) == 0;
	if (date && date[0] && c->date[0])
		return strcmp(date, c->date) == 0;
	return 1;
}

static int store_in_find_locked(struct store *st, const char *sender,
				const char *offer_name, uint64_t size,
				const char *hash, const char *date,
				struct store_in *out)
{
	sqlite3_stmt *s = st->stmt[S_IN_FIND];
	struct store_in *c;
	int64_t best = -1, psize;
	int rc;

	c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	store_bind_text(s, 1, sender);
	store_bind_text(s, 2, offer_name);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)size);
	/* Newest first; the one with most data wins, the newest on ties. */
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		store_in_from_row(st, s, c);
		if (!store_in_same_offer(c, hash, date))
			continue;
		psize = store_partial_size(st, c->id);
		if (psize < 0 || (uint64_t)psize > size || psize <= best)
			continue;
		best = psize;
		*out = *c;
		out->progress = (uint64_t)psize;
	}
	store_stmt_done(s);
	free(c);
	if (rc != SQLITE_DONE)
		return store_sqlerr(st, rc);
	return best < 0 ? -ENOENT : 0;
}

int store_in_find_partial(struct store *st, const char *sender,
			  const char *offer_name, uint64_t size,
			  const char *hash, const char *date,
			  struct store_in *out)
{
	int rc;

	if (store_check_jid(sender) < 0 || store_check_name(offer_name) < 0)
		return -ENOENT;
	pthread_mutex_lock(&st->lock);
	rc = store_in_find_locked(st, sender, offer_name, size, hash, date,
				  out);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

typedef int (*store_in_mod_fn)(struct store *st, struct store_in *in,
			       void *arg);

/* As store_out_modify(): read, edit, write, commit; takes the lock. */
static int store_in_modify(struct store *st, int64_t id, store_in_mod_fn fn,
			   void *arg, struct store_in *res)
{
	struct store_in *in;
	enum store_state old = STORE_STAGED;
	int rc;

	in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	pthread_mutex_lock(&st->lock);
	rc = store_tx_begin(st);
	if (rc < 0)
		goto out;
	rc = store_in_read_id(st, id, in);
	if (rc == 0) {
		old = in->state;
		rc = fn(st, in, arg);
	}
	if (rc == 0 && in->state != old)
		store_ev_stage_in(st, in);
	if (rc == 0)
		rc = store_in_write(st, in);
	if (rc == 0)
		rc = store_tx_commit(st);
	if (rc < 0) {
		store_tx_rollback(st);
		goto out;
	}
	store_pend_drop(st, 1, id);
	if (res)
		*res = *in;
out:
	pthread_mutex_unlock(&st->lock);
	free(in);
	return rc;
}

struct store_in_rebind_arg {
	const char *sid, *peer, *method;
};

static int store_in_rebind_fn(struct store *st, struct store_in *in,
			      void *arg)
{
	struct store_in_rebind_arg *a = arg;
	int64_t psize;
	int rc;

	if (in->state == STORE_RECEIVED)
		return -EINVAL;
	/* A resumed transfer appends to the partial file; make sure there
	 * is one (a failed row may have lost it). */
	rc = store_partial_create(st, in->id, 0);
	if (rc < 0)
		return rc;
	psize = store_partial_size(st, in->id);
	in->progress = psize > 0 ? (uint64_t)psize : 0;
	if (a->sid)
		store_copy_trunc(in->sid, sizeof(in->sid), a->sid);
	if (a->peer)
		store_copy_trunc(in->peer, sizeof(in->peer), a->peer);
	if (a->method)
		store_copy_trunc(in->method, sizeof(in->method), a->method);
	in->state = STORE_RECEIVING;
	in->error[0] = '\0';
	in->updated_ms = store_now_ms();
	return 0;
}

int store_in_rebind(struct store *st, int64_t id, const char *sid,
		    const char *peer, const char *method)
{
	struct store_in_rebind_arg a = {sid, peer, method};

	if (store_check_str(sid, STORE_SID_MAX) < 0 ||
	    store_check_str(peer, STORE_JID_MAX) < 0 ||
	    store_check_str(method, STORE_METHOD_MAX) < 0)
		return -EINVAL;
	return store_in_modify(st, id, store_in_rebind_fn, &a, NULL);
}

int store_in_get_id(struct store *st, int64_t id, struct store_in *out)
{
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = store_in_read_id(st, id, out);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

static int store_in_progress_locked(struct store *st, int64_t id,
				    uint64_t bytes)
{
	struct store_pend *p = store_pend_find(st, 1, id);
	sqlite3_stmt *s;
	int64_t now;
	int rc;

	if (!p) {
		rc = store_in_exists(st, id);
		if (rc <= 0)
			return rc ? rc : -ENOENT;
		p = store_pend_add(st, 1, id, 0);
		if (!p)
			return -ENOMEM;
	}
	p->bytes = bytes;
	p->dirty = 1;
	now = store_mono_ms();
	if (p->written_ms && now - p->written_ms < STORE_PROGRESS_MS)
		return 0;
	s = st->stmt[S_IN_PROGRESS];
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)bytes);
	if (store_step_done(st, s) == 0) {
		p->dirty = 0;
		p->written_ms = now;
	}
	return 0;
}

int store_in_set_progress(struct store *st, int64_t id, uint64_t bytes)
{
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = store_in_progress_locked(st, id, bytes);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* ---- finish --------------------------------------------------------- */

/*
 * Candidate n for name base: n == 1 is base itself, else "stem (n).ext"
 * (the suffix goes before the last extension; a leading dot does not start
 * one), cut to 255 bytes on a UTF-8 boundary by shortening the stem.
 */
static void store_in_candidate(const char *base, unsigned n, char *out)
{
	const char *dot = strrchr(base, '.');
	size_t blen = strlen(base), stem, ext, sl, max = STORE_NAME_MAX - 1;
	char suf[24];

	if (n < 2) {
		memcpy(out, base, blen + 1);
		return;
	}
	sl = (size_t)snprintf(suf, sizeof(suf), " (%u)", n);
	stem = dot && dot != base ? (size_t)(dot - base) : blen;
	ext = blen - stem;
	if (ext + sl + 1 > max) { /* absurd extension: treat as none */
		stem = blen;
		ext = 0;
	}
	if (stem + sl + ext > max)
		stem = store_utf8_cut(base, max - sl - ext);
	memcpy(out, base, stem);
	memcpy(out + stem, suf, sl);
	memcpy(out + stem + sl, base + blen - ext, ext);
	out[stem + sl + ext] = '\0';
}

/* A free visible name for sender, into out (STORE_NAME_MAX). */
static int store_in_pick_name(struct store *st, const char *sender,
			      const char *base, char *out)
{
	struct store_in *t;
	unsigned n;
	int rc = -EEXIST;

	t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (n = 1; n < 1000000; n++) {
		store_in_candidate(base, n, out);
		rc = store_in_read_name(st, sender, out, t);
		if (rc == -ENOENT) {
			rc = 0;
			break;
		}
		if (rc < 0)
			break;
		rc = -EEXIST;
	}
	free(t);
	return rc;
}

static int store_in_finish_locked(struct store *st, int64_t id, int fd,
				  uint64_t fsize, struct store_in *in)
{
	struct timespec ts[2];
	char name[32];
	int rc;

	rc = store_in_read_id(st, id, in);
	if (rc < 0)
		return rc;
	if (in->state != STORE_RECEIVING)
		return -EINVAL;
	rc = store_in_pick_name(st, in->sender, in->offer_name, in->name);
	if (rc < 0)
		return rc;
	in->state = STORE_RECEIVED;
	in->progress = fsize;
	in->error[0] = '\0';
	in->updated_ms = store_now_ms();
	if (!in->mtime_ms)
		in->mtime_ms = in->updated_ms;
	rc = store_in_write(st, in);
	if (rc < 0)
		return rc;
	store_ev_stage_in(st, in);
	ts[0].tv_sec = ts[1].tv_sec = in->mtime_ms / 1000;
	ts[0].tv_nsec = ts[1].tv_nsec = (in->mtime_ms % 1000) * 1000000;
	if (in->mtime_ms >= 0)
		futimens(fd, ts);
	store_id_name(id, name, sizeof(name));
	if (renameat(st->partial_fd, name, st->inbox_fd, name) < 0)
		return -errno;
	rc = store_fsync_dir(st->inbox_fd);
	if (rc == 0)
		rc = store_fsync_dir(st->partial_fd);
	if (rc == 0)
		rc = store_tx_commit(st);
	if (rc < 0 && renameat(st->inbox_fd, name, st->partial_fd, name) < 0)
		log_warn("store", "cannot move %s back to partial", name);
	return rc;
}

int store_in_finish(struct store *st, int64_t id, char *name_out)
{
	struct store_in *in;
	struct stat sb;
	char name[32];
	int fd, rc;

	store_id_name(id, name, sizeof(name));
	/* fsync outside the lock: it can take long and blocks nobody. */
	fd = openat(st->partial_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	if (fsync(fd) < 0 || fstat(fd, &sb) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	in = malloc(sizeof(*in));
	if (!in) {
		close(fd);
		return -ENOMEM;
	}
	pthread_mutex_lock(&st->lock);
	rc = store_tx_begin(st);
	if (rc == 0) {
		rc = store_in_finish_locked(st, id, fd, (uint64_t)sb.st_size,
					    in);
		if (rc < 0)
			store_tx_rollback(st);
		else
			store_pend_drop(st, 1, id);
	}
	pthread_mutex_unlock(&st->lock);
	close(fd);
	if (rc == 0 && name_out)
		memcpy(name_out, in->name, strlen(in->name) + 1);
	free(in);
	return rc;
}

struct store_in_fail_arg {
	const char *error;
	int keep;
};

static int store_in_fail_fn(struct store *st, struct store_in *in, void *arg)
{
	struct store_in_fail_arg *a = arg;

	(void)st;
	if (in->state == STORE_RECEIVED)
		return -EINVAL;
	in->state = STORE_FAILED;
	store_copy_trunc(in->error, sizeof(in->error), a->error);
	if (!a->keep)
		in->progress = 0;
	in->updated_ms = store_now_ms();
	return 0;
}

int store_in_fail(struct store *st, int64_t id, const char *error,
		  int keep_partial)
{
	struct store_in_fail_arg a = {error, keep_partial};
	int rc;

	rc = store_in_modify(st, id, store_in_fail_fn, &a, NULL);
	if (rc == 0 && !keep_partial)
		store_unlink_at(st->partial_fd, id);
	return rc;
}

/* ---- listing -------------------------------------------------------- */

static int store_in_senders_chunk(struct store *st, const char *after,
				  char (*buf)[STORE_JID_MAX])
{
	sqlite3_stmt *s = st->stmt[S_IN_SENDERS];
	int n = 0, rc;

	store_bind_text(s, 1, after);
	sqlite3_bind_int(s, 2, STORE_LIST_CHUNK);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		store_col_text(s, 0, buf[n++], STORE_JID_MAX);
	store_stmt_done(s);
	return rc == SQLITE_DONE ? n : store_sqlerr(st, rc);
}

int store_in_senders(struct store *st, store_in_fn cb, void *arg)
{
	char(*buf)[STORE_JID_MAX];
	struct store_in *in;
	int n, i, rc = 0;

	buf = malloc(STORE_LIST_CHUNK * sizeof(*buf));
	in = calloc(1, sizeof(*in));
	if (!buf || !in) {
		free(buf);
		free(in);
		return -ENOMEM;
	}
	in->state = STORE_RECEIVED;
	do {
		pthread_mutex_lock(&st->lock);
		n = store_in_senders_chunk(st, in->sender, buf);
		pthread_mutex_unlock(&st->lock);
		if (n < 0) {
			rc = n;
			break;
		}
		for (i = 0; i < n && rc == 0; i++) {
			memcpy(in->sender, buf[i], STORE_JID_MAX);
			rc = cb(in, arg);
		}
		if (n > 0)
			memcpy(in->sender, buf[n - 1], STORE_JID_MAX);
	} while (rc == 0 && n == STORE_LIST_CHUNK);
	free(in);
	free(buf);
	return rc;
}

static int store_in_list_chunk(struct store *st, const char *sender,
			       const char *after, struct store_in *buf)
{
	sqlite3_stmt *s = st->stmt[S_IN_LIST];
	int n = 0, rc;

	store_bind_text(s, 1, sender);
	store_bind_text(s, 2, after);
	sqlite3_bind_int(s, 3, STORE_LIST_CHUNK);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		store_in_from_row(st, s, &buf[n++]);
	store_stmt_done(s);
	return rc == SQLITE_DONE ? n : store_sqlerr(st, rc);
}

int store_in_list(struct store *st, const char *sender, store_in_fn cb,
		  void *arg)
{
	struct store_in *buf;
	char last[STORE_NAME_MAX] = "";
	int n, i, rc = 0;

	if (store_check_jid(sender) < 0)
		return 0;
	buf = malloc(STORE_LIST_CHUNK * sizeof(*buf));
	if (!buf)
		return -ENOMEM;
	do {
		pthread_mutex_lock(&st->lock);
		n = store_in_list_chunk(st, sender, last, buf);
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

int store_in_get(struct store *st, const char *sender, const char *name,
		 struct store_in *out)
{
	int rc;

	if (store_check_jid(sender) < 0 || store_check_name(name) < 0)
		return -ENOENT;
	pthread_mutex_lock(&st->lock);
	rc = store_in_read_name(st, sender, name, out);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* ---- rename / delete ------------------------------------------------ */

static int store_in_rename_locked(struct store *st, int64_t id,
				  const char *new_name, int64_t *replaced)
{
	struct store_in *in, *t;
	int rc;

	in = malloc(2 * sizeof(*in));
	if (!in)
		return -ENOMEM;
	t = in + 1;
	rc = store_in_read_id(st, id, in);
	if (rc == 0 && in->state != STORE_RECEIVED)
		rc = -ENOENT;
	if (rc < 0 || !strcmp(in->name, new_name))
		goto out;
	rc = store_in_read_name(st, in->sender, new_name, t);
	if (rc == 0) {
		rc = store_in_del_row(st, t->id);
		*replaced = t->id;
	} else if (rc == -ENOENT) {
		rc = 0;
	}
	if (rc < 0)
		goto out;
	memcpy(in->name, new_name, strlen(new_name) + 1);
	rc = store_in_write(st, in);
out:
	free(in);
	return rc;
}

int store_in_rename(struct store *st, int64_t id, const char *new_name)
{
	int64_t replaced = 0;
	int rc;

	rc = store_check_name(new_name);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&st->lock);
	rc = store_tx_begin(st);
	if (rc == 0)
		rc = store_in_rename_locked(st, id, new_name, &replaced);
	if (rc == 0)
		rc = store_tx_commit(st);
	if (rc < 0) {
		store_tx_rollback(st);
	} else if (replaced) {
		store_pend_drop(st, 1, replaced);
		store_unlink_at(st->inbox_fd, replaced);
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int store_in_delete(struct store *st, int64_t id)
{
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = store_tx_begin(st);
	if (rc < 0)
		goto out;
	rc = store_in_exists(st, id);
	if (rc == 0)
		rc = -ENOENT;
	else if (rc > 0)
		rc = store_in_del_row(st, id);
	if (rc == 0)
		rc = store_tx_commit(st);
	if (rc < 0) {
		store_tx_rollback(st);
		goto out;
	}
	store_pend_drop(st, 1, id);
	store_unlink_at(st->inbox_fd, id);
	store_unlink_at(st->partial_fd, id);
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}
