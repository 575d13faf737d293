/*
 * store: SQLite state plus the spool/partial/inbox files of the data
 * directory; the meeting point of fs/ and xmpp/.
 *
 * Design:
 * - One SQLite connection (WAL, synchronous=NORMAL, foreign keys) behind
 *   st->lock. Every public function takes the lock, does its work and
 *   commits before it returns; a state change is exactly one transaction
 *   (BEGIN IMMEDIATE ... COMMIT), rolled back on any error, so a full disk
 *   leaves the database as it was. WAL with synchronous=NORMAL is
 *   crash-consistent (a power cut may lose the last commits, never
 *   corrupt); where a state claims that file data is durable (a received
 *   file), the file and its directory are fsync()ed before the commit.
 * - Statements are prepared once at open (SQLITE_PREPARE_PERSISTENT) and
 *   reset after each use; hot paths never re-prepare.
 * - Files follow the rows: a file is created inside the transaction that
 *   inserts its row (and removed again if the commit fails); it is unlinked
 *   only after the commit that deletes its row. A crash between the two
 *   leaves an orphan file, which store_open() removes (store_gc()). Ids are
 *   AUTOINCREMENT so an id, and with it a spool path, is never reused while
 *   a worker may still hold it.
 * - List functions never call back with the lock held: they copy up to
 *   STORE_LIST_CHUNK rows under the lock, release it, call back, and
 *   continue after the last key (keyset pagination). Callbacks may call
 *   into the store. A listing racing with renames may see a row twice or
 *   miss it, as readdir(3) allows.
 * - Progress is kept in memory (st->pend) and written at most every
 *   STORE_PROGRESS_MS per row, or with the row's next state change; reads
 *   overlay the in-memory value. An entry's gen always equals its row's
 *   gen: every function that changes a row drops the entry.
 * - One store per data directory and process: the directory is flock()ed.
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

_Static_assert(STORE_STAGED == 0 && STORE_WAITING == 1 &&
		       STORE_OFFERED == 2 && STORE_SENDING == 3 &&
		       STORE_FAILED == 6 && STORE_CANCELLED == 7 &&
		       STORE_RECEIVING == 8 && STORE_RECEIVED == 9,
	       "SQL_* literals in store_int.h must match enum store_state");

#define CONTACT_COLS "jid, origin, subscribed, created_ms, mode, mtime_ns"
#define OUT_COLS                                                            \
	"id, contact, name, state, gen, size, progress, ready_at_ms, "      \
	"updated_ms, hash, hash_gen, error, peer, method, sid"
#define IN_COLS                                                             \
	"id, sender, peer, name, offer_name, state, size, progress, hash, "  \
	"date, sid, method, error, created_ms, updated_ms, mtime_ms"

static const char *const stmt_sql[S_COUNT_] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_CONTACT_GET] = "SELECT " CONTACT_COLS " FROM contact WHERE jid = ?1",
	[S_CONTACT_INS] = "INSERT INTO contact(jid, origin, subscribed, "
			  "created_ms) VALUES (?1, ?2, ?3, ?4)",
	[S_CONTACT_UPD] = "UPDATE contact SET origin = ?2, subscribed = ?3 "
			  "WHERE jid = ?1",
	[S_CONTACT_DEL] = "DELETE FROM contact WHERE jid = ?1",
	[S_CONTACT_LIST] = "SELECT " CONTACT_COLS " FROM contact "
			   "WHERE jid > ?1 ORDER BY jid LIMIT ?2",
	/* NULL (a bound NULL) keeps the value */
	[S_CONTACT_ATTR] = "UPDATE contact SET mode = coalesce(?2, mode), "
			   "mtime_ns = coalesce(?3, mtime_ns) WHERE jid = ?1",
	[S_OUT_INS] = "INSERT INTO out_file(contact, name, state, gen, "
		      "updated_ms) VALUES (?1, ?2, " SQL_STAGED ", 1, ?3)",
	[S_OUT_GET_NAME] = "SELECT " OUT_COLS " FROM out_file "
			   "WHERE contact = ?1 AND name = ?2",
	[S_OUT_GET_ID] = "SELECT " OUT_COLS " FROM out_file WHERE id = ?1",
	[S_OUT_LIST] = "SELECT " OUT_COLS " FROM out_file WHERE contact = ?1 "
		       "AND name > ?2 ORDER BY name LIMIT ?3",
	[S_OUT_COUNT] = "SELECT count(*) FROM out_file WHERE contact = ?1",
	[S_OUT_UPD] = "UPDATE out_file SET contact = ?2, name = ?3, "
		      "state = ?4, gen = ?5, size = ?6, progress = ?7, "
		      "ready_at_ms = ?8, updated_ms = ?9, hash = ?10, "
		      "hash_gen = ?11, error = ?12, peer = ?13, method = ?14, "
		      "sid = ?15 WHERE id = ?1",
	[S_OUT_DEL] = "DELETE FROM out_file WHERE id = ?1",
	[S_OUT_PROGRESS] = "UPDATE out_file SET progress = ?2 WHERE id = ?1",
	[S_OUT_READY] = "SELECT " OUT_COLS " FROM out_file "
			"WHERE state = " SQL_WAITING " AND ready_at_ms <= ?3 "
			"AND (ready_at_ms > ?1 OR (ready_at_ms = ?1 AND "
			"id > ?2)) ORDER BY ready_at_ms, id LIMIT ?4",
	[S_OUT_NEXT] = "SELECT min(ready_at_ms) FROM out_file "
		       "WHERE state = " SQL_WAITING,
	[S_OUT_REQUEUE] = "UPDATE out_file SET state = " SQL_WAITING ", "
			  "progress = 0, error = '', updated_ms = ?1 "
			  "WHERE state IN (" SQL_OFFERED ", " SQL_SENDING ")",
	[S_OUT_INFLIGHT] = "SELECT " OUT_COLS " FROM out_file "
			   "WHERE state IN (" SQL_OFFERED ", " SQL_SENDING ")",
	[S_HIST_INS] = "INSERT INTO out_hist(id, contact, name, state, size, "
		       "progress, peer, method, error, updated_ms) "
		       "VALUES (?1, ?2, ?3, " SQL_CANCELLED ", ?4, ?5, ?6, "
		       "?7, ?8, ?9)",
	[S_HIST_PRUNE] = "DELETE FROM out_hist WHERE hid <= "
			 "(SELECT max(hid) FROM out_hist) - 100",
	[S_IN_INS] = "INSERT INTO in_file(sender, peer, name, offer_name, "
		     "state, size, progress, hash, date, sid, method, error, "
		     "created_ms, updated_ms, mtime_ms) VALUES (?1, ?2, ?3, "
		     "?3, " SQL_RECEIVING ", ?4, 0, ?5, ?6, ?7, ?8, '', ?9, "
		     "?9, ?10)",
	[S_IN_GET_ID] = "SELECT " IN_COLS " FROM in_file WHERE id = ?1",
	[S_IN_GET_NAME] = "SELECT " IN_COLS " FROM in_file WHERE state = "
			  SQL_RECEIVED " AND sender = ?1 AND name = ?2",
	[S_IN_UPD] = "UPDATE in_file SET peer = ?2, name = ?3, state = ?4, "
		     "progress = ?5, sid = ?6, method = ?7, error = ?8, "
		     "updated_ms = ?9, mtime_ms = ?10 WHERE id = ?1",
	[S_IN_DEL] = "DELETE FROM in_file WHERE id = ?1",
	[S_IN_PROGRESS] = "UPDATE in_file SET progress = ?2 WHERE id = ?1",
	[S_IN_FIND] = "SELECT " IN_COLS " FROM in_file WHERE sender = ?1 "
		      "AND offer_name = ?2 AND size = ?3 AND state IN ("
		      SQL_RECEIVING ", " SQL_FAILED ") ORDER BY updated_ms DESC",
	[S_IN_LIST] = "SELECT " IN_COLS " FROM in_file WHERE state = "
		      SQL_RECEIVED " AND sender = ?1 AND name > ?2 "
		      "ORDER BY name LIMIT ?3",
	[S_IN_SENDERS] = "SELECT DISTINCT sender FROM in_file WHERE state = "
			 SQL_RECEIVED " AND sender > ?1 ORDER BY sender "
			 "LIMIT ?2",
	[S_XFER] = "SELECT 1, id, contact, peer, name, state, size, progress, "
		   "method, error, updated_ms FROM out_file "
		   "WHERE state <> " SQL_STAGED " "
		   "UNION ALL SELECT 1, id, contact, peer, name, state, size, "
		   "progress, method, error, updated_ms FROM out_hist "
		   "UNION ALL SELECT 0, id, sender, peer, name, state, size, "
		   "progress, method, error, updated_ms FROM in_file "
		   "ORDER BY 11 DESC, 1 DESC, 2 DESC LIMIT ?1",
};

