/*
 * test_store: unit tests of store/ against a real data directory under
 * /tmp (SQLite, spool/partial/inbox files). Exit 0 = pass. The full-disk
 * part mounts a 1 MiB tmpfs and is skipped with a message when it cannot.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/store.h"

#include "test.h"


/* A step the rest of a test depends on: stop the test if it fails. */
#define REQUIRE_OK(expr)                                                    \
	do {                                                                \
		long long r_ = (long long)(expr);                           \
		checks++;                                                   \
		if (r_ != 0) {                                              \
			fprintf(stderr, "%s:%d: %s: expected 0, got %lld" \
				" (%s)\n", __FILE__, __LINE__, #expr, r_,   \
				r_ < 0 ? strerror((int)-r_) : "");          \
			failures++;                                         \
			return;                                             \
		}                                                           \
	} while (0)

static char base[64];

static const char *tpath(const char *sub)
{
	static char buf[64][512];
	static int i;

	i = (i + 1) % 64;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", base, sub);
	return buf[i];
}

static int exists(const char *p)
{
	struct stat sb;

	return stat(p, &sb) == 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static void write_file(const char *p, const char *data, size_t n)
{
	int fd = open(p, O_WRONLY | O_TRUNC);

	if (fd < 0 || write(fd, data, n) != (ssize_t)n)
		fprintf(stderr, "write_file %s: %s\n", p, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* Read one integer column of state.db through a separate connection. */
static long long db_int(const char *dir, const char *sql)
{
	char path[600];
	sqlite3 *db;
	sqlite3_stmt *s;
	long long v = -1;

	snprintf(path, sizeof(path), "%s/state.db", dir);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return -2;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			v = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	}
	sqlite3_close(db);
	return v;
}

static int db_integrity_ok(const char *dir)
{
	char path[600];
	sqlite3 *db;
	sqlite3_stmt *s;
	int ok = 0;

	snprintf(path, sizeof(path), "%s/state.db", dir);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK)
		return 0;
	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) ==
	    SQLITE_OK) {
		ok = sqlite3_step(s) == SQLITE_ROW &&
		     !strcmp((const char *)sqlite3_column_text(s, 0), "ok");
		sqlite3_finalize(s);
	}
	sqlite3_close(db);
	return ok;
}

/* ---- collectors for list callbacks ---------------------------------- */

struct names {
	char v[64][STORE_NAME_MAX];
	int64_t id[64];
	int n;
	int stop_at; /* return 7 from the callback at this count, if > 0 */
};

static int collect_out(const struct store_out *o, void *arg)
{
	struct names *c = arg;

	if (c->n < 64) {
		snprintf(c->v[c->n], STORE_NAME_MAX, "%s", o->name);
		c->id[c->n] = o->id;
	}
	c->n++;
	return c->stop_at && c->n == c->stop_at ? 7 : 0;
}

static int collect_in(const struct store_in *in, void *arg)
{
	struct names *c = arg;

	if (c->n < 64) {
		snprintf(c->v[c->n], STORE_NAME_MAX, "%s", in->name);
		c->id[c->n] = in->id;
	}
	c->n++;
	return 0;
}

static int collect_sender(const struct store_in *in, void *arg)
{
	struct names *c = arg;

	if (c->n < 64)
		snprintf(c->v[c->n], STORE_NAME_MAX, "%.200s", in->sender);
	c->n++;
	return 0;
}

static int collect_contact(const struct store_contact *ct, void *arg)
{
	struct names *c = arg;

	if (c->n < 64)
		snprintf(c->v[c->n], STORE_NAME_MAX, "%.200s", ct->jid);
	c->n++;
	return c->stop_at && c->n == c->stop_at ? 7 : 0;
}

static int count_cb(const struct store_out *o, void *arg)
{
	(void)o;
	(*(int *)arg)++;
	return 0;
}

/* ---- tests ---------------------------------------------------------- */

