/*
 * fs_outbox.c: files in outbox/<jid>/.
 *
 * Design. An outbox file is a store row plus its spool file. The spool file
 * is the file: its bytes are the content, its st_mode/st_mtime/st_size are
 * what getattr shows, so chmod/utimens/truncate go straight to it. An open
 * file keeps the spool fd in its struct fs_fh and write(2) is one pwrite()
 * on it, with no database call.
 *
 * What the store needs to know, and when:
 *  - the first change through a handle (write, ftruncate, futimens,
 *    fallocate, open with O_TRUNC) calls store_out_touch() once: gen++,
 *    state staged, so a transfer of older content is abandoned and the file
 *    is not sent while it is being written;
 *  - when the last writer of a row closes, store_out_release() records the
 *    size and makes a visible staged row waiting, sendable after settle_ms;
 *    then the wake hook tells the XMPP side;
 *  - a path-based change of a closed file (truncate, utime) is a touch and
 *    a release at once; of a file with writers, only a touch (the last
 *    close releases it);
 *  - rename and unlink are one store call each, then a wake.
 * The open-writer count per row id lives in a small hash table behind
 * fs_writers_lock (a leaf lock: never held while calling the store).
 */
#include "fs/fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

/* ---- open-writer table ------------------------------------------- */

#define FS_WRITERS_BUCKETS 256

struct fs_writer {
	struct fs_writer *next;
	int64_t id;
	int count;
	unsigned epoch; /* writer opens while the entry lived */
};

static pthread_mutex_t fs_writers_lock = PTHREAD_MUTEX_INITIALIZER;
/* protected by fs_writers_lock */
static struct fs_writer *fs_writers[FS_WRITERS_BUCKETS];

static struct fs_writer **fs_writers_slot(int64_t id)
{
	uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull;

	return &fs_writers[(h >> 56) % FS_WRITERS_BUCKETS];
}

/* Writers of id now, and how many opened so far; 0 if none. */
static int fs_writers_state(int64_t id, unsigned *epoch)
{
	struct fs_writer *w;
	int n = 0;

	*epoch = 0;
	pthread_mutex_lock(&fs_writers_lock);
	for (w = *fs_writers_slot(id); w; w = w->next)
		if (w->id == id) {
			n = w->count;
			*epoch = w->epoch;
			break;
		}
	pthread_mutex_unlock(&fs_writers_lock);
	return n;
}

/* Add delta to id's count; returns the new count or -ENOMEM. */
static int fs_writers_add(int64_t id, int delta)
{
	struct fs_writer **pp, *w;
	int n = -ENOMEM;

	pthread_mutex_lock(&fs_writers_lock);
	for (pp = fs_writers_slot(id); *pp; pp = &(*pp)->next)
		if ((*pp)->id == id)
			break;
	w = *pp;
	if (!w && delta > 0) {
		w = calloc(1, sizeof(*w));
		if (w) {
			w->id = id;
			*pp = w;
		}
	}
	if (w) {
		w->count += delta;
		if (delta > 0)
			w->epoch++;
		n = w->count;
		if (n <= 0) {
			*pp = w->next;
			free(w);
			n = 0;
		}
	} else if (delta <= 0) {
		n = 0;
	}
	pthread_mutex_unlock(&fs_writers_lock);
	return n;
}

static int fs_writers_count(int64_t id)
{
	struct fs_writer *w;
	int n = 0;

	pthread_mutex_lock(&fs_writers_lock);
	for (w = *fs_writers_slot(id); w; w = w->next)
		if (w->id == id) {
			n = w->count;
			break;
		}
	pthread_mutex_unlock(&fs_writers_lock);
	return n;
}

static struct fs_fh *fs_out_open_fhs; /* protected by fs_writers_lock */

static void fs_fh_unlink(struct fs_fh *fh)
{
	pthread_mutex_lock(&fs_writers_lock);
	if (fh->out_prev)
		fh->out_prev->out_next = fh->out_next;
	else if (fs_out_open_fhs == fh)
		fs_out_open_fhs = fh->out_next;
	if (fh->out_next)
		fh->out_next->out_prev = fh->out_prev;
	fh->out_next = fh->out_prev = NULL;
	pthread_mutex_unlock(&fs_writers_lock);
}