/*
 * Schema migrations: entry i takes user_version i to i + 1. Append only;
 * never edit an entry that has shipped.
 */
static const char *const migrations[] = {
	"CREATE TABLE contact ("
	"  jid TEXT PRIMARY KEY NOT NULL,"
	"  origin INTEGER NOT NULL,"
	"  subscribed INTEGER NOT NULL DEFAULT 0,"
	"  created_ms INTEGER NOT NULL);"
	"CREATE TABLE out_file ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  contact TEXT NOT NULL REFERENCES contact(jid),"
	"  name TEXT NOT NULL,"
	"  state INTEGER NOT NULL,"
	"  gen INTEGER NOT NULL,"
	"  size INTEGER NOT NULL DEFAULT 0,"
	"  progress INTEGER NOT NULL DEFAULT 0,"
	"  ready_at_ms INTEGER NOT NULL DEFAULT 0,"
	"  updated_ms INTEGER NOT NULL,"
	"  hash TEXT NOT NULL DEFAULT '',"
	"  hash_gen INTEGER NOT NULL DEFAULT 0,"
	"  error TEXT NOT NULL DEFAULT '',"
	"  peer TEXT NOT NULL DEFAULT '',"
	"  method TEXT NOT NULL DEFAULT '',"
	"  sid TEXT NOT NULL DEFAULT '',"
	"  UNIQUE (contact, name));"
	"CREATE INDEX out_ready ON out_file(ready_at_ms, id)"
	"  WHERE state = " SQL_WAITING ";"
	"CREATE INDEX out_updated ON out_file(updated_ms);"
	/* deleted in-flight transfers, for the status history only */
	"CREATE TABLE out_hist ("
	"  hid INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  id INTEGER NOT NULL,"
	"  contact TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  state INTEGER NOT NULL,"
	"  size INTEGER NOT NULL,"
	"  progress INTEGER NOT NULL,"
	"  peer TEXT NOT NULL,"
	"  method TEXT NOT NULL,"
	"  error TEXT NOT NULL,"
	"  updated_ms INTEGER NOT NULL);"
	"CREATE TABLE in_file ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  sender TEXT NOT NULL,"
	"  peer TEXT NOT NULL DEFAULT '',"
	"  name TEXT NOT NULL,"
	"  offer_name TEXT NOT NULL,"
	"  state INTEGER NOT NULL,"
	"  size INTEGER NOT NULL,"
	"  progress INTEGER NOT NULL DEFAULT 0,"
	"  hash TEXT NOT NULL DEFAULT '',"
	"  date TEXT NOT NULL DEFAULT '',"
	"  sid TEXT NOT NULL DEFAULT '',"
	"  method TEXT NOT NULL DEFAULT '',"
	"  error TEXT NOT NULL DEFAULT '',"
	"  created_ms INTEGER NOT NULL,"
	"  updated_ms INTEGER NOT NULL,"
	"  mtime_ms INTEGER NOT NULL DEFAULT 0);"
	"CREATE UNIQUE INDEX in_visible ON in_file(sender, name)"
	"  WHERE state = " SQL_RECEIVED ";"
	"CREATE INDEX in_offer ON in_file(sender, offer_name, size);"
	"CREATE INDEX in_updated ON in_file(updated_ms);",
	/* 2: attributes of outbox/<jid>/ set by chmod/utime; NULL = unset */
	"ALTER TABLE contact ADD COLUMN mode INTEGER;"
	"ALTER TABLE contact ADD COLUMN mtime_ns INTEGER;",
};