static void test_open_close(void)
{
	struct store *st, *st2;
	struct stat sb;
	char link[64];
	const char *dir = tpath("open/nested/data");
	int fd;

	store_close(NULL);
	REQUIRE_OK(store_open(dir, &st));
	CHECK_STR(dir, store_data_dir(st));
	CHECK(stat(tpath("open/nested/data/spool"), &sb) == 0 &&
	      (sb.st_mode & 0777) == 0700);
	CHECK(stat(tpath("open/nested/data/partial"), &sb) == 0 &&
	      (sb.st_mode & 0777) == 0700);
	CHECK(stat(tpath("open/nested/data/inbox"), &sb) == 0 &&
	      (sb.st_mode & 0777) == 0700);
	CHECK(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
	CHECK(stat(tpath("open/nested/data/state.db"), &sb) == 0 &&
	      (sb.st_mode & 0777) == 0600);
	/* one store per data dir */
	CHECK_INT(-EBUSY, store_open(dir, &st2));
	CHECK(st2 == NULL);

	store_get_link(st, link, sizeof(link));
	CHECK_STR("offline", link);
	store_set_link(st, "online");
	store_get_link(st, link, sizeof(link));
	CHECK_STR("online", link);
	store_get_link(st, link, 4);
	CHECK_STR("onl", link);

	uint64_t fb = 0;
	CHECK_INT(0, store_free_bytes(st, &fb));
	CHECK(fb > 0);
	CHECK_INT(0, store_contact_add(st, "keep@x", STORE_CONTACT_USER));
	store_close(st);

	/* reopen: data kept; trailing slash ok */
	char slash[600];
	snprintf(slash, sizeof(slash), "%s/", dir);
	REQUIRE_OK(store_open(slash, &st));
	CHECK_STR(dir, store_data_dir(st));
	struct store_contact c;
	CHECK_INT(0, store_contact_get(st, "keep@x", &c));
	store_close(st);

	/* a regular file is no data dir */
	fd = open(tpath("afile"), O_CREAT | O_WRONLY, 0600);
	close(fd);
	st = (struct store *)1;
	CHECK_INT(-ENOTDIR, store_open(tpath("afile"), &st));
	CHECK(st == NULL);
	CHECK_INT(-EINVAL, store_open("", &st));
}

static void test_readonly_dir(void)
{
	struct store *st;
	const char *dir = tpath("ro");
	int rc;

	mkdir(dir, 0700);
	if (mount("tmpfs", dir, "tmpfs", MS_RDONLY, "size=64k") < 0) {
		printf("SKIP read-only data dir: mount: %s\n", strerror(errno));
		return;
	}
	rc = store_open(dir, &st);
	CHECK(rc == -EROFS || rc == -EACCES);
	if (rc == 0)
		store_close(st);
	umount2(dir, MNT_DETACH);
}

static void test_contacts(void)
{
	struct store *st;
	struct store_contact c;
	struct store_out o;
	struct names nm;
	char big[2000];
	int i;

	REQUIRE_OK(store_open(tpath("contacts"), &st));
	CHECK_INT(0, store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	CHECK_INT(-EEXIST, store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	CHECK_INT(0, store_contact_add(st, "bob@x", STORE_CONTACT_ROSTER));
	CHECK_INT(-EEXIST, store_contact_add(st, "bob@x", STORE_CONTACT_ROSTER));
	CHECK_INT(0, store_contact_get(st, "bob@x", &c));
	CHECK_INT(3, c.origin);
	CHECK_INT(0, c.subscribed);
	CHECK(c.created_ms > 0);
	CHECK_INT(0, store_contact_set_roster(st, "bob@x", 1));
	CHECK_INT(0, store_contact_get(st, "bob@x", &c));
	CHECK_INT(1, c.subscribed);
	CHECK_INT(0, store_contact_set_roster(st, "new@x", 1));
	CHECK_INT(0, store_contact_get(st, "new@x", &c));
	CHECK_INT(STORE_CONTACT_ROSTER, c.origin);
	CHECK_INT(1, c.subscribed);
	CHECK_INT(-ENOENT, store_contact_get(st, "nobody@x", &c));
	CHECK_INT(0, store_contact_add(st, "alice@x", STORE_CONTACT_USER));

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_INT(-ENAMETOOLONG, store_contact_add(st, big, 1));
	CHECK_INT(-EINVAL, store_contact_add(st, "", 1));
	CHECK_INT(-EINVAL, store_contact_add(st, "a@x/res", 1));
	CHECK_INT(-EINVAL, store_contact_add(st, "a@x", 0));

	memset(&nm, 0, sizeof(nm));
	CHECK_INT(0, store_contact_list(st, collect_contact, &nm));
	CHECK_INT(3, nm.n);
	CHECK_STR("alice@x", nm.v[0]);
	CHECK_STR("bob@x", nm.v[1]);
	CHECK_STR("new@x", nm.v[2]);
	memset(&nm, 0, sizeof(nm));
	nm.stop_at = 2;
	CHECK_INT(7, store_contact_list(st, collect_contact, &nm));
	CHECK_INT(2, nm.n);

	CHECK_INT(-ENOENT, store_contact_del(st, "nobody@x"));
	CHECK_INT(0, store_out_create(st, "bob@x", "f", 0644, &o));
	CHECK_INT(-ENOTEMPTY, store_contact_del(st, "bob@x"));
	CHECK_INT(0, store_out_delete(st, o.id));
	CHECK_INT(0, store_contact_del(st, "bob@x"));
	CHECK_INT(-ENOENT, store_contact_get(st, "bob@x", &c));

	/* more than one list chunk */
	for (i = 0; i < 150; i++) {
		char jid[32];

		snprintf(jid, sizeof(jid), "c%03d@x", i);
		CHECK_INT(0, store_contact_add(st, jid, STORE_CONTACT_ROSTER));
	}
	memset(&nm, 0, sizeof(nm));
	CHECK_INT(0, store_contact_list(st, collect_contact, &nm));
	CHECK_INT(152, nm.n);
	CHECK_STR("c000@x", nm.v[1]);
	store_close(st);
}

/* Exec sql on state.db through a separate connection; 0 or -1. */
static int db_exec(const char *dir, const char *sql)
{
	char path[600];
	sqlite3 *db;
	int rc;

	snprintf(path, sizeof(path), "%s/state.db", dir);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK)
		return -1;
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

static void test_contact_attr(void)
{
	struct store *st;
	struct store_contact c;
	struct names nm;
	const char *dir = tpath("cattr");

	REQUIRE_OK(store_open(dir, &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_contact_get(st, "bob@x", &c));
	CHECK_INT(0755, c.mode);
	CHECK_INT(c.created_ms * 1000000, c.mtime_ns);
	CHECK_INT(0, store_contact_set_attr(st, "bob@x", 0700,
					    STORE_KEEP_MTIME));
	REQUIRE_OK(store_contact_get(st, "bob@x", &c));
	CHECK_INT(0700, c.mode);
	CHECK_INT(c.created_ms * 1000000, c.mtime_ns);
	CHECK_INT(0, store_contact_set_attr(st, "bob@x", STORE_KEEP_MODE,
					    1111111111222333444LL));
	CHECK_INT(0, store_contact_set_attr(st, "bob@x", 01750,
					    STORE_KEEP_MTIME));
	REQUIRE_OK(store_contact_get(st, "bob@x", &c));
	CHECK_INT(01750, c.mode);
	CHECK_INT(1111111111222333444LL, c.mtime_ns);
	/* before 1970 and the epoch itself are times like any other */
	CHECK_INT(0, store_contact_set_attr(st, "bob@x", STORE_KEEP_MODE,
					    -1500000000));
	REQUIRE_OK(store_contact_get(st, "bob@x", &c));
	CHECK_INT(-1500000000, c.mtime_ns);
	CHECK_INT(0, store_contact_set_attr(st, "bob@x", STORE_KEEP_MODE, 0));
	REQUIRE_OK(store_contact_get(st, "bob@x", &c));
	CHECK_INT(0, c.mtime_ns);
	CHECK_INT(-ENOENT, store_contact_set_attr(st, "nobody@x", 0700, 1));
	CHECK_INT(-EINVAL, store_contact_set_attr(st, "bob@x", 010000, 1));
	CHECK_INT(-EINVAL, store_contact_set_attr(st, "a@x/r", 0700, 1));
	CHECK_INT(-EINVAL, store_contact_set_attr(st, "", 0700, 1));
	/* lists carry them; other contacts are untouched */
	REQUIRE_OK(store_contact_add(st, "amy@x", STORE_CONTACT_ROSTER));
	memset(&nm, 0, sizeof(nm));
	REQUIRE_OK(store_contact_list(st, collect_contact, &nm));
	CHECK_INT(2, nm.n);
	REQUIRE_OK(store_contact_get(st, "amy@x", &c));
	CHECK_INT(0755, c.mode);
	/* a roster update keeps them */
	REQUIRE_OK(store_contact_set_roster(st, "bob@x", 1));
	REQUIRE_OK(store_contact_get(st, "bob@x", &c));
	CHECK_INT(01750, c.mode);
	CHECK_INT(0, c.mtime_ns);
	REQUIRE_OK(store_contact_set_attr(st, "bob@x", 0711, 42));
	store_close(st);

	/* persisted */
	REQUIRE_OK(store_open(dir, &st));
	REQUIRE_OK(store_contact_get(st, "bob@x", &c));
	CHECK_INT(0711, c.mode);
	CHECK_INT(42, c.mtime_ns);
	/* dropped with the contact */
	REQUIRE_OK(store_contact_del(st, "bob@x"));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_contact_get(st, "bob@x", &c));
	CHECK_INT(0755, c.mode);
	CHECK_INT(c.created_ms * 1000000, c.mtime_ns);
	store_close(st);

	/* migration from schema 1 (no attribute columns): rows kept,
	 * defaults shown, attributes settable */
	CHECK_INT(0, db_exec(dir, "ALTER TABLE contact DROP COLUMN mode;"
				  "ALTER TABLE contact DROP COLUMN mtime_ns;"
				  "PRAGMA user_version = 1;"));
	CHECK_INT(1, db_int(dir, "PRAGMA user_version"));
	REQUIRE_OK(store_open(dir, &st));
	CHECK_INT(2, db_int(dir, "PRAGMA user_version"));
	REQUIRE_OK(store_contact_get(st, "amy@x", &c));
	CHECK_INT(0755, c.mode);
	CHECK_INT(c.created_ms * 1000000, c.mtime_ns);
	CHECK_INT(STORE_CONTACT_ROSTER, c.origin);
	CHECK_INT(0, store_contact_set_attr(st, "amy@x", 0750, 7));
	REQUIRE_OK(store_contact_get(st, "amy@x", &c));
	CHECK_INT(0750, c.mode);
	CHECK_INT(7, c.mtime_ns);
	store_close(st);
}

static void test_out_basic(void)
{
	struct store *st;
	struct store_out o, o2;
	struct stat sb;
	struct names nm;
	char path[600], longname[300];
	uint64_t n, gen;
	int64_t at;

	REQUIRE_OK(store_open(tpath("out"), &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", "f.txt", 0640, &o));
	CHECK(o.id > 0);
	CHECK_INT(STORE_STAGED, o.state);
	CHECK_INT(1, o.gen);
	CHECK_INT(0, o.size);
	CHECK_STR("bob@x", o.contact);
	CHECK_STR("f.txt", o.name);
	store_spool_path(st, o.id, path, sizeof(path));
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0640 &&
	      sb.st_size == 0);
	CHECK_INT(-EEXIST, store_out_create(st, "bob@x", "f.txt", 0644, &o2));
	CHECK_INT(-ENOENT, store_out_create(st, "zed@x", "f.txt", 0644, &o2));
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CHECK_INT(-ENAMETOOLONG,
		  store_out_create(st, "bob@x", longname, 0644, &o2));
	longname[255] = '\0';
	CHECK_INT(0, store_out_create(st, "bob@x", longname, 0644, &o2));
	CHECK_INT(0, store_out_delete(st, o2.id));
	CHECK_INT(-EINVAL, store_out_create(st, "bob@x", "a/b", 0644, &o2));
	CHECK_INT(-EINVAL, store_out_create(st, "bob@x", "..", 0644, &o2));
	CHECK_INT(-EINVAL, store_out_create(st, "bob@x", "", 0644, &o2));
	/* suid bits and others pass through as given */
	CHECK_INT(0, store_out_create(st, "bob@x", "b.bin", 0400, &o2));
	store_spool_path(st, o2.id, path, sizeof(path));
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0400);
	CHECK_INT(0, store_out_create(st, "bob@x", ".hidden.tmp", 0600, &o2));

	CHECK_INT(0, store_out_get(st, "bob@x", "f.txt", &o2));
	CHECK_INT(o.id, o2.id);
	CHECK_INT(-ENOENT, store_out_get(st, "bob@x", "nope", &o2));
	CHECK_INT(-ENOENT, store_out_get(st, "zed@x", "f.txt", &o2));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_STR("f.txt", o2.name);
	CHECK_INT(-ENOENT, store_out_get_id(st, 99999, &o2));

	memset(&nm, 0, sizeof(nm));
	CHECK_INT(0, store_out_list(st, "bob@x", collect_out, &nm));
	CHECK_INT(3, nm.n);
	CHECK_STR(".hidden.tmp", nm.v[0]);
	CHECK_STR("b.bin", nm.v[1]);
	CHECK_STR("f.txt", nm.v[2]);
	CHECK_INT(-ENOENT, store_out_list(st, "zed@x", collect_out, &nm));
	CHECK_INT(0, store_out_count(st, "bob@x", &n));
	CHECK_INT(3, n);
	CHECK_INT(-ENOENT, store_out_count(st, "zed@x", &n));

	/* touch */
	CHECK_INT(0, store_out_touch(st, o.id, &gen));
	CHECK_INT(2, gen);
	CHECK_INT(-ENOENT, store_out_touch(st, 99999, NULL));

	/* release: visible -> waiting, hidden stays staged */
	CHECK_INT(-ENOENT, store_out_next_ready(st, &at));
	CHECK_INT(0, store_out_release(st, o.id, 10, 1000));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_INT(STORE_WAITING, o2.state);
	CHECK_INT(10, o2.size);
	CHECK_INT(1000, o2.ready_at_ms);
	CHECK_INT(0, store_out_get(st, "bob@x", ".hidden.tmp", &o2));
	CHECK_INT(0, store_out_release(st, o2.id, 5, 1000));
	CHECK_INT(0, store_out_get_id(st, o2.id, &o2));
	CHECK_INT(STORE_STAGED, o2.state);
	CHECK_INT(5, o2.size);
	/* release of a non-staged row only updates size */
	CHECK_INT(0, store_out_release(st, o.id, 11, 5000));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_INT(STORE_WAITING, o2.state);
	CHECK_INT(11, o2.size);
	CHECK_INT(1000, o2.ready_at_ms);

	/* ready / next_ready */
	CHECK_INT(0, store_out_get(st, "bob@x", "b.bin", &o2));
	CHECK_INT(0, store_out_release(st, o2.id, 1, 500));
	CHECK_INT(0, store_out_next_ready(st, &at));
	CHECK_INT(500, at);
	memset(&nm, 0, sizeof(nm));
	CHECK_INT(0, store_out_ready(st, 499, 10, collect_out, &nm));
	CHECK_INT(0, nm.n);
	memset(&nm, 0, sizeof(nm));
	CHECK_INT(0, store_out_ready(st, 999, 10, collect_out, &nm));
	CHECK_INT(1, nm.n);
	CHECK_STR("b.bin", nm.v[0]);
	memset(&nm, 0, sizeof(nm));
	CHECK_INT(0, store_out_ready(st, 1000, 10, collect_out, &nm));
	CHECK_INT(2, nm.n);
	CHECK_STR("b.bin", nm.v[0]);
	CHECK_STR("f.txt", nm.v[1]);
	memset(&nm, 0, sizeof(nm));
	CHECK_INT(0, store_out_ready(st, 1000, 1, collect_out, &nm));
	CHECK_INT(1, nm.n);
	memset(&nm, 0, sizeof(nm));
	CHECK_INT(0, store_out_ready(st, 1000, 0, collect_out, &nm));
	CHECK_INT(2, nm.n);

	/* delete: row and spool file gone */
	store_spool_path(st, o.id, path, sizeof(path));
	CHECK(exists(path));
	CHECK_INT(0, store_out_delete(st, o.id));
	CHECK(!exists(path));
	CHECK_INT(-ENOENT, store_out_get_id(st, o.id, &o2));
	CHECK_INT(-ENOENT, store_out_delete(st, o.id));
	CHECK_INT(-ENOENT, store_out_set_state(st, o.id, 2, STORE_SENT, NULL,
					       NULL, NULL, NULL));
	/* ids are not reused */
	CHECK_INT(0, store_out_create(st, "bob@x", "again", 0644, &o2));
	CHECK(o2.id > o.id);
	store_close(st);
}

static void test_out_rename(void)
{
	struct store *st;
	struct store_out a, b, o;
	char path[600];
	int64_t rep;

	REQUIRE_OK(store_open(tpath("rename"), &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_contact_add(st, "carol@x", STORE_CONTACT_USER));

	/* rsync style: hidden temp file renamed to a visible name */
	REQUIRE_OK(store_out_create(st, "bob@x", ".x.AbC123", 0644, &a));
	CHECK_INT(0, store_out_release(st, a.id, 3, 100));
	CHECK_INT(0, store_out_get_id(st, a.id, &o));
	CHECK_INT(STORE_STAGED, o.state);
	CHECK_INT(0, store_out_rename(st, a.id, "bob@x", "x", 2000, &rep));
	CHECK_INT(0, rep);
	CHECK_INT(0, store_out_get_id(st, a.id, &o));
	CHECK_STR("x", o.name);
	CHECK_INT(STORE_WAITING, o.state);
	CHECK_INT(2000, o.ready_at_ms);
	CHECK_INT(2, o.gen);
	CHECK_INT(-ENOENT, store_out_get(st, "bob@x", ".x.AbC123", &o));

	/* visible -> hidden: staged */
	CHECK_INT(0, store_out_rename(st, a.id, "bob@x", ".x", 3000, &rep));
	CHECK_INT(0, store_out_get_id(st, a.id, &o));
	CHECK_INT(STORE_STAGED, o.state);
	CHECK_INT(3, o.gen);
	CHECK_INT(0, store_out_rename(st, a.id, "bob@x", "x", 3000, NULL));

	/* same name: nothing changes */
	CHECK_INT(0, store_out_rename(st, a.id, "bob@x", "x", 9000, &rep));
	CHECK_INT(0, store_out_get_id(st, a.id, &o));
	CHECK_INT(4, o.gen);
	CHECK_INT(3000, o.ready_at_ms);

	/* replace */
	REQUIRE_OK(store_out_create(st, "bob@x", "y", 0644, &b));
	store_spool_path(st, b.id, path, sizeof(path));
	CHECK(exists(path));
	CHECK_INT(0, store_out_rename(st, a.id, "bob@x", "y", 3000, &rep));
	CHECK_INT(b.id, rep);
	CHECK(!exists(path));
	CHECK_INT(-ENOENT, store_out_get_id(st, b.id, &o));
	CHECK_INT(0, store_out_get(st, "bob@x", "y", &o));
	CHECK_INT(a.id, o.id);
	CHECK_INT(-ENOENT, store_out_get(st, "bob@x", "x", &o));
	store_spool_path(st, a.id, path, sizeof(path));
	CHECK(exists(path));

	/* a sent file renamed in its folder stays sent ... */
	CHECK_INT(0, store_out_get_id(st, a.id, &o));
	CHECK_INT(0, store_out_set_state(st, a.id, o.gen, STORE_SENT,
					 "bob@x/r", "ibb", "sid1", NULL));
	CHECK_INT(0, store_out_rename(st, a.id, "bob@x", "z", 4000, NULL));
	CHECK_INT(0, store_out_get_id(st, a.id, &o));
	CHECK_INT(STORE_SENT, o.state);
	/* ... and goes out again when moved to another contact */
	CHECK_INT(0, store_out_rename(st, a.id, "carol@x", "z", 5000, &rep));
	CHECK_INT(0, rep);
	CHECK_INT(0, store_out_get_id(st, a.id, &o));
	CHECK_STR("carol@x", o.contact);
	CHECK_INT(STORE_WAITING, o.state);
	CHECK_INT(5000, o.ready_at_ms);
	CHECK_INT(-ENOENT, store_out_get(st, "bob@x", "z", &o));
	CHECK_INT(0, store_out_get(st, "carol@x", "z", &o));

	/* an in-flight offer is abandoned and re-queued under the new name */
	CHECK_INT(0, store_out_set_state(st, a.id, o.gen, STORE_SENDING, NULL,
					 NULL, NULL, NULL));
	CHECK_INT(0, store_out_rename(st, a.id, "carol@x", "z2", 6000, NULL));
	CHECK_INT(-ESTALE, store_out_set_state(st, a.id, o.gen, STORE_SENT,
					       NULL, NULL, NULL, NULL));
	CHECK_INT(0, store_out_get_id(st, a.id, &o));
	CHECK_INT(STORE_WAITING, o.state);
	CHECK_INT(6000, o.ready_at_ms);

	/* errors */
	CHECK_INT(-ENOENT, store_out_rename(st, a.id, "zed@x", "z", 0, &rep));
	CHECK_INT(-ENOENT, store_out_rename(st, 99999, "bob@x", "q", 0, &rep));
	CHECK_INT(-EINVAL, store_out_rename(st, a.id, "bob@x", "a/b", 0, &rep));
	CHECK_INT(0, store_out_get_id(st, a.id, &o));
	CHECK_STR("z2", o.name);
	store_close(st);
}

static int find_xfer(const struct store_xfer *x, void *arg);

struct xfers {
	int n;
	int outgoing[32];
	int64_t id[32];
	enum store_state state[32];
	char name[32][STORE_NAME_MAX];
	uint64_t progress[32];
	int64_t updated[32];
};

static int find_xfer(const struct store_xfer *x, void *arg)
{
	struct xfers *v = arg;

	if (v->n < 32) {
		v->outgoing[v->n] = x->outgoing;
		v->id[v->n] = x->id;
		v->state[v->n] = x->state;
		snprintf(v->name[v->n], STORE_NAME_MAX, "%s", x->name);
		v->progress[v->n] = x->progress;
		v->updated[v->n] = x->updated_ms;
	}
	v->n++;
	return 0;
}

static void test_out_state(void)
{
	struct store *st;
	struct store_out o, o2;
	uint64_t gen;
	const char *dir = tpath("state");
	char sql[128];
	struct xfers xs;
	char longerr[600];

	REQUIRE_OK(store_open(dir, &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", "f", 0644, &o));
	CHECK_INT(0, store_out_release(st, o.id, 100000, 0));
	CHECK_INT(0, store_out_set_state(st, o.id, o.gen, STORE_OFFERED,
					 "bob@x/res", "s5b-direct", "sid1",
					 NULL));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_INT(STORE_OFFERED, o2.state);
	CHECK_STR("bob@x/res", o2.peer);
	CHECK_STR("s5b-direct", o2.method);
	CHECK_STR("sid1", o2.sid);
	CHECK_INT(-ESTALE, store_out_set_state(st, o.id, o.gen + 1,
					       STORE_SENDING, NULL, NULL, NULL,
					       NULL));
	CHECK_INT(-EINVAL, store_out_set_state(st, o.id, o.gen,
					       STORE_RECEIVED, NULL, NULL,
					       NULL, NULL));
	CHECK_INT(-EINVAL, store_out_set_state(st, o.id, o.gen, STORE_SENDING,
					       NULL, "a-very-long-method-name",
					       NULL, NULL));
	/* NULL keeps, "" clears */
	CHECK_INT(0, store_out_set_state(st, o.id, o.gen, STORE_SENDING, NULL,
					 "", NULL, NULL));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_STR("bob@x/res", o2.peer);
	CHECK_STR("", o2.method);
	CHECK_STR("sid1", o2.sid);

	/* progress: in memory at once, in the database at most every 500ms */
	snprintf(sql, sizeof(sql), "SELECT progress FROM out_file WHERE id=%"
		 PRId64, o.id);
	CHECK_INT(0, store_out_set_progress(st, o.id, o.gen, 1000));
	CHECK_INT(1000, db_int(dir, sql));
	CHECK_INT(0, store_out_set_progress(st, o.id, o.gen, 2000));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_INT(2000, o2.progress);
	CHECK_INT(0, store_out_get(st, "bob@x", "f", &o2));
	CHECK_INT(2000, o2.progress);
	CHECK_INT(1000, db_int(dir, sql));
	memset(&xs, 0, sizeof(xs));
	CHECK_INT(0, store_xfer_list(st, 0, find_xfer, &xs));
	CHECK_INT(1, xs.n);
	CHECK_INT(2000, xs.progress[0]);
	sleep_ms(550);
	CHECK_INT(0, store_out_set_progress(st, o.id, o.gen, 3000));
	CHECK_INT(3000, db_int(dir, sql));
	CHECK_INT(0, store_out_set_progress(st, o.id, o.gen, 4000));
	CHECK_INT(3000, db_int(dir, sql));
	CHECK_INT(-ESTALE, store_out_set_progress(st, o.id, o.gen + 1, 1));
	CHECK_INT(-ENOENT, store_out_set_progress(st, 99999, 1, 1));
	/* the state change writes the pending value */
	CHECK_INT(0, store_out_set_state(st, o.id, o.gen, STORE_SENT, NULL,
					 NULL, NULL, "ignored"));
	CHECK_INT(4000, db_int(dir, sql));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_INT(STORE_SENT, o2.state);
	CHECK_STR("", o2.error);
	CHECK_INT(4000, o2.progress);

	/* error kept for failed; waiting clears progress and error */
	memset(longerr, 'e', sizeof(longerr) - 1);
	longerr[sizeof(longerr) - 1] = '\0';
	CHECK_INT(0, store_out_set_state(st, o.id, o.gen, STORE_FAILED, NULL,
					 NULL, NULL, longerr));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_INT(STORE_ERR_MAX - 1, strlen(o2.error));
	CHECK_INT(0, store_out_set_state(st, o.id, o.gen, STORE_REJECTED,
					 NULL, NULL, NULL, "declined"));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_STR("declined", o2.error);
	CHECK_INT(0, store_out_set_state(st, o.id, o.gen, STORE_WAITING, NULL,
					 NULL, NULL, NULL));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_STR("", o2.error);
	CHECK_INT(0, o2.progress);

	/* hash */
	CHECK_INT(-EINVAL, store_out_set_hash(st, o.id, o.gen, "xyz"));
	CHECK_INT(-ESTALE, store_out_set_hash(
				   st, o.id, o.gen + 1,
				   "0123456789abcdef0123456789abcdef"));
	CHECK_INT(0, store_out_set_hash(st, o.id, o.gen,
					"0123456789abcdef0123456789abcdef"));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_STR("0123456789abcdef0123456789abcdef", o2.hash);
	CHECK_INT(o.gen, o2.hash_gen);

	/* touch: new gen, staged, progress and error cleared; old gen stale */
	CHECK_INT(0, store_out_set_state(st, o.id, o.gen, STORE_SENDING, NULL,
					 NULL, NULL, NULL));
	CHECK_INT(0, store_out_set_progress(st, o.id, o.gen, 77));
	CHECK_INT(0, store_out_touch(st, o.id, &gen));
	CHECK_INT(o.gen + 1, gen);
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_INT(STORE_STAGED, o2.state);
	CHECK_INT(0, o2.progress);
	CHECK_INT(-ESTALE, store_out_set_progress(st, o.id, o.gen, 78));
	CHECK_INT(0, store_out_set_progress(st, o.id, gen, 5));

	/* requeue */
	CHECK_INT(0, store_out_set_state(st, o.id, gen, STORE_SENDING, NULL,
					 NULL, NULL, NULL));
	CHECK_INT(0, store_out_set_progress(st, o.id, gen, 55));
	REQUIRE_OK(store_out_create(st, "bob@x", "g", 0644, &o2));
	CHECK_INT(0, store_out_set_state(st, o2.id, o2.gen, STORE_OFFERED,
					 NULL, NULL, NULL, NULL));
	CHECK_INT(0, store_out_requeue_inflight(st));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_INT(STORE_WAITING, o2.state);
	CHECK_INT(0, o2.progress);
	CHECK_INT(gen, o2.gen);
	CHECK_INT(0, store_out_get(st, "bob@x", "g", &o2));
	CHECK_INT(STORE_WAITING, o2.state);

	/* deleting an in-flight file leaves a cancelled line in status */
	CHECK_INT(0, store_out_set_state(st, o2.id, o2.gen, STORE_SENDING,
					 NULL, NULL, NULL, NULL));
	CHECK_INT(0, store_out_delete(st, o2.id));
	CHECK_INT(-ENOENT, store_out_set_state(st, o2.id, o2.gen, STORE_SENT,
					       NULL, NULL, NULL, NULL));
	memset(&xs, 0, sizeof(xs));
	CHECK_INT(0, store_xfer_list(st, 0, find_xfer, &xs));
	CHECK_INT(2, xs.n);
	CHECK_INT(o2.id, xs.id[0]);
	CHECK_INT(STORE_CANCELLED, xs.state[0]);
	CHECK_STR("g", xs.name[0]);
	store_close(st);
}

/* Child of test_unclean: leave rows in flight and die without closing. */
static void unclean_child(const char *dir, int64_t id, uint64_t gen)
{
	struct store *st;

	if (store_open(dir, &st) < 0)
		_exit(2);
	if (store_out_set_state(st, id, gen, STORE_SENDING, "bob@x/r", "ibb",
				"s", NULL) < 0)
		_exit(3);
	if (store_out_set_progress(st, id, gen, 123) < 0)
		_exit(4);
	_exit(0);
}

static void test_unclean(void)
{
	struct store *st;
	struct store_out o, o2;
	struct store_in in;
	char dir[512];
	char p[600], p2[600];
	int status, fd;
	pid_t pid;

	snprintf(dir, sizeof(dir), "%s", tpath("unclean"));
	REQUIRE_OK(store_open(dir, &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", "f", 0644, &o));
	CHECK_INT(0, store_out_release(st, o.id, 10, 0));
	memset(&in, 0, sizeof(in));
	snprintf(in.sender, sizeof(in.sender), "bob@x");
	snprintf(in.offer_name, sizeof(in.offer_name), "in.bin");
	in.size = 10;
	REQUIRE_OK(store_in_begin(st, &in));
	store_close(st);

	pid = fork();
	if (pid == 0)
		unclean_child(dir, o.id, o.gen);
	CHECK(pid > 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* a lost state.db: the new database must not "collect" old files */
	fd = open(tpath("unclean/spool/999997"), O_CREAT | O_WRONLY, 0600);
	close(fd);
	CHECK_INT(0, rename(tpath("unclean/state.db"), tpath("unclean/saved")));
	CHECK_INT(0, rename(tpath("unclean/state.db-wal"),
			    tpath("unclean/saved-wal")));
	unlink(tpath("unclean/state.db-shm"));
	REQUIRE_OK(store_open(dir, &st));
	store_close(st);
	CHECK(exists(tpath("unclean/spool/999997")));
	CHECK_INT(0, rename(tpath("unclean/saved"), tpath("unclean/state.db")));
	CHECK_INT(0, rename(tpath("unclean/saved-wal"),
			    tpath("unclean/state.db-wal")));
	unlink(tpath("unclean/state.db-shm"));

	/* orphans as left by a crash between file and row operations */
	fd = open(tpath("unclean/spool/999999"), O_CREAT | O_WRONLY, 0600);
	close(fd);
	fd = open(tpath("unclean/inbox/999998"), O_CREAT | O_WRONLY, 0600);
	close(fd);
	/* crash inside store_in_finish: data in inbox/, row receiving */
	snprintf(p, sizeof(p), "%s/partial/%" PRId64, dir, in.id);
	snprintf(p2, sizeof(p2), "%s/inbox/%" PRId64, dir, in.id);
	CHECK_INT(0, rename(p, p2));

	REQUIRE_OK(store_open(dir, &st));
	CHECK_INT(0, store_out_get_id(st, o.id, &o2));
	CHECK_INT(STORE_WAITING, o2.state);
	CHECK_INT(o.gen, o2.gen);
	CHECK_INT(0, o2.progress);
	CHECK_STR("bob@x/r", o2.peer);
	CHECK(!exists(tpath("unclean/spool/999999")));
	CHECK(!exists(tpath("unclean/spool/999997")));
	CHECK(!exists(tpath("unclean/inbox/999998")));
	CHECK(exists(p));
	CHECK(!exists(p2));
	CHECK_INT(0, store_in_get_id(st, in.id, &in));
	CHECK_INT(STORE_RECEIVING, in.state);
	store_spool_path(st, o.id, p, sizeof(p));
	CHECK(exists(p));
	store_close(st);
}

static struct store_in offer(const char *sender, const char *name,
			     uint64_t size, const char *hash, const char *date)
{
	struct store_in in;

	memset(&in, 0, sizeof(in));
	snprintf(in.sender, sizeof(in.sender), "%s", sender);
	snprintf(in.peer, sizeof(in.peer), "%s/phone", sender);
	snprintf(in.offer_name, sizeof(in.offer_name), "%s", name);
	in.size = size;
	snprintf(in.hash, sizeof(in.hash), "%s", hash);
	snprintf(in.date, sizeof(in.date), "%s", date);
	snprintf(in.sid, sizeof(in.sid), "sid-%s", name);
	snprintf(in.method, sizeof(in.method), "ibb");
	return in;
}

/* Receive a whole file; returns the visible name through name. */
static int receive(struct store *st, const char *sender, const char *name,
		   char *out_name)
{
	struct store_in in = offer(sender, name, 3, "", "");
	char p[600];
	int rc;

	rc = store_in_begin(st, &in);
	if (rc < 0)
		return rc;
	store_partial_path(st, in.id, p, sizeof(p));
	write_file(p, "abc", 3);
	return store_in_finish(st, in.id, out_name);
}

static int valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		int n = *p < 0x80 ? 0 : *p < 0xe0 ? 1 : *p < 0xf0 ? 2 : 3;

		if (*p >= 0x80 && *p < 0xc0)
			return 0;
		for (p++; n > 0; n--, p++)
			if ((*p & 0xc0) != 0x80)
				return 0;
	}
	return 1;
}

static void test_in_names(void)
{
	struct store *st;
	char nm[STORE_NAME_MAX], longn[STORE_NAME_MAX + 8];
	struct names l;
	size_t i;

	REQUIRE_OK(store_open(tpath("innames"), &st));
	CHECK_INT(0, receive(st, "bob@x", "a.txt", nm));
	CHECK_STR("a.txt", nm);
	CHECK_INT(0, receive(st, "bob@x", "a.txt", nm));
	CHECK_STR("a (2).txt", nm);
	CHECK_INT(0, receive(st, "bob@x", "a.txt", nm));
	CHECK_STR("a (3).txt", nm);
	CHECK_INT(0, receive(st, "carol@x", "a.txt", nm));
	CHECK_STR("a.txt", nm);
	CHECK_INT(0, receive(st, "bob@x", "noext", nm));
	CHECK_STR("noext", nm);
	CHECK_INT(0, receive(st, "bob@x", "noext", nm));
	CHECK_STR("noext (2)", nm);
	CHECK_INT(0, receive(st, "bob@x", ".bashrc", nm));
	CHECK_INT(0, receive(st, "bob@x", ".bashrc", nm));
	CHECK_STR(".bashrc (2)", nm);
	CHECK_INT(0, receive(st, "bob@x", "x.tar.gz", nm));
	CHECK_INT(0, receive(st, "bob@x", "x.tar.gz", nm));
	CHECK_STR("x.tar (2).gz", nm);

	/* 255 bytes of 3-byte characters plus ".jpg": cut on a boundary */
	for (i = 0; i + 3 <= 251; i += 3)
		memcpy(longn + i, "\xe2\x82\xac", 3); /* EURO SIGN */
	memcpy(longn + i, ".jpg", 5);
	CHECK_INT(0, receive(st, "bob@x", longn, nm));
	CHECK_STR(longn, nm);
	CHECK_INT(0, receive(st, "bob@x", longn, nm));
	CHECK(strlen(nm) <= 255);
	CHECK(valid_utf8(nm));
	CHECK(strstr(nm, " (2).jpg") != NULL);
	CHECK_INT(0, receive(st, "bob@x", longn, nm));
	CHECK(strstr(nm, " (3).jpg") != NULL);

	memset(&l, 0, sizeof(l));
	CHECK_INT(0, store_in_list(st, "bob@x", collect_in, &l));
	CHECK_INT(12, l.n);
	CHECK_STR(".bashrc", l.v[0]);
	CHECK_STR(".bashrc (2)", l.v[1]);
	CHECK_STR("a (2).txt", l.v[2]);
	memset(&l, 0, sizeof(l));
	CHECK_INT(0, store_in_senders(st, collect_sender, &l));
	CHECK_INT(2, l.n);
	CHECK_STR("bob@x", l.v[0]);
	CHECK_STR("carol@x", l.v[1]);
	memset(&l, 0, sizeof(l));
	CHECK_INT(0, store_in_list(st, "nobody@x", collect_in, &l));
	CHECK_INT(0, l.n);
	store_close(st);
}

static void test_incoming(void)
{
	struct store *st;
	struct store_in in, f, g;
	struct stat sb;
	char p[600], nm[STORE_NAME_MAX];
	const char *md5 = "0123456789abcdef0123456789abcdef";
	const char *date = "2020-01-02T03:04:05Z";
	char buf[64];

	REQUIRE_OK(store_open(tpath("in"), &st));
	in = offer("bob@x", "photo.jpg", 5, "", date);
	REQUIRE_OK(store_in_begin(st, &in));
	CHECK(in.id > 0);
	CHECK_INT(STORE_RECEIVING, in.state);
	CHECK_STR("photo.jpg", in.name);
	CHECK_STR("bob@x/phone", in.peer);
	CHECK_INT(1577934245000LL, in.mtime_ms);
	store_partial_path(st, in.id, p, sizeof(p));
	CHECK(stat(p, &sb) == 0 && sb.st_size == 0 &&
	      (sb.st_mode & 0777) == 0600);
	write_file(p, "hello", 5);
	CHECK_INT(0, store_in_set_progress(st, in.id, 5));
	CHECK_INT(0, store_in_get_id(st, in.id, &g));
	CHECK_INT(5, g.progress);
	CHECK_INT(-ENOENT, store_in_set_progress(st, 99999, 5));
	/* partial data never visible under its name */
	CHECK_INT(-ENOENT, store_in_get(st, "bob@x", "photo.jpg", &g));
	CHECK_INT(0, store_in_finish(st, in.id, nm));
	CHECK_STR("photo.jpg", nm);
	CHECK(!exists(p));
	store_inbox_path(st, in.id, p, sizeof(p));
	CHECK(stat(p, &sb) == 0 && sb.st_size == 5 &&
	      sb.st_mtime == 1577934245);
	CHECK_INT(0, store_in_get(st, "bob@x", "photo.jpg", &g));
	CHECK_INT(STORE_RECEIVED, g.state);
	CHECK_INT(5, g.progress);
	CHECK_INT(in.id, g.id);
	CHECK_INT(-ENOENT, store_in_finish(st, in.id, nm)); /* no partial */
	CHECK_INT(-EINVAL, store_in_fail(st, in.id, "x", 0));

	/* bad input */
	f = offer("bob@x", "a/b", 5, "", "");
	CHECK_INT(-EINVAL, store_in_begin(st, &f));
	f = offer("bob@x", "..", 5, "", "");
	CHECK_INT(-EINVAL, store_in_begin(st, &f));

	/* resume: hash decides when both have one */
	f = offer("bob@x", "big.bin", 100, md5, date);
	REQUIRE_OK(store_in_begin(st, &f));
	store_partial_path(st, f.id, p, sizeof(p));
	memset(buf, 'x', sizeof(buf));
	write_file(p, buf, 40);
	CHECK_INT(0, store_in_set_progress(st, f.id, 10));
	CHECK_INT(0, store_in_find_partial(st, "bob@x", "big.bin", 100, md5,
					   "other-date", &g));
	CHECK_INT(f.id, g.id);
	CHECK_INT(40, g.progress); /* the file, not the database */
	CHECK_INT(-ENOENT, store_in_find_partial(
				   st, "bob@x", "big.bin", 100,
				   "ffffffffffffffffffffffffffffffff", date, &g));
	CHECK_INT(-ENOENT, store_in_find_partial(st, "bob@x", "big.bin", 101,
						 md5, date, &g));
	CHECK_INT(-ENOENT, store_in_find_partial(st, "carol@x", "big.bin",
						 100, md5, date, &g));
	CHECK_INT(-ENOENT, store_in_find_partial(st, "bob@x", "other", 100,
						 md5, date, &g));
	/* no hash on one side: date decides; nothing to compare: match */
	CHECK_INT(0, store_in_find_partial(st, "bob@x", "big.bin", 100, "",
					   date, &g));
	CHECK_INT(-ENOENT, store_in_find_partial(st, "bob@x", "big.bin", 100,
						 NULL, "1999-01-01T00:00:00Z",
						 &g));
	CHECK_INT(0, store_in_find_partial(st, "bob@x", "big.bin", 100, NULL,
					   NULL, &g));

	/* failed, partial kept: still resumable; rebind */
	CHECK_INT(0, store_in_fail(st, f.id, "connection lost", 1));
	CHECK_INT(0, store_in_get_id(st, f.id, &g));
	CHECK_INT(STORE_FAILED, g.state);
	CHECK_STR("connection lost", g.error);
	CHECK(exists(p));
	CHECK_INT(0, store_in_find_partial(st, "bob@x", "big.bin", 100, md5,
					   date, &g));
	CHECK_INT(f.id, g.id);
	CHECK_INT(0, store_in_rebind(st, f.id, "sid2", "bob@x/laptop", "s5b"));
	CHECK_INT(0, store_in_get_id(st, f.id, &g));
	CHECK_INT(STORE_RECEIVING, g.state);
	CHECK_STR("sid2", g.sid);
	CHECK_STR("bob@x/laptop", g.peer);
	CHECK_STR("s5b", g.method);
	CHECK_STR("", g.error);
	CHECK_INT(40, g.progress);
	CHECK_INT(-ENOENT, store_in_rebind(st, 99999, "s", NULL, NULL));

	/* failed without keeping: partial deleted, not resumable */
	CHECK_INT(0, store_in_fail(st, f.id, "hash mismatch", 0));
	CHECK(!exists(p));
	CHECK_INT(-ENOENT, store_in_find_partial(st, "bob@x", "big.bin", 100,
						 md5, date, &g));
	CHECK_INT(-ENOENT, store_in_finish(st, f.id, nm));

	/* rename within the sender's folder, replacing */
	CHECK_INT(0, receive(st, "bob@x", "photo.jpg", nm));
	CHECK_STR("photo (2).jpg", nm);
	CHECK_INT(0, store_in_get(st, "bob@x", "photo (2).jpg", &g));
	CHECK_INT(0, store_in_rename(st, g.id, "renamed.jpg"));
	CHECK_INT(0, store_in_get(st, "bob@x", "renamed.jpg", &f));
	CHECK_INT(g.id, f.id);
	CHECK_INT(-ENOENT, store_in_get(st, "bob@x", "photo (2).jpg", &f));
	CHECK_INT(0, store_in_rename(st, g.id, "photo.jpg"));
	CHECK_INT(-ENOENT, store_in_get_id(st, in.id, &f));
	store_inbox_path(st, in.id, p, sizeof(p));
	CHECK(!exists(p));
	CHECK_INT(0, store_in_get(st, "bob@x", "photo.jpg", &f));
	CHECK_INT(g.id, f.id);
	CHECK_INT(-EINVAL, store_in_rename(st, g.id, "x/y"));
	CHECK_INT(-ENOENT, store_in_rename(st, 99999, "q"));

	/* delete */
	store_inbox_path(st, g.id, p, sizeof(p));
	CHECK(exists(p));
	CHECK_INT(0, store_in_delete(st, g.id));
	CHECK(!exists(p));
	CHECK_INT(-ENOENT, store_in_delete(st, g.id));
	CHECK_INT(-ENOENT, store_in_get(st, "bob@x", "photo.jpg", &f));
	store_close(st);
}

static void test_xfer_list(void)
{
	struct store *st;
	struct store_out a, b;
	struct store_in in;
	struct xfers xs;
	char nm[STORE_NAME_MAX];

	REQUIRE_OK(store_open(tpath("xfer"), &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", "staged", 0644, &a));
	REQUIRE_OK(store_out_create(st, "bob@x", "out1", 0644, &b));
	CHECK_INT(0, store_out_release(st, b.id, 1, 0));
	sleep_ms(5);
	in = offer("carol@x", "in1", 10, "", "");
	REQUIRE_OK(store_in_begin(st, &in));
	sleep_ms(5);
	CHECK_INT(0, receive(st, "dave@x", "in2", nm));
	sleep_ms(5);
	CHECK_INT(0, store_out_set_state(st, b.id, b.gen, STORE_SENDING, NULL,
					 "ibb", NULL, NULL));

	memset(&xs, 0, sizeof(xs));
	CHECK_INT(0, store_xfer_list(st, 0, find_xfer, &xs));
	CHECK_INT(3, xs.n);
	CHECK_STR("out1", xs.name[0]);
	CHECK_INT(1, xs.outgoing[0]);
	CHECK_INT(STORE_SENDING, xs.state[0]);
	CHECK_STR("in2", xs.name[1]);
	CHECK_INT(0, xs.outgoing[1]);
	CHECK_INT(STORE_RECEIVED, xs.state[1]);
	CHECK_STR("in1", xs.name[2]);
	CHECK_INT(STORE_RECEIVING, xs.state[2]);
	CHECK(xs.updated[0] >= xs.updated[1] && xs.updated[1] >= xs.updated[2]);
	memset(&xs, 0, sizeof(xs));
	CHECK_INT(0, store_xfer_list(st, 2, find_xfer, &xs));
	CHECK_INT(2, xs.n);
	store_close(st);
}

static void test_many(void)
{
	struct store *st;
	struct store_out o;
	char name[32];
	int64_t t0, t1;
	int i, n = 0, rc = 0;

	REQUIRE_OK(store_open(tpath("many"), &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_contact_add(st, "alice@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "alice@x", "zzz", 0644, &o));
	t0 = mono_ms();
	for (i = 0; i < 10000 && rc == 0; i++) {
		snprintf(name, sizeof(name), "file-%05d.dat", i);
		rc = store_out_create(st, "bob@x", name, 0644, &o);
	}
	CHECK_INT(0, rc);
	t1 = mono_ms();
	printf("  10000 creates: %" PRId64 " ms\n", t1 - t0);
	t0 = mono_ms();
	CHECK_INT(0, store_out_list(st, "bob@x", count_cb, &n));
	t1 = mono_ms();
	CHECK_INT(10000, n);
	printf("  list of 10000: %" PRId64 " ms\n", t1 - t0);
	CHECK(t1 - t0 < 200);
	t0 = mono_ms();
	for (i = 0; i < 1000; i++)
		store_out_get(st, "bob@x", "file-05000.dat", &o);
	t1 = mono_ms();
	printf("  1000 gets: %" PRId64 " ms\n", t1 - t0);
	store_close(st);

	/* reopen with 10000 spool files: the orphan scan must stay fast */
	t0 = mono_ms();
	REQUIRE_OK(store_open(tpath("many"), &st));
	t1 = mono_ms();
	printf("  reopen: %" PRId64 " ms\n", t1 - t0);
	n = 0;
	CHECK_INT(0, store_out_list(st, "bob@x", count_cb, &n));
	CHECK_INT(10000, n);
	store_close(st);
}

/* Threads hammering one store: for ASan/TSan and lock mistakes. */
struct hammer {
	struct store *st;
	int64_t id;
	uint64_t gen;
	int which;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	struct store_out o;
	int i, n;

	for (i = 0; i < 300; i++) {
		switch (h->which) {
		case 0:
			store_out_set_progress(h->st, h->id, h->gen,
					       (uint64_t)i);
			break;
		case 1:
			n = 0;
			store_out_list(h->st, "bob@x", count_cb, &n);
			break;
		case 2:
			store_out_get_id(h->st, h->id, &o);
			break;
		default:
			store_set_link(h->st, i & 1 ? "online" : "offline");
			break;
		}
	}
	return NULL;
}

static void test_threads(void)
{
	struct store *st;
	struct store_out o;
	struct hammer h[4];
	pthread_t t[4];
	int i;

	REQUIRE_OK(store_open(tpath("threads"), &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", "f", 0644, &o));
	for (i = 0; i < 100; i++) {
		char name[16];
		struct store_out x;

		snprintf(name, sizeof(name), "g%d", i);
		store_out_create(st, "bob@x", name, 0644, &x);
	}
	for (i = 0; i < 4; i++) {
		h[i] = (struct hammer){st, o.id, o.gen, i};
		pthread_create(&t[i], NULL, hammer_main, &h[i]);
	}
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(0, store_out_get_id(st, o.id, &o));
	CHECK_INT(299, o.progress);
	store_close(st);
}

/* A callback may call back into the store (no lock is held). */
static int reenter_cb(const struct store_out *o, void *arg)
{
	struct store *st = arg;
	struct store_out x;

	return store_out_get_id(st, o->id, &x);
}

static void test_reentrant(void)
{
	struct store *st;
	struct store_out o;

	REQUIRE_OK(store_open(tpath("reenter"), &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", "f", 0644, &o));
	CHECK_INT(0, store_out_list(st, "bob@x", reenter_cb, st));
	store_close(st);
}

static void test_full_disk(void)
{
	struct store *st;
	struct store_out o, x;
	struct store_in in, fin;
	const char *dir = tpath("full");
	char fill[600], part[600], name[STORE_NAME_MAX], buf[4096];
	uint64_t cnt = 0;
	int i, fd, rc = 0, made = 0, seen_nospc = 0;
	long long rows;

	mkdir(dir, 0700);
	if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") < 0) {
		printf("SKIP full disk: mount tmpfs: %s\n", strerror(errno));
		return;
	}
	REQUIRE_OK(store_open(dir, &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", "before", 0644, &o));

	REQUIRE_OK(store_out_create(st, "bob@x", "x", 0644, &x));
	CHECK_INT(0, store_out_release(st, x.id, 1, 0));
	fin = offer("carol@x", "fin.bin", 3, "", "");
	REQUIRE_OK(store_in_begin(st, &fin));
	store_partial_path(st, fin.id, part, sizeof(part));
	write_file(part, "abc", 3);

	/* fill the disk, then give back a little so a few changes fit */
	snprintf(fill, sizeof(fill), "%s/fill", dir);
	fd = open(fill, O_CREAT | O_WRONLY, 0600);
	memset(buf, 'f', sizeof(buf));
	while (fd >= 0 && write(fd, buf, sizeof(buf)) > 0)
		;
	if (fd >= 0) {
		off_t end = lseek(fd, 0, SEEK_END);

		CHECK(ftruncate(fd, end > 65536 ? end - 65536 : 0) == 0);
		close(fd);
	}

	for (i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "n%04d-padding-padding", i);
		rc = store_out_create(st, "bob@x", name, 0644, &o);
		if (rc < 0)
			break;
		made++;
	}
	CHECK_INT(-ENOSPC, rc);
	printf("  full disk after %d creates\n", made);
	/* every further change fails cleanly or succeeds, nothing else */
	for (i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "m%04d-padding-padding", i);
		rc = store_out_create(st, "bob@x", name, 0644, &o);
		if (rc == 0)
			made++;
		CHECK(rc == 0 || rc == -ENOSPC);
		seen_nospc |= rc == -ENOSPC;
		in = offer("carol@x", name, 10, "", "");
		rc = store_in_begin(st, &in);
		CHECK(rc == 0 || rc == -ENOSPC);
		rc = store_contact_add(st, name, STORE_CONTACT_USER);
		CHECK(rc == 0 || rc == -ENOSPC);
	}
	CHECK(seen_nospc);
	/* failed changes leave the row as it was */
	rc = store_out_touch(st, x.id, NULL);
	CHECK(rc == 0 || rc == -ENOSPC);
	CHECK_INT(0, store_out_get_id(st, x.id, &o));
	CHECK_INT(rc == 0 ? STORE_STAGED : STORE_WAITING, o.state);
	CHECK_INT(rc == 0 ? x.gen + 1 : x.gen, o.gen);
	rc = store_in_finish(st, fin.id, name);
	CHECK(rc == 0 || rc == -ENOSPC);
	CHECK_INT(0, store_in_get_id(st, fin.id, &in));
	CHECK_INT(rc == 0 ? STORE_RECEIVED : STORE_RECEIVING, in.state);
	CHECK_INT(rc != 0, exists(part));
	printf("  touch/finish on the full disk: %d\n", rc);
	CHECK_INT(0, store_out_count(st, "bob@x", &cnt));
	CHECK_INT(made + 2, cnt);
	store_close(st);

	/* the database opens and is consistent, even still full */
	rc = store_open(dir, &st);
	CHECK(rc == 0 || rc == -ENOSPC);
	if (rc == 0)
		store_close(st);
	unlink(fill);
	REQUIRE_OK(store_open(dir, &st));
	CHECK_INT(0, store_out_count(st, "bob@x", &cnt));
	CHECK_INT(made + 2, cnt);
	CHECK_INT(0, store_out_create(st, "bob@x", "after", 0644, &o));
	store_close(st);
	CHECK(db_integrity_ok(dir));
	rows = db_int(dir, "SELECT count(*) FROM out_file");
	CHECK_INT(made + 3, rows);
	umount2(dir, MNT_DETACH);
}

static int rm_cb(const char *p, const struct stat *sb, int flag,
		 struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

int main(void)
{
	snprintf(base, sizeof(base), "/tmp/test_store.XXXXXX");
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return 1;
	}
#define RUN(t)                                                              \
	do {                                                                \
		printf("%s\n", #t);                                         \
		fflush(stdout);                                             \
		t();                                                        \
	} while (0)
	RUN(test_open_close);
	RUN(test_readonly_dir);
	RUN(test_contacts);
	RUN(test_contact_attr);
	RUN(test_out_basic);
	RUN(test_out_rename);
	RUN(test_out_state);
	RUN(test_unclean);
	RUN(test_in_names);
	RUN(test_incoming);
	RUN(test_xfer_list);
	RUN(test_many);
	RUN(test_threads);
	RUN(test_reentrant);
	RUN(test_full_disk);
	nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