void fs_out_writers_clear(void)
{
	struct fs_writer *w;

	/* Handles still open at unmount never get their RELEASE: free them
	 * (their rows stay staged; the next start queues them). */
	for (;;) {
		struct fs_fh *fh;

		pthread_mutex_lock(&fs_writers_lock);
		fh = fs_out_open_fhs;
		if (fh)
			fs_out_open_fhs = fh->out_next;
		pthread_mutex_unlock(&fs_writers_lock);
		if (!fh)
			break;
		fs_hash_abort(fh->hash);
		close(fh->fd);
		free(fh->buf);
		free(fh);
	}
	pthread_mutex_lock(&fs_writers_lock);
	for (int i = 0; i < FS_WRITERS_BUCKETS; i++) {
		while (fs_writers[i]) {
			w = fs_writers[i];
			fs_writers[i] = w->next;
			free(w);
		}
	}
	pthread_mutex_unlock(&fs_writers_lock);
}

/* ---- helpers ------------------------------------------------------- */

static struct store *fs_st(void)
{
	return fs_cfg()->store;
}

static char *fs_spool(int64_t id, char *buf, size_t len)
{
	return store_spool_path(fs_st(), id, buf, len);
}

static void fs_out_fix_stat(struct stat *st)
{
	st->st_mode = S_IFREG | (st->st_mode & 07777);
	st->st_nlink = 1;
	st->st_ino = 0;
	st->st_dev = 0;
	fs_stat_owner(st);
}

int fs_out_stat_id(int64_t id, struct stat *st)
{
	char path[PATH_MAX];

	if (stat(fs_spool(id, path, sizeof(path)), st) < 0)
		return -errno;
	fs_out_fix_stat(st);
	return 0;
}

static int fs_out_row(const struct fs_path *p, struct store_out *o)
{
	return store_out_get(fs_st(), p->dir, p->name, o);
}

static struct fs_fh *fs_fh_new(int64_t id, int fd)
{
	struct fs_fh *fh = calloc(1, sizeof(*fh));

	if (!fh)
		return NULL;
	fh->kind = FS_FH_OUT;
	fh->fd = fd;
	fh->id = id;
	atomic_init(&fh->dirty, 0);
	pthread_mutex_lock(&fs_writers_lock);
	fh->out_next = fs_out_open_fhs;
	if (fs_out_open_fhs)
		fs_out_open_fhs->out_prev = fh;
	fs_out_open_fhs = fh;
	pthread_mutex_unlock(&fs_writers_lock);
	return fh;
}

/*
 * Open the spool file of id. created != 0 is the O_CREAT case: POSIX lets
 * the creating open write even when the new mode has no write bit (cp of a
 * read-only file), so lift the mode for the open and put it back.
 */
static int fs_spool_open(int64_t id, int flags, int created)
{
	char path[PATH_MAX];
	struct stat sb;
	int fd, saverr;

	fs_spool(id, path, sizeof(path));
	fd = open(path, flags | O_CLOEXEC);
	if (fd >= 0)
		return fd;
	if (errno != EACCES || !created || stat(path, &sb) < 0)
		return -errno;
	if (chmod(path, (sb.st_mode & 07777) | S_IRUSR | S_IWUSR) < 0)
		return -EACCES;
	fd = open(path, flags | O_CLOEXEC);
	saverr = errno;
	chmod(path, sb.st_mode & 07777);
	return fd >= 0 ? fd : -saverr;
}

/* First change through fh: one store_out_touch() per handle. */
static int fs_out_dirty(struct fs_fh *fh)
{
	int rc;

	if (atomic_load(&fh->dirty) || atomic_exchange(&fh->dirty, 1))
		return 0;
	rc = store_out_touch(fs_st(), fh->id, &fh->gen);
	if (rc == -ENOENT)
		return 0; /* unlinked while open: the fd still works */
	if (rc < 0) {
		atomic_store(&fh->dirty, 0);
		return rc;
	}
	return 0;
}

/* Record the size of a closed file and let it go (waiting if visible). */
static void fs_out_let_go(int64_t id, uint64_t size)
{
	int rc = store_out_release(fs_st(), id, size, fs_ready_at());

	if (rc < 0 && rc != -ENOENT)
		log_warnx("fs", "release of outbox row %" PRId64 ": %s", id,
			  strerror(-rc));
	fs_wake();
}

/* After a path-based change of row id: release it unless writers have it
 * open (their last close will). */
static void fs_out_changed(int64_t id)
{
	struct stat sb;

	if (fs_writers_count(id) > 0)
		return;
	if (fs_out_stat_id(id, &sb) < 0)
		return;
	fs_out_let_go(id, (uint64_t)sb.st_size);
}

/* ---- attributes and listing ---------------------------------------- */

int fs_out_getattr(const struct fs_path *p, struct stat *st,
		   struct fuse_file_info *fi)
{
	struct store_out o;
	int rc;