#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

static const char *const state_names[] = {
	[STORE_STAGED] = "staged",       [STORE_WAITING] = "waiting",
	[STORE_OFFERED] = "offered",     [STORE_SENDING] = "sending",
	[STORE_SENT] = "sent",           [STORE_REJECTED] = "rejected",
	[STORE_FAILED] = "failed",       [STORE_CANCELLED] = "cancelled",
	[STORE_RECEIVING] = "receiving", [STORE_RECEIVED] = "received",
};

const char *store_state_name(enum store_state s)
{
	if ((unsigned)s >= sizeof(state_names) / sizeof(state_names[0]))
		return "unknown";
	return state_names[s];
}

/* ---- helpers shared by the store files ------------------------------ */

int store_sqlerr(struct store *st, int rc)
{
	int e;

	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_CONSTRAINT:
		if (rc == SQLITE_CONSTRAINT_UNIQUE ||
		    rc == SQLITE_CONSTRAINT_PRIMARYKEY)
			return -EEXIST;
		if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
			return -ENOENT;
		break;
	case SQLITE_IOERR:
		/* The unix VFS reports some ENOSPC writes as IOERR. */
		e = sqlite3_system_errno(st->db);
		if (e == ENOSPC || e == EDQUOT)
			return -ENOSPC;
		break;
	default:
		break;
	}
	log_warnx("store", "sqlite error %d: %s", rc, sqlite3_errmsg(st->db));
	return -EIO;
}

sqlite3_stmt *store_stmt(struct store *st, enum store_stmt_id id)
{
	return st->stmt[id];
}

void store_stmt_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Step a statement that returns no rows, reset it, map the result. */
int store_step_done(struct store *st, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	store_stmt_done(s);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	return store_sqlerr(st, rc);
}

int store_tx_begin(struct store *st)
{
	store_ev_discard(st);
	return store_step_done(st, st->stmt[S_BEGIN]);
}

/* Commit; the event lines staged in the transaction go out only if it
 * committed. */
int store_tx_commit(struct store *st)
{
	int rc = store_step_done(st, st->stmt[S_COMMIT]);

	if (rc == 0)
		store_ev_commit(st);
	else
		store_ev_discard(st);
	return rc;
}

/* Roll back unless SQLite already did (it does on some errors, FULL). */
void store_tx_rollback(struct store *st)
{
	store_ev_discard(st);
	if (sqlite3_get_autocommit(st->db))
		return;
	if (store_step_done(st, st->stmt[S_ROLLBACK]) < 0)
		log_warnx("store", "rollback failed");
}

void store_col_text(sqlite3_stmt *s, int col, char *dst, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	size_t n = (size_t)sqlite3_column_bytes(s, col);

	if (!t)
		n = 0;
	if (n >= cap)
		n = store_utf8_cut((const char *)t, cap - 1);
	if (n)
		memcpy(dst, t, n);
	dst[n] = '\0';
}

void store_bind_text(sqlite3_stmt *s, int idx, const char *v)
{
	sqlite3_bind_text(s, idx, v ? v : "", -1, SQLITE_STATIC);
}