	if (fi) {
		if (fstat(fs_fh_get(fi)->fd, st) < 0)
			return -errno;
		fs_out_fix_stat(st);
		return 0;
	}
	rc = fs_out_row(p, &o);
	if (rc < 0)
		return rc;
	return fs_out_stat_id(o.id, st);
}

static int fs_out_collect(const struct store_out *o, void *arg)
{
	return fs_dents_add(arg, o->name, o->id, 0);
}

int fs_out_list(const char *contact, struct fs_dents *d)
{
	return store_out_list(fs_st(), contact, fs_out_collect, d);
}

/* ---- open / create / io / release ---------------------------------- */

static int fs_out_attach(int64_t id, int fd, int writer, int dirty,
			 struct fuse_file_info *fi)
{
	struct fs_fh *fh = fs_fh_new(id, fd);

	if (!fh) {
		close(fd);
		return -ENOMEM;
	}
	if (writer && fs_writers_add(id, 1) < 0) {
		fs_fh_unlink(fh);
		close(fd);
		free(fh);
		return -ENOMEM;
	}
	fh->writer = writer;
	atomic_store(&fh->dirty, dirty);
	fi->fh = (uint64_t)(uintptr_t)fh;
	fi->direct_io = 0;
	fi->keep_cache = 0;
	return 0;
}

int fs_out_create(const struct fs_path *p, mode_t mode,
		  struct fuse_file_info *fi)
{
	struct store_out o;
	int acc = fi->flags & O_ACCMODE;
	int fd, rc;

	rc = store_out_create(fs_st(), p->dir, p->name, mode & 07777, &o);
	if (rc < 0)
		return rc;
	fd = fs_spool_open(o.id, acc, 1);
	if (fd < 0) {
		store_out_delete(fs_st(), o.id);
		return fd;
	}
	/* A new row is staged with a fresh gen: nothing to touch. */
	rc = fs_out_attach(o.id, fd, acc != O_RDONLY, 1, fi);
	if (rc < 0)
		store_out_delete(fs_st(), o.id);
	else
		fs_fh_get(fi)->gen = o.gen; /* what an MD5 while writing is for */
	return rc;
}

int fs_out_open(const struct fs_path *p, struct fuse_file_info *fi)
{
	struct store_out o;
	struct fs_fh *fh;
	int acc = fi->flags & O_ACCMODE;
	int fd, rc;

	rc = fs_out_row(p, &o);
	if (rc < 0)
		return rc;
	fd = fs_spool_open(o.id, acc, 0);
	if (fd < 0)
		return fd;
	rc = fs_out_attach(o.id, fd, acc != O_RDONLY, 0, fi);
	if (rc < 0 || acc == O_RDONLY || !(fi->flags & O_TRUNC))
		return rc;
	/* atomic_o_trunc: the truncation of open(O_TRUNC) arrives here. */
	fh = fs_fh_get(fi);
	rc = fs_out_dirty(fh);
	if (rc == 0 && ftruncate(fh->fd, 0) < 0)
		rc = -errno;
	if (rc < 0) {
		fs_out_release(fh);
		fi->fh = 0;
	}
	return rc;
}

int fs_out_read(struct fs_fh *fh, char *buf, size_t size, off_t off)
{
	ssize_t n = pread(fh->fd, buf, size, off);

	return n < 0 ? -errno : (int)n;
}

/* ---- MD5 while writing (see fs_hash.c) ------------------------------ */

static pthread_mutex_t fs_hash_lock = PTHREAD_MUTEX_INITIALIZER;

/* The handle stops writing in order: hash after close instead. */
static void fs_out_hash_drop(struct fs_fh *fh)
{
	struct fs_hash *h;

	pthread_mutex_lock(&fs_hash_lock);
	h = fh->hash;
	fh->hash = NULL;
	fh->hash_dead = 1;
	pthread_mutex_unlock(&fs_hash_lock);
	fs_hash_abort(h);
}

/* n bytes were written at off through fh. */
static void fs_out_hash_follow(struct fs_fh *fh, off_t off, size_t n)
{
	struct stat sb;
	unsigned epoch;

	pthread_mutex_lock(&fs_hash_lock);
	if (fh->hash_dead) {
		pthread_mutex_unlock(&fs_hash_lock);
		return;
	}
	if (fh->hash && (uint64_t)off == fh->hash_pos) {
		fh->hash_pos += n;
		fs_hash_advance(fh->hash, fh->hash_pos);
		pthread_mutex_unlock(&fs_hash_lock);
		return;
	}
	/* Start only on a file written from 0 by its only writer. */
	if (!fh->hash && off == 0 && fstat(fh->fd, &sb) == 0 &&
	    (uint64_t)sb.st_size == n &&
	    fs_writers_state(fh->id, &epoch) == 1) {
		fh->hash = fs_hash_start(fh->fd);
		if (fh->hash) {
			fh->hash_epoch = epoch;
			fh->hash_pos = n;
			fs_hash_advance(fh->hash, n);
			pthread_mutex_unlock(&fs_hash_lock);
			return;
		}
	}
	pthread_mutex_unlock(&fs_hash_lock);
	fs_out_hash_drop(fh);
}

/* At the last close: store the hash if this handle wrote the whole file
 * in order and no other writer came along. */
static void fs_out_hash_store(struct fs_fh *fh, uint64_t size)
{
	struct fs_hash *h;
	unsigned epoch;
	char hex[33];

	pthread_mutex_lock(&fs_hash_lock);
	h = fh->hash;
	fh->hash = NULL;
	pthread_mutex_unlock(&fs_hash_lock);
	if (!h)
		return;
	fs_writers_state(fh->id, &epoch);
	if (fh->hash_pos != size || (epoch && epoch != fh->hash_epoch) ||
	    !atomic_load(&fh->dirty)) {
		log_debug("fs", "row %" PRId64 ": no MD5 while writing (wrote "
			  "%" PRIu64 " of %" PRIu64 " in order)", fh->id,
			  fh->hash_pos, size);
		fs_hash_abort(h);
		return;
	}
	/* gen-checked: a change through any other path bumped the gen. */
	{
		int rc = fs_hash_finish(h, size, hex);

		if (rc == 0)
			rc = store_out_set_hash(fs_st(), fh->id, fh->gen, hex);
		if (rc < 0)
			log_debug("fs", "row %" PRId64 ": MD5 while writing "
				  "not kept: %s", fh->id, strerror(-rc));
	}
}

int fs_out_write(struct fs_fh *fh, const char *buf, size_t size, off_t off)
{
	ssize_t n;
	int rc;

	rc = fs_out_dirty(fh);
	if (rc < 0)
		return rc;
	n = pwrite(fh->fd, buf, size, off);
	if (n < 0)
		return -errno;
	fs_out_hash_follow(fh, off, (size_t)n);
	return (int)n;
}

int fs_out_release(struct fs_fh *fh)
{
	struct stat sb;

	fs_fh_unlink(fh);
	if (fh->writer && fs_writers_state(fh->id, &(unsigned){0}) == 1 &&
	    fstat(fh->fd, &sb) == 0)
		fs_out_hash_store(fh, (uint64_t)sb.st_size);
	else
		fs_hash_abort(fh->hash);
	fh->hash = NULL;
	if (fh->writer && fs_writers_add(fh->id, -1) == 0) {
		if (fstat(fh->fd, &sb) == 0)
			fs_out_let_go(fh->id, (uint64_t)sb.st_size);
	}
	close(fh->fd);
	free(fh->buf);
	free(fh);
	return 0;
}

int fs_out_fsync(struct fs_fh *fh, int datasync)
{
	int rc = datasync ? fdatasync(fh->fd) : fsync(fh->fd);

	return rc < 0 ? -errno : 0;
}

int fs_out_fallocate(struct fs_fh *fh, int mode, off_t off, off_t len)
{
	int rc;

	if (mode & ~FALLOC_FL_KEEP_SIZE)
		return -EOPNOTSUPP;
	rc = fs_out_dirty(fh);
	if (rc < 0)
		return rc;
	fs_out_hash_drop(fh);
	return fallocate(fh->fd, mode, off, len) < 0 ? -errno : 0;
}

/* ---- attribute changes --------------------------------------------- */

int fs_out_truncate(const struct fs_path *p, off_t size,
		    struct fuse_file_info *fi)
{
	struct store_out o;
	char path[PATH_MAX];
	int rc;

	if (fi) {
		struct fs_fh *fh = fs_fh_get(fi);

		rc = fs_out_dirty(fh);
		if (rc < 0)
			return rc;
		fs_out_hash_drop(fh);
		return ftruncate(fh->fd, size) < 0 ? -errno : 0;
	}
	rc = fs_out_row(p, &o);
	if (rc < 0)
		return rc;
	rc = store_out_touch(fs_st(), o.id, NULL);
	if (rc < 0)
		return rc;
	if (truncate(fs_spool(o.id, path, sizeof(path)), size) < 0)
		rc = -errno;
	fs_out_changed(o.id);
	return rc;
}