/* A file name: 1..255 bytes, no '/', not "." or "..". */
int store_check_name(const char *name)
{
	size_t n;

	if (!name || !*name)
		return -EINVAL;
	n = strlen(name);
	if (n >= STORE_NAME_MAX)
		return -ENAMETOOLONG;
	if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	return 0;
}

int store_check_jid(const char *jid)
{
	if (!jid || !*jid || strchr(jid, '/'))
		return -EINVAL;
	if (strlen(jid) >= STORE_JID_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/* An optional string that must fit a buffer of cap bytes. */
int store_check_str(const char *s, size_t cap)
{
	if (s && strlen(s) >= cap)
		return -EINVAL;
	return 0;
}

/* Largest length <= max that does not split a UTF-8 sequence of s. */
size_t store_utf8_cut(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);

	if (n <= max)
		return n;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

void store_copy_trunc(char *dst, size_t cap, const char *src)
{
	size_t n;

	if (!src)
		src = "";
	n = store_utf8_cut(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

int64_t store_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t store_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int store_fsync_dir(int fd)
{
	if (fsync(fd) < 0 && errno != EINVAL)
		return -errno;
	return 0;
}

void store_unlink_at(int dir_fd, int64_t id)
{
	char name[32];

	snprintf(name, sizeof(name), "%" PRId64, id);
	if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
		log_warn("store", "unlink %s", name);
}

/* 1 if the contact exists, 0 if not, -errno. Lock held. */
int store_contact_exists(struct store *st, const char *jid)
{
	sqlite3_stmt *s = st->stmt[S_CONTACT_GET];
	int rc;

	store_bind_text(s, 1, jid);
	rc = sqlite3_step(s);
	store_stmt_done(s);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return store_sqlerr(st, rc);
}

/* ---- in-memory progress --------------------------------------------- */

struct store_pend *store_pend_find(struct store *st, int incoming, int64_t id)
{
	size_t i;

	for (i = 0; i < st->npend; i++)
		if (st->pend[i].id == id && st->pend[i].incoming == incoming)
			return &st->pend[i];
	return NULL;
}

struct store_pend *store_pend_add(struct store *st, int incoming, int64_t id,
				  uint64_t gen)
{
	struct store_pend *p;

	if (st->npend == st->cappend) {
		size_t cap = st->cappend ? st->cappend * 2 : 16;

		p = realloc(st->pend, cap * sizeof(*p));
		if (!p)
			return NULL;
		st->pend = p;
		st->cappend = cap;
	}
	p = &st->pend[st->npend++];
	memset(p, 0, sizeof(*p));
	p->id = id;
	p->incoming = incoming;
	p->gen = gen;
	return p;
}

void store_pend_drop(struct store *st, int incoming, int64_t id)
{
	struct store_pend *p = store_pend_find(st, incoming, id);

	if (!p)
		return;
	*p = st->pend[--st->npend];
}

/* Write every dirty entry (close, bulk updates). */
int store_pend_flush_all(struct store *st)
{
	sqlite3_stmt *s;
	size_t i;
	int rc, ret = 0;

	for (i = 0; i < st->npend; i++) {
		struct store_pend *p = &st->pend[i];

		if (!p->dirty)
			continue;
		s = st->stmt[p->incoming ? S_IN_PROGRESS : S_OUT_PROGRESS];
		sqlite3_bind_int64(s, 1, p->id);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)p->bytes);
		rc = store_step_done(st, s);
		if (rc < 0)
			ret = rc;
		else
			p->dirty = 0;
	}
	return ret;
}

/* ---- paths ---------------------------------------------------------- */

static char *store_path(const struct store *st, const char *sub, int64_t id,
			char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s/%" PRId64, st->dir, sub, id);
	return buf;
}

char *store_spool_path(const struct store *st, int64_t id, char *buf,
		       size_t len)
{
	return store_path(st, "spool", id, buf, len);
}

char *store_partial_path(const struct store *st, int64_t id, char *buf,
			 size_t len)
{
	return store_path(st, "partial", id, buf, len);
}

char *store_inbox_path(const struct store *st, int64_t id, char *buf,
		       size_t len)
{
	return store_path(st, "inbox", id, buf, len);
}

const char *store_data_dir(const struct store *st)
{
	return st->dir;
}

/* ---- open / close --------------------------------------------------- */

/* mkdir -p with mode 0700 for what it creates. */
static int store_mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t i, n = strlen(path);

	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) == 0)
			chmod(buf, 0700); /* umask may have taken bits */
		else if (errno != EEXIST)
			return -errno;
		if (i < n)
			buf[i] = '/';
	}
	return 0;
}