int fs_out_chmod(const struct fs_path *p, mode_t mode,
		 struct fuse_file_info *fi)
{
	struct store_out o;
	char path[PATH_MAX];
	int rc;

	/* Mode is metadata the peer never sees: no touch, no resend. */
	if (fi)
		return fchmod(fs_fh_get(fi)->fd, mode & 07777) < 0 ? -errno : 0;
	rc = fs_out_row(p, &o);
	if (rc < 0)
		return rc;
	if (chmod(fs_spool(o.id, path, sizeof(path)), mode & 07777) < 0)
		return -errno;
	return 0;
}

int fs_out_utimens(const struct fs_path *p, const struct timespec tv[2],
		   struct fuse_file_info *fi)
{
	struct store_out o;
	char path[PATH_MAX];
	int rc;

	if (fi) {
		struct fs_fh *fh = fs_fh_get(fi);

		rc = fs_out_dirty(fh);
		if (rc < 0)
			return rc;
		return futimens(fh->fd, tv) < 0 ? -errno : 0;
	}
	rc = fs_out_row(p, &o);
	if (rc < 0)
		return rc;
	/* `touch` of a sent file sends it again (DESIGN.md). */
	rc = store_out_touch(fs_st(), o.id, NULL);
	if (rc < 0)
		return rc;
	if (utimensat(AT_FDCWD, fs_spool(o.id, path, sizeof(path)), tv, 0) < 0)
		rc = -errno;
	fs_out_changed(o.id);
	return rc;
}

/* ---- namespace ----------------------------------------------------- */

int fs_out_rename(const struct fs_path *from, const struct fs_path *to,
		  unsigned int flags)
{
	struct store_out o, t;
	int64_t replaced = 0;
	int rc;

	rc = fs_out_row(from, &o);
	if (rc < 0)
		return rc;
	rc = fs_out_row(to, &t);
	if (rc == 0 && t.id == o.id)
		return 0; /* same file */
	if (rc == 0 && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	rc = store_out_rename(fs_st(), o.id, to->dir, to->name, fs_ready_at(),
			      &replaced);
	if (rc < 0)
		return rc;
	/* Still open for writing: keep it staged until the last close. */
	if (fs_writers_count(o.id) > 0)
		store_out_touch(fs_st(), o.id, NULL);
	fs_wake();
	return 0;
}

int fs_out_unlink(const struct fs_path *p)
{
	struct store_out o;
	char path[PATH_MAX];
	int rc;

	rc = fs_out_row(p, &o);
	if (rc < 0)
		return rc;
	rc = store_out_delete(fs_st(), o.id);
	if (rc == -ENOSPC) {
		/* A full disk must not make files undeletable: free the
		 * content first so the database has room to commit. */
		if (truncate(fs_spool(o.id, path, sizeof(path)), 0) == 0)
			rc = store_out_delete(fs_st(), o.id);
	}
	if (rc < 0)
		return rc;
	fs_wake();
	return 0;
}

/* ---- xattrs -------------------------------------------------------- */

static const char fs_out_xattrs[] = "user.xmppfs.state\0"
				    "user.xmppfs.progress\0"
				    "user.xmppfs.error\0"
				    "user.xmppfs.peer\0"
				    "user.xmppfs.method";

int fs_out_getxattr(const struct fs_path *p, const char *name, char *value,
		    size_t size)
{
	struct store_out o;
	char num[32];
	const char *v;
	int rc;

	rc = fs_out_row(p, &o);
	if (rc < 0)
		return rc;
	if (strcmp(name, "user.xmppfs.state") == 0) {
		v = store_state_name(o.state);
	} else if (strcmp(name, "user.xmppfs.progress") == 0) {
		snprintf(num, sizeof(num), "%" PRIu64, o.progress);
		v = num;
	} else if (strcmp(name, "user.xmppfs.error") == 0) {
		v = o.error;
	} else if (strcmp(name, "user.xmppfs.peer") == 0) {
		v = o.peer;
	} else if (strcmp(name, "user.xmppfs.method") == 0) {
		v = o.method;
	} else {
		return -ENODATA;
	}
	return fs_xattr_reply(v, strlen(v), value, size);
}

int fs_out_listxattr(const struct fs_path *p, char *list, size_t size)
{
	struct store_out o;
	int rc;

	rc = fs_out_row(p, &o);
	if (rc < 0)
		return rc;
	return fs_xattr_reply(fs_out_xattrs, sizeof(fs_out_xattrs), list,
			      size);
}