static int store_open_subdir(struct store *st, const char *name, int *fd)
{
	if (mkdirat(st->dir_fd, name, 0700) == 0)
		fchmodat(st->dir_fd, name, 0700, 0);
	else if (errno != EEXIST)
		return -errno;
	*fd = openat(st->dir_fd, name,
		     O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (*fd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	return 0;
}

static int store_open_dirs(struct store *st)
{
	int rc;

	rc = store_mkdir_p(st->dir);
	if (rc < 0)
		return rc;
	st->dir_fd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->dir_fd < 0)
		return -errno;
	if (access(st->dir, W_OK | X_OK) < 0)
		return -errno;
	if (flock(st->dir_fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	rc = store_open_subdir(st, "spool", &st->spool_fd);
	if (rc == 0)
		rc = store_open_subdir(st, "partial", &st->partial_fd);
	if (rc == 0)
		rc = store_open_subdir(st, "inbox", &st->inbox_fd);
	return rc;
}

static int store_exec(struct store *st, const char *sql)
{
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : store_sqlerr(st, rc);
}

/* Run a one-value query (PRAGMA ...) and copy the first column. */
static int store_query_text(struct store *st, const char *sql, char *buf,
			    size_t len)
{
	sqlite3_stmt *s;
	int rc;

	rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return store_sqlerr(st, rc);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		store_col_text(s, 0, buf, len);
	else
		buf[0] = '\0';
	sqlite3_finalize(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0
						     : store_sqlerr(st, rc);
}

static int store_migrate(struct store *st)
{
	char buf[32], sql[64];
	int ver, rc;

	rc = store_query_text(st, "PRAGMA user_version", buf, sizeof(buf));
	if (rc < 0)
		return rc;
	ver = atoi(buf);
	st->fresh = ver == 0;
	if (ver > SCHEMA_VERSION) {
		log_warnx("store", "state.db has schema %d, newer than %d",
			  ver, SCHEMA_VERSION);
		return -EPROTO;
	}
	for (; ver < SCHEMA_VERSION; ver++) {
		rc = store_exec(st, "BEGIN IMMEDIATE");
		if (rc < 0)
			return rc;
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
			 ver + 1);
		rc = store_exec(st, migrations[ver]);
		if (rc == 0)
			rc = store_exec(st, sql);
		if (rc == 0)
			rc = store_exec(st, "COMMIT");
		if (rc < 0) {
			store_exec(st, "ROLLBACK");
			return rc;
		}
	}
	return 0;
}

static int store_open_db(struct store *st)
{
	char path[PATH_MAX], mode[16];
	int fd, rc, i;

	snprintf(path, sizeof(path), "%s/state.db", st->dir);
	/* Create it ourselves so it (and -wal, -shm, which SQLite gives
	 * the database's mode) is 0600 whatever the umask. */
	fd = openat(st->dir_fd, "state.db",
		    O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	close(fd);
	rc = sqlite3_open_v2(path, &st->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK)
		return st->db ? store_sqlerr(st, rc) : -ENOMEM;
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, 5000);
	rc = store_query_text(st, "PRAGMA journal_mode = WAL", mode,
			      sizeof(mode));
	if (rc < 0)
		return rc;
	if (strcmp(mode, "wal") != 0) {
		log_warnx("store", "cannot use WAL (journal_mode %s)", mode);
		return -EIO;
	}
	rc = store_exec(st, "PRAGMA synchronous = NORMAL;"
			    "PRAGMA foreign_keys = ON;"
			    "PRAGMA journal_size_limit = 4194304;");
	if (rc == 0)
		rc = store_migrate(st);
	for (i = 0; rc == 0 && i < S_COUNT_; i++) {
		rc = sqlite3_prepare_v3(st->db, stmt_sql[i], -1,
					SQLITE_PREPARE_PERSISTENT,
					&st->stmt[i], NULL);
		rc = rc == SQLITE_OK ? 0 : store_sqlerr(st, rc);
	}
	return rc;
}

/* Parse a file name of a data subdirectory as a row id; -1 if it is not. */
static int64_t store_name_id(const char *name)
{
	char *end;
	long long v;

	if (name[0] < '1' || name[0] > '9')
		return -1;
	errno = 0;
	v = strtoll(name, &end, 10);
	if (errno || *end)
		return -1;
	return v;
}

/*
 * What to do with data file <id> in one of the subdirectories after an
 * unclean stop: 0 keep, 1 unlink (no row owns it), 2 move back to partial
 * (inbox file of a row that is not received: the crash hit between the
 * rename and the commit of store_in_finish). < 0: unknown, keep.
 */
static int store_gc_verdict(struct store *st, int fd, int64_t id)
{
	struct store_out o;
	struct store_in in;
	int rc;

	if (fd == st->spool_fd) {
		rc = store_out_read_id(st, id, &o);
		return rc == -ENOENT ? 1 : rc < 0 ? rc : 0;
	}
	rc = store_in_read_id(st, id, &in);
	if (rc == -ENOENT)
		return 1;
	if (rc < 0)
		return rc;
	if (fd == st->partial_fd || in.state == STORE_RECEIVED)
		return 0;
	return 2;
}

static void store_gc_dir(struct store *st, int fd)
{
	struct dirent *de;
	DIR *d;
	int dfd = dup(fd);

	if (dfd < 0)
		return;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	while ((de = readdir(d))) {
		int64_t id = store_name_id(de->d_name);
		int v;

		if (id < 0)
			continue;
		v = store_gc_verdict(st, fd, id);
		if (v == 1) {
			log_info("store", "removing orphan data file %" PRId64,
				 id);
			store_unlink_at(fd, id);
		} else if (v == 2 &&
			   renameat2(fd, de->d_name, st->partial_fd,
				     de->d_name, RENAME_NOREPLACE) < 0) {
			log_warn("store", "inbox/%s of an unfinished transfer",
				 de->d_name);
		}
	}
	closedir(d);
}

/* After an unclean stop: requeue in-flight rows, drop orphan files. */
static int store_recover(struct store *st)
{
	int rc;

	rc = store_out_requeue_locked(st);
	if (rc < 0)
		return rc;
	/* A new database next to old data files means state.db was lost
	 * or removed: every file would look orphaned. Keep them all. */
	if (st->fresh)
		return 0;
	store_gc_dir(st, st->spool_fd);
	store_gc_dir(st, st->inbox_fd);
	store_gc_dir(st, st->partial_fd);
	return 0;
}

int store_open(const char *data_dir, struct store **out)
{
	struct store *st;
	size_t n;
	int rc;

	*out = NULL;
	if (!data_dir || !*data_dir)
		return -EINVAL;
	n = strlen(data_dir);
	if (n + 32 >= PATH_MAX)
		return -ENAMETOOLONG;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->link_lock, NULL);
	store_copy_trunc(st->link, sizeof(st->link), "offline");
	st->dir_fd = st->spool_fd = st->partial_fd = st->inbox_fd = -1;
	st->dir = strdup(data_dir);
	if (!st->dir || store_ev_init(st) < 0) {
		store_close(st);
		return -ENOMEM;
	}
	while (n > 1 && st->dir[n - 1] == '/')
		st->dir[--n] = '\0';
	rc = store_open_dirs(st);
	if (rc == 0)
		rc = store_open_db(st);
	if (rc == 0)
		rc = store_recover(st);
	if (rc < 0) {
		store_close(st);
		return rc;
	}
	*out = st;
	return 0;
}

void store_close(struct store *st)
{
	int i;

	if (!st)
		return;
	if (st->db) {
		if (st->stmt[S_OUT_PROGRESS] && st->stmt[S_IN_PROGRESS])
			store_pend_flush_all(st);
		for (i = 0; i < S_COUNT_; i++)
			sqlite3_finalize(st->stmt[i]);
		if (sqlite3_close(st->db) != SQLITE_OK)
			log_warnx("store", "sqlite3_close: %s",
				  sqlite3_errmsg(st->db));
	}
	if (st->inbox_fd >= 0)
		close(st->inbox_fd);
	if (st->partial_fd >= 0)
		close(st->partial_fd);
	if (st->spool_fd >= 0)
		close(st->spool_fd);
	if (st->dir_fd >= 0)
		close(st->dir_fd); /* drops the flock */
	pthread_mutex_destroy(&st->link_lock);
	pthread_mutex_destroy(&st->lock);
	store_ev_fini(st);
	free(st->pend);
	free(st->dir);
	free(st);
}

/* ---- small things ---------------------------------------------------- */

int store_free_bytes(struct store *st, uint64_t *out)
{
	struct statvfs sv;

	if (fstatvfs(st->dir_fd, &sv) < 0)
		return -errno;
	*out = (uint64_t)sv.f_bavail * sv.f_frsize;
	return 0;
}

void store_set_link(struct store *st, const char *text)
{
	pthread_mutex_lock(&st->link_lock);
	store_copy_trunc(st->link, sizeof(st->link), text ? text : "offline");
	pthread_mutex_unlock(&st->link_lock);
}

void store_get_link(struct store *st, char *buf, size_t len)
{
	if (!len)
		return;
	pthread_mutex_lock(&st->link_lock);
	store_copy_trunc(buf, len, st->link);
	pthread_mutex_unlock(&st->link_lock);
}

/* ---- contacts ------------------------------------------------------- */

static void store_contact_from_row(sqlite3_stmt *s, struct store_contact *c)
{
	store_col_text(s, 0, c->jid, sizeof(c->jid));
	c->origin = sqlite3_column_int(s, 1);
	c->subscribed = sqlite3_column_int(s, 2);
	c->created_ms = sqlite3_column_int64(s, 3);
	c->mode = sqlite3_column_type(s, 4) == SQLITE_NULL
			  ? 0755
			  : (uint32_t)sqlite3_column_int(s, 4) & 07777;
	c->mtime_ns = sqlite3_column_type(s, 5) == SQLITE_NULL
			      ? c->created_ms * 1000000
			      : sqlite3_column_int64(s, 5);
}

static int store_contact_read(struct store *st, const char *jid,
			      struct store_contact *c)
{
	sqlite3_stmt *s = st->stmt[S_CONTACT_GET];
	int rc;

	store_bind_text(s, 1, jid);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		store_contact_from_row(s, c);
	store_stmt_done(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : store_sqlerr(st, rc);
}

/*
 * Insert or update a contact in one transaction. origin bits are ORed in;
 * subscribed < 0 leaves the flag alone. *had gets the old origin (0 when
 * the contact is new).
 */
static int store_contact_upsert(struct store *st, const char *jid, int origin,
				int subscribed, int *had)
{
	struct store_contact c;
	sqlite3_stmt *s;
	int rc;

	rc = store_tx_begin(st);
	if (rc < 0)
		return rc;
	rc = store_contact_read(st, jid, &c);
	if (rc == -ENOENT) {
		*had = 0;
		s = st->stmt[S_CONTACT_INS];
		store_bind_text(s, 1, jid);
		sqlite3_bind_int(s, 2, origin);
		sqlite3_bind_int(s, 3, subscribed > 0);
		sqlite3_bind_int64(s, 4, store_now_ms());
		rc = store_step_done(st, s);
	} else if (rc == 0) {
		*had = c.origin;
		s = st->stmt[S_CONTACT_UPD];
		store_bind_text(s, 1, jid);
		sqlite3_bind_int(s, 2, c.origin | origin);
		sqlite3_bind_int(s, 3,
				 subscribed < 0 ? c.subscribed : subscribed > 0);
		rc = store_step_done(st, s);
	}
	if (rc == 0)
		rc = store_tx_commit(st);
	if (rc < 0)
		store_tx_rollback(st);
	return rc;
}

int store_contact_add(struct store *st, const char *jid, int origin)
{
	int rc, had = 0;

	rc = store_check_jid(jid);
	if (rc < 0)
		return rc;
	if (origin <= 0 ||
	    (origin & ~(STORE_CONTACT_USER | STORE_CONTACT_ROSTER)))
		return -EINVAL;
	pthread_mutex_lock(&st->lock);
	rc = store_contact_upsert(st, jid, origin, -1, &had);
	pthread_mutex_unlock(&st->lock);
	if (rc == 0 && (had & origin) == origin)
		return -EEXIST;
	return rc;
}

int store_contact_set_roster(struct store *st, const char *jid, int subscribed)
{
	int rc, had;

	rc = store_check_jid(jid);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&st->lock);
	rc = store_contact_upsert(st, jid, STORE_CONTACT_ROSTER,
				  subscribed != 0, &had);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

static int store_contact_del_locked(struct store *st, const char *jid)
{
	sqlite3_stmt *s;
	int64_t n;
	int rc;

	rc = store_contact_exists(st, jid);
	if (rc <= 0)
		return rc ? rc : -ENOENT;
	s = st->stmt[S_OUT_COUNT];
	store_bind_text(s, 1, jid);
	rc = sqlite3_step(s);
	n = sqlite3_column_int64(s, 0);
	store_stmt_done(s);
	if (rc != SQLITE_ROW)
		return store_sqlerr(st, rc);
	if (n > 0)
		return -ENOTEMPTY;
	s = st->stmt[S_CONTACT_DEL];
	store_bind_text(s, 1, jid);
	return store_step_done(st, s); /* autocommit: one transaction */
}

int store_contact_del(struct store *st, const char *jid)
{
	int rc;

	rc = store_check_jid(jid);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&st->lock);
	rc = store_contact_del_locked(st, jid);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int store_contact_get(struct store *st, const char *jid,
		      struct store_contact *out)
{
	int rc;

	rc = store_check_jid(jid);
	if (rc < 0)
		return rc == -ENAMETOOLONG ? -ENOENT : rc;
	pthread_mutex_lock(&st->lock);
	rc = store_contact_read(st, jid, out);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

static int store_contact_attr_locked(struct store *st, const char *jid,
				     int mode, int64_t mtime_ns)
{
	sqlite3_stmt *s = st->stmt[S_CONTACT_ATTR];
	int rc;

	store_bind_text(s, 1, jid);
	if (mode != STORE_KEEP_MODE)
		sqlite3_bind_int(s, 2, mode & 07777);
	if (mtime_ns != STORE_KEEP_MTIME)
		sqlite3_bind_int64(s, 3, mtime_ns);
	rc = store_step_done(st, s); /* autocommit: one transaction */
	if (rc == 0 && sqlite3_changes(st->db) == 0)
		rc = -ENOENT;
	return rc;
}

int store_contact_set_attr(struct store *st, const char *jid, int mode,
			   int64_t mtime_ns)
{
	int rc;

	rc = store_check_jid(jid);
	if (rc < 0)
		return rc == -ENAMETOOLONG ? -ENOENT : rc;
	if (mode != STORE_KEEP_MODE && (mode < 0 || mode > 07777))
		return -EINVAL;
	pthread_mutex_lock(&st->lock);
	rc = store_contact_attr_locked(st, jid, mode, mtime_ns);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* Copy up to STORE_LIST_CHUNK contacts after key `after`; count or -errno. */
static int store_contact_chunk(struct store *st, const char *after,
			       struct store_contact *buf)
{
	sqlite3_stmt *s = st->stmt[S_CONTACT_LIST];
	int n = 0, rc;

	store_bind_text(s, 1, after);
	sqlite3_bind_int(s, 2, STORE_LIST_CHUNK);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		store_contact_from_row(s, &buf[n++]);
	store_stmt_done(s);
	return rc == SQLITE_DONE ? n : store_sqlerr(st, rc);
}

int store_contact_list(struct store *st, store_contact_fn cb, void *arg)
{
	struct store_contact *buf;
	char *last;
	int n, i, rc = 0;

	buf = malloc(STORE_LIST_CHUNK * sizeof(*buf) + STORE_JID_MAX);
	if (!buf)
		return -ENOMEM;
	last = (char *)(buf + STORE_LIST_CHUNK);
	last[0] = '\0';
	do {
		pthread_mutex_lock(&st->lock);
		n = store_contact_chunk(st, last, buf);
		pthread_mutex_unlock(&st->lock);
		if (n < 0) {
			rc = n;
			break;
		}
		for (i = 0; i < n && rc == 0; i++)
			rc = cb(&buf[i], arg);
		if (n > 0)
			memcpy(last, buf[n - 1].jid, STORE_JID_MAX);
	} while (rc == 0 && n == STORE_LIST_CHUNK);
	free(buf);
	return rc;
}

/* ---- status --------------------------------------------------------- */

/* A store_xfer with its strings in one allocation (s). */
struct store_xrec {
	struct store_xfer x;
	char *s;
};

static int store_xrec_fill(struct store *st, sqlite3_stmt *s,
			   struct store_xrec *r)
{
	const int cols[5] = {2, 3, 4, 8, 9}; /* jid peer name method error */
	const char **dst[5] = {&r->x.jid, &r->x.peer, &r->x.name,
			       &r->x.method, &r->x.error};
	size_t len[5], total = 0, off = 0;
	int i;

	for (i = 0; i < 5; i++) {
		len[i] = (size_t)sqlite3_column_bytes(s, cols[i]);
		total += len[i] + 1;
	}
	r->s = malloc(total);
	if (!r->s)
		return -ENOMEM;
	for (i = 0; i < 5; i++) {
		const unsigned char *t = sqlite3_column_text(s, cols[i]);

		if (len[i])
			memcpy(r->s + off, t, len[i]);
		r->s[off + len[i]] = '\0';
		off += len[i] + 1;
	}
	for (i = 0, off = 0; i < 5; i++) {
		*dst[i] = r->s + off;
		off += len[i] + 1;
	}
	r->x.outgoing = sqlite3_column_int(s, 0);
	r->x.id = sqlite3_column_int64(s, 1);
	r->x.state = (enum store_state)sqlite3_column_int(s, 5);
	r->x.size = (uint64_t)sqlite3_column_int64(s, 6);
	r->x.progress = (uint64_t)sqlite3_column_int64(s, 7);
	r->x.updated_ms = sqlite3_column_int64(s, 10);
	if (st->npend) {
		struct store_pend *p =
			store_pend_find(st, !r->x.outgoing, r->x.id);

		if (p)
			r->x.progress = p->bytes;
	}
	return 0;
}

/* Snapshot the rows under the lock; *out owns them. Count or -errno. */
static int store_xfer_snapshot(struct store *st, int max,
			       struct store_xrec **out)
{
	sqlite3_stmt *s = st->stmt[S_XFER];
	struct store_xrec *v = NULL, *nv;
	size_t n = 0, cap = 0;
	int rc;

	sqlite3_bind_int(s, 1, max > 0 ? max : -1);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		if (n == (size_t)INT_MAX || store_xrec_fill(st, s, &v[n]) < 0)
			break;
		n++;
	}
	store_stmt_done(s);
	if (rc == SQLITE_DONE) {
		*out = v;
		return (int)n;
	}
	while (n > 0)
		free(v[--n].s);
	free(v);
	return rc == SQLITE_ROW ? -ENOMEM : store_sqlerr(st, rc);
}

int store_peek_xfers(const char *data_dir, int max, store_xfer_fn cb,
		     void *arg)
{
	struct store st;
	struct store_xrec *v = NULL;
	char path[PATH_MAX];
	int n, i, rc = 0;

	memset(&st, 0, sizeof(st));
	if (snprintf(path, sizeof(path), "%s/state.db", data_dir) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	if (access(path, R_OK) < 0)
		return -errno;
	/* Read-only and without the directory lock: WAL lets a reader look
	 * while the daemon writes. */
	if (sqlite3_open_v2(path, &st.db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(st.db);
		return -EIO;
	}
	sqlite3_busy_timeout(st.db, 2000);
	if (sqlite3_prepare_v2(st.db, stmt_sql[S_XFER], -1,
			       &st.stmt[S_XFER], NULL) != SQLITE_OK) {
		sqlite3_close(st.db);
		return -EIO; /* not an xmppfs database (or a newer one) */
	}
	n = store_xfer_snapshot(&st, max, &v);
	sqlite3_finalize(st.stmt[S_XFER]);
	sqlite3_close(st.db);
	for (i = 0; i < n && rc == 0; i++)
		rc = cb(&v[i].x, arg);
	for (i = 0; i < n; i++)
		free(v[i].s);
	free(v);
	return n < 0 ? n : rc;
}

int store_xfer_list(struct store *st, int max, store_xfer_fn cb, void *arg)
{
	struct store_xrec *v = NULL;
	int n, i, rc = 0;

	pthread_mutex_lock(&st->lock);
	n = store_xfer_snapshot(st, max, &v);
	pthread_mutex_unlock(&st->lock);
	for (i = 0; i < n && rc == 0; i++)
		rc = cb(&v[i].x, arg);
	for (i = 0; i < n; i++)
		free(v[i].s);
	free(v);
	return n < 0 ? n : rc;
}
