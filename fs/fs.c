/*
 * fs.c: the FUSE operations table of xmppfs (high-level path API).
 *
 * Design. Every path is parsed into a struct fs_path (kind + contact/sender +
 * file name); the handlers here dispatch on the kind to fs_outbox.c,
 * fs_inbox.c, fs_status.c and fs_events.c. The store is the only state:
 * directories are store contacts and senders, files are store rows whose
 * bytes and attributes live in spool/inbox files. The mode and mtime of a
 * contact folder are contact columns (store_contact_set_attr), so `rsync -a
 * src/ outbox/bob/` sets them once and finds them unchanged on the next
 * run, after a restart too.
 *
 * libfuse settings (fs_init): nullpath_ok, so handlers on open files get
 * path == NULL and use fi->fh (open files stay usable after unlink or
 * rename); hard_remove, so unlink of an open file is a real unlink and not a
 * rename to .fuse_hidden*; no inode numbers of our own (use_ino 0);
 * readdirplus always (not "auto"), so `ls -l` of a big folder is one
 * readdir pass with the attributes filled from one store query and no
 * per-file lookup; 1 MiB writes; no kernel_cache (outbox files change).
 *
 * Nothing here blocks on the network: handlers call the store (disk) and the
 * wake hook only. Thread safety: libfuse runs this multi-threaded; shared
 * state is the store (thread-safe), the open-writer table in fs_outbox.c and
 * the /events handle state in fs_events.c, each behind its own mutex (leaf
 * locks, never held while calling the store).
 */
#include "fs/fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "util/jid.h"
#include "util/log.h"

#define FS_XATTR_PREFIX "user.xmppfs."
#define FS_XATTR_LINK "user.xmppfs.link"

static uid_t fs_uid;
static gid_t fs_gid;
static int64_t fs_mount_ms;

/* ---- small helpers shared by the fs files ------------------------- */

struct fs_config *fs_cfg(void)
{
	return fuse_get_context()->private_data;
}

void fs_wake(void)
{
	struct fs_config *c = fs_cfg();

	if (c && c->wake)
		c->wake(c->wake_arg);
}

int64_t fs_ready_at(void)
{
	return store_now_ms() + (int64_t)fs_cfg()->settle_ms;
}

void fs_stat_owner(struct stat *st)
{
	st->st_uid = fs_uid;
	st->st_gid = fs_gid;
}

void fs_ts_from_ms(struct timespec *ts, int64_t ms)
{
	if (ms < 0)
		ms = 0;
	ts->tv_sec = (time_t)(ms / 1000);
	ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

int64_t fs_mount_time_ms(void)
{
	return fs_mount_ms;
}

void fs_stat_dir(struct stat *st, int64_t mtime_ms)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFDIR | 0755;
	st->st_nlink = 2;
	st->st_size = 4096;
	st->st_blksize = 4096;
	fs_stat_owner(st);
	fs_ts_from_ms(&st->st_mtim, mtime_ms);
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

int fs_xattr_reply(const char *value, size_t len, char *buf, size_t size)
{
	if (size == 0)
		return (int)len;
	if (len > size)
		return -ERANGE;
	memcpy(buf, value, len);
	return (int)len;
}

/* ---- path parsing -------------------------------------------------- */

static int fs_comp_is(const char *c, size_t len, const char *word)
{
	return strlen(word) == len && memcmp(c, word, len) == 0;
}

static void fs_path_deep(struct fs_path *p, int ncomp, enum fs_kind parent)
{
	p->kind = FS_DEEP;
	p->parent = ncomp == 1 ? parent : FS_DEEP;
}

/* Fill p for /inbox/... or /outbox/... with n components c[]/l[]. */
static void fs_path_box(struct fs_path *p, int in, int n, const char **c,
			const size_t *l)
{
	enum fs_kind top = in ? FS_INBOX : FS_OUTBOX;
	enum fs_kind dir = in ? FS_IN_DIR : FS_OUT_DIR;
	enum fs_kind file = in ? FS_IN_FILE : FS_OUT_FILE;

	p->parent = FS_ROOT;
	p->kind = top;
	if (n >= 2) {
		memcpy(p->dir, c[1], l[1]);
		p->dir[l[1]] = '\0';
		p->parent = top;
		p->kind = dir;
	}
	if (n >= 3) {
		memcpy(p->name, c[2], l[2]);
		p->name[l[2]] = '\0';
		p->parent = dir;
		p->kind = file;
	}
	if (n >= 4)
		fs_path_deep(p, n - 3, file);
}

int fs_path_parse(const char *path, struct fs_path *p)
{
	const char *c[4];
	size_t l[4];
	const char *s = path;
	int n = 0;

	p->kind = FS_DEEP;
	p->parent = FS_DEEP;
	p->dir[0] = '\0';
	p->name[0] = '\0';
	if (!path)
		return -ENOENT;
	while (*s) {
		const char *e;

		while (*s == '/')
			s++;
		if (!*s)
			break;
		e = strchrnul(s, '/');
		if (e - s > FS_NAME_MAX)
			return -ENAMETOOLONG;
		if (n < 4) {
			c[n] = s;
			l[n] = (size_t)(e - s);
		}
		n++;
		s = e;
	}
	if (n == 0) {
		p->kind = FS_ROOT;
		p->parent = FS_ROOT;
	} else if (fs_comp_is(c[0], l[0], "inbox")) {
		fs_path_box(p, 1, n < 4 ? n : 4, c, l);
		if (n > 4)
			p->parent = FS_DEEP;
	} else if (fs_comp_is(c[0], l[0], "outbox")) {
		fs_path_box(p, 0, n < 4 ? n : 4, c, l);
		if (n > 4)
			p->parent = FS_DEEP;
	} else if (fs_comp_is(c[0], l[0], "status") && n == 1) {
		p->kind = FS_STATUS;
		p->parent = FS_ROOT;
	} else if (fs_comp_is(c[0], l[0], "events") && n == 1) {
		p->kind = FS_EVENTS;
		p->parent = FS_ROOT;
	} else {
		fs_path_deep(p, n, FS_ROOT);
	}
	return 0;
}

/* ---- attributes ---------------------------------------------------- */

static void fs_stat_status(struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_blksize = 4096;
	fs_stat_owner(st);
	fs_ts_from_ms(&st->st_mtim, store_now_ms());
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

/* A contact folder: mode and mtime as the store keeps them. */
static void fs_stat_contact(struct stat *st, uint32_t mode, int64_t mtime_ns)
{
	int64_t sec = mtime_ns / 1000000000, ns = mtime_ns % 1000000000;

	if (ns < 0) {
		ns += 1000000000;
		sec--;
	}
	fs_stat_dir(st, 0);
	st->st_mode = S_IFDIR | (mode & 07777);
	st->st_mtim.tv_sec = (time_t)sec;
	st->st_mtim.tv_nsec = (long)ns;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

static int fs_contact_stat(const char *jid, struct stat *st)
{
	struct store_contact c;
	int rc;

	rc = store_contact_get(fs_cfg()->store, jid, &c);
	if (rc < 0)
		return rc;
	fs_stat_contact(st, c.mode, c.mtime_ns);
	return 0;
}

static int fs_getattr_fh(struct stat *st, struct fuse_file_info *fi)
{
	struct fs_fh *fh = fs_fh_get(fi);

	switch (fh->kind) {
	case FS_FH_OUT:
		return fs_out_getattr(NULL, st, fi);
	case FS_FH_IN:
		return fs_in_getattr(NULL, st, fi);
	case FS_FH_STATUS:
		fs_stat_status(st);
		return 0;
	case FS_FH_EVENTS:
		fs_events_stat(st);
		return 0;
	case FS_FH_DIR:
		break;
	}
	return -EBADF;
}

/* An open directory (fi->fh of opendir); see fs_readdir(). */
struct fs_dh {
	enum fs_fh_kind kind; /* FS_FH_DIR; first, like struct fs_fh */
	struct fs_path p;
	struct fs_dents d;
	int loaded;
};

/* A directory handle in fi, or NULL (fs_fh and fs_dh both start with
 * their kind). */
static const struct fs_path *fs_fi_dir(const struct fuse_file_info *fi)
{
	const struct fs_fh *fh = fi ? fs_fh_get(fi) : NULL;

	if (!fh || fh->kind != FS_FH_DIR)
		return NULL;
	return (const struct fs_path *)((const char *)fh +
					offsetof(struct fs_dh, p));
}

/* The request's path: parsed, or with nullpath_ok and a directory handle
 * the one saved at opendir. */
static int fs_req_path(const char *path, struct fuse_file_info *fi,
		       struct fs_path *p)
{
	const struct fs_path *dp = fs_fi_dir(fi);

	if (!path && dp) {
		*p = *dp;
		return 0;
	}
	return fs_path_parse(path, p);
}

/* An open regular file's handle in fi, or NULL. */
static struct fs_fh *fs_fi_file(struct fuse_file_info *fi)
{
	struct fs_fh *fh = fi ? fs_fh_get(fi) : NULL;

	return fh && fh->kind != FS_FH_DIR ? fh : NULL;
}

static int fs_getattr(const char *path, struct stat *st,
		      struct fuse_file_info *fi)
{
	struct fs_path p;
	int rc;

	if (fs_fi_file(fi))
		return fs_getattr_fh(st, fi);
	rc = fs_req_path(path, fi, &p);
	if (rc < 0)
		return rc;
	switch (p.kind) {
	case FS_ROOT:
	case FS_INBOX:
	case FS_OUTBOX:
		fs_stat_dir(st, fs_mount_ms);
		return 0;
	case FS_STATUS:
		fs_stat_status(st);
		return 0;
	case FS_EVENTS:
		fs_events_stat(st);
		return 0;
	case FS_OUT_DIR:
		return fs_contact_stat(p.dir, st);
	case FS_IN_DIR:
		rc = fs_in_sender_exists(p.dir);
		if (rc <= 0)
			return rc < 0 ? rc : -ENOENT;
		fs_stat_dir(st, fs_mount_ms);
		return 0;
	case FS_OUT_FILE:
		return fs_out_getattr(&p, st, NULL);
	case FS_IN_FILE:
		return fs_in_getattr(&p, st, NULL);
	case FS_DEEP:
		break;
	}
	return -ENOENT;
}

/* ---- directories --------------------------------------------------- */

/*
 * Listings. libfuse 3.14 drops the attributes of readdirplus entries that
 * are filled without offsets (it sends them with ino 0, "ignore"), so we
 * fill with offsets: the listing is loaded from the store once, at the
 * first readdir after opendir or rewinddir, kept in the directory handle,
 * and each readdir call continues at its offset (entry i is offset i + 3,
 * after "." and ".."). The attributes come from one stat() of each spool
 * or inbox file, done as the entries are sent.
 */
int fs_dents_add(struct fs_dents *d, const char *name, int64_t id,
		 int64_t ms)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct fs_dent *v = realloc(d->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n].name = strdup(name);
	if (!d->v[d->n].name)
		return -ENOMEM;
	d->v[d->n].id = id;
	d->v[d->n++].ms = ms;
	return 0;
}

void fs_dents_free(struct fs_dents *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].name);
	free(d->v);
	memset(d, 0, sizeof(*d));
}

static int fs_contact_collect(const struct store_contact *c, void *arg)
{
	struct fs_dents *d = arg;
	int rc = fs_dents_add(d, c->jid, 0, c->created_ms);

	if (rc == 0) {
		d->v[d->n - 1].mode = c->mode;
		d->v[d->n - 1].mtime_ns = c->mtime_ns;
	}
	return rc;
}

static int fs_dh_load(struct fs_dh *dh)
{
	struct fs_dents *d = &dh->d;
	int rc = 0;

	fs_dents_free(d);
	switch (dh->p.kind) {
	case FS_ROOT:
		rc = fs_dents_add(d, "inbox", 0, 0);
		if (rc == 0)
			rc = fs_dents_add(d, "outbox", 0, 0);
		if (rc == 0)
			rc = fs_dents_add(d, "status", 0, 0);
		if (rc == 0)
			rc = fs_dents_add(d, "events", 0, 0);
		break;
	case FS_OUTBOX:
		rc = store_contact_list(fs_cfg()->store, fs_contact_collect, d);
		break;
	case FS_INBOX:
		rc = fs_in_list_senders(d);
		break;
	case FS_OUT_DIR:
		rc = fs_out_list(dh->p.dir, d);
		break;
	case FS_IN_DIR:
		rc = fs_in_list(dh->p.dir, d);
		break;
	default:
		return -ENOTDIR;
	}
	if (rc < 0) {
		fs_dents_free(d);
		return rc;
	}
	dh->loaded = 1;
	return 0;
}

/* Attributes of entry e of dh's listing (plus != 0: the full stat). */
static int fs_dent_stat(const struct fs_dh *dh, const struct fs_dent *e,
			int plus, struct stat *st)
{
	enum fs_kind k = dh->p.kind;

	if (!plus) {
		memset(st, 0, sizeof(*st));
		st->st_mode = (k == FS_OUT_DIR || k == FS_IN_DIR ||
			       (k == FS_ROOT && (strcmp(e->name, "status") == 0 ||
						 strcmp(e->name, "events") == 0)))
				      ? S_IFREG
				      : S_IFDIR;
		return 0;
	}
	switch (k) {
	case FS_ROOT:
		if (strcmp(e->name, "status") == 0)
			fs_stat_status(st);
		else if (strcmp(e->name, "events") == 0)
			fs_events_stat(st);
		else
			fs_stat_dir(st, fs_mount_ms);
		return 0;
	case FS_OUTBOX:
		fs_stat_contact(st, e->mode, e->mtime_ns);
		return 0;
	case FS_INBOX:
		fs_stat_dir(st, fs_mount_ms);
		return 0;
	case FS_OUT_DIR:
		return fs_out_stat_id(e->id, st);
	case FS_IN_DIR:
		return fs_in_stat_id(e->id, e->ms, st);
	default:
		break;
	}
	return -ENOTDIR;
}

static int fs_opendir(const char *path, struct fuse_file_info *fi)
{
	struct fs_dh *dh;
	struct stat st;
	int rc;

	dh = calloc(1, sizeof(*dh));
	if (!dh)
		return -ENOMEM;
	dh->kind = FS_FH_DIR;
	rc = fs_path_parse(path, &dh->p);
	if (rc == 0)
		rc = fs_getattr(path, &st, NULL);
	if (rc == 0 && !S_ISDIR(st.st_mode))
		rc = -ENOTDIR;
	if (rc < 0) {
		free(dh);
		return rc;
	}
	fi->fh = (uint64_t)(uintptr_t)dh;
	return 0;
}

static int fs_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct fs_dh *dh = (struct fs_dh *)(uintptr_t)fi->fh;

	(void)path;
	if (dh) {
		fs_dents_free(&dh->d);
		free(dh);
	}
	fi->fh = 0;
	return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
		      off_t off, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	struct fs_dh *dh = (struct fs_dh *)(uintptr_t)fi->fh;
	int plus = (flags & FUSE_READDIR_PLUS) != 0;
	struct stat st;
	int rc;

	(void)path;
	if (!dh)
		return -EBADF;
	if (off == 0 || !dh->loaded) {
		rc = fs_dh_load(dh);
		if (rc < 0)
			return rc;
	}
	if (off < 1 && filler(buf, ".", NULL, 1, 0))
		return 0;
	if (off < 2 && filler(buf, "..", NULL, 2, 0))
		return 0;
	for (size_t i = off > 2 ? (size_t)off - 2 : 0; i < dh->d.n; i++) {
		if (fs_dent_stat(dh, &dh->d.v[i], plus, &st) < 0)
			continue; /* deleted meanwhile */
		if (filler(buf, dh->d.v[i].name, &st, (off_t)i + 3,
			   plus ? FUSE_FILL_DIR_PLUS : 0))
			break;
	}
	return 0;
}

static int fs_mkdir_contact(const char *name, mode_t mode)
{
	char norm[STORE_JID_MAX];
	int rc;

	if (jid_bare_normalize(name, norm, sizeof(norm)) < 0)
		return -EINVAL;
	/* The kernel looks the folder up under the name it asked for, so only
	 * a name already in normal form can work. */
	if (strcmp(norm, name) != 0)
		return -EINVAL;
	rc = store_contact_add(fs_cfg()->store, norm, STORE_CONTACT_USER);
	if (rc < 0)
		return rc;
	/* The folder gets mkdir's mode (a roster contact's too: the user
	 * just made it). Failing that, it is still there, mode 0755. */
	rc = store_contact_set_attr(fs_cfg()->store, norm, (int)(mode & 07777),
				    STORE_KEEP_MTIME);
	if (rc < 0)
		log_warnx("fs", "mode of outbox/%s: %s", norm, strerror(-rc));
	fs_wake();
	return 0;
}

static int fs_mkdir(const char *path, mode_t mode)
{
	struct fs_path p;
	int rc;

	rc = fs_path_parse(path, &p);
	if (rc < 0)
		return rc;
	switch (p.kind) {
	case FS_OUT_DIR:
		return fs_mkdir_contact(p.dir, mode);
	case FS_ROOT:
	case FS_INBOX:
	case FS_OUTBOX:
	case FS_STATUS:
	case FS_EVENTS:
		return -EEXIST;
	case FS_OUT_FILE:
		return -EPERM; /* contact folders are flat */
	case FS_IN_DIR:
	case FS_IN_FILE:
		return -EACCES;
	case FS_DEEP:
		break;
	}
	return p.parent == FS_ROOT ? -EACCES : -ENOENT;
}

static int fs_rmdir_sender(const char *sender)
{
	int rc = fs_in_sender_exists(sender);

	/* A sender folder exists while it holds files; once they are gone
	 * rmdir succeeds so `rm -r inbox/bob` works. */
	if (rc < 0)
		return rc;
	return rc > 0 ? -ENOTEMPTY : 0;
}

static int fs_rmdir(const char *path)
{
	struct fs_path p;
	int rc;

	rc = fs_path_parse(path, &p);
	if (rc < 0)
		return rc;
	switch (p.kind) {
	case FS_OUT_DIR:
		rc = store_contact_del(fs_cfg()->store, p.dir);
		if (rc < 0)
			return rc;
		fs_wake();
		return 0;
	case FS_IN_DIR:
		return fs_rmdir_sender(p.dir);
	case FS_ROOT:
	case FS_INBOX:
	case FS_OUTBOX:
		return -EBUSY;
	case FS_STATUS:
	case FS_EVENTS:
	case FS_OUT_FILE:
	case FS_IN_FILE:
		return -ENOTDIR;
	case FS_DEEP:
		break;
	}
	return -ENOENT;
}

/* ---- namespace changes on files ------------------------------------ */

static int fs_unlink(const char *path)
{
	struct fs_path p;
	int rc;

	rc = fs_path_parse(path, &p);
	if (rc < 0)
		return rc;
	switch (p.kind) {
	case FS_OUT_FILE:
		return fs_out_unlink(&p);
	case FS_IN_FILE:
		return fs_in_unlink(&p);
	case FS_STATUS:
	case FS_EVENTS:
		return -EACCES;
	case FS_DEEP:
		return -ENOENT;
	default:
		break;
	}
	return -EISDIR;
}

static int fs_rename(const char *from, const char *to, unsigned int flags)
{
	struct fs_path a, b;
	int rc;

	if (flags & ~(unsigned)RENAME_NOREPLACE)
		return -EINVAL; /* RENAME_EXCHANGE, RENAME_WHITEOUT */
	rc = fs_path_parse(from, &a);
	if (rc == 0)
		rc = fs_path_parse(to, &b);
	if (rc < 0)
		return rc;
	switch (a.kind) {
	case FS_OUT_FILE:
		if (b.kind == FS_DEEP && b.parent != FS_ROOT)
			return -ENOENT;
		if (b.kind != FS_OUT_FILE)
			return -EXDEV;
		return fs_out_rename(&a, &b, flags);
	case FS_IN_FILE:
		if (b.kind != FS_IN_FILE || strcmp(a.dir, b.dir) != 0)
			return -EXDEV; /* mv falls back to copy + unlink */
		return fs_in_rename(&a, &b, flags);
	case FS_OUT_DIR:
	case FS_IN_DIR:
		return -EXDEV;
	case FS_DEEP:
		return -ENOENT;
	default:
		break;
	}
	return -EPERM;
}

/* Outbox and inbox hold regular files only. */
static int fs_symlink(const char *target, const char *path)
{
	(void)target;
	(void)path;
	return -EPERM;
}

static int fs_link(const char *from, const char *to)
{
	(void)from;
	(void)to;
	return -EPERM;
}

static int fs_mknod(const char *path, mode_t mode, dev_t rdev)
{
	(void)path;
	(void)mode;
	(void)rdev;
	return -EPERM;
}

/* ---- attribute changes --------------------------------------------- */

static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct fs_path p;
	int rc;

	if (fs_fi_file(fi))
		return fs_fh_get(fi)->kind == FS_FH_OUT
			       ? fs_out_chmod(NULL, mode, fi)
			       : -EPERM;
	rc = fs_req_path(path, fi, &p);
	if (rc < 0)
		return rc;
	switch (p.kind) {
	case FS_OUT_FILE:
		return fs_out_chmod(&p, mode, NULL);
	case FS_OUT_DIR:
		return store_contact_set_attr(fs_cfg()->store, p.dir,
					      (int)(mode & 07777),
					      STORE_KEEP_MTIME);
	case FS_DEEP:
		return -ENOENT;
	default:
		break;
	}
	return -EPERM;
}

static int fs_chown(const char *path, uid_t uid, gid_t gid,
		    struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	/* Files belong to the mounting user; only a no-op is allowed. */
	if (uid != (uid_t)-1 && uid != fs_uid)
		return -EPERM;
	if (gid != (gid_t)-1 && gid != fs_gid)
		return -EPERM;
	return 0;
}

static int fs_truncate(const char *path, off_t size,
		       struct fuse_file_info *fi)
{
	struct fs_path p;
	int rc;

	if (size < 0)
		return -EINVAL;
	if (fs_fi_file(fi))
		return fs_fh_get(fi)->kind == FS_FH_OUT
			       ? fs_out_truncate(NULL, size, fi)
			       : -EACCES;
	rc = fs_req_path(path, fi, &p);
	if (rc < 0)
		return rc;
	switch (p.kind) {
	case FS_OUT_FILE:
		return fs_out_truncate(&p, size, NULL);
	case FS_IN_FILE:
	case FS_STATUS:
	case FS_EVENTS:
		return -EACCES;
	case FS_DEEP:
		return -ENOENT;
	default:
		break;
	}
	return -EISDIR;
}

/* utime of a contact folder: its mtime (atime is not kept). */
static int fs_utimens_dir(const char *jid, const struct timespec tv[2])
{
	struct timespec t = tv[1];
	int64_t ns = STORE_KEEP_MTIME;

	if (t.tv_nsec == UTIME_NOW)
		clock_gettime(CLOCK_REALTIME, &t);
	if (t.tv_nsec != UTIME_OMIT) {
		if (t.tv_nsec < 0 || t.tv_nsec > 999999999)
			return -EINVAL;
		if (t.tv_sec > INT64_MAX / 1000000000 - 1 ||
		    t.tv_sec < INT64_MIN / 1000000000 + 1)
			return -EOVERFLOW;
		ns = (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
	}
	return store_contact_set_attr(fs_cfg()->store, jid, STORE_KEEP_MODE,
				      ns);
}

static int fs_utimens(const char *path, const struct timespec tv[2],
		      struct fuse_file_info *fi)
{
	struct fs_path p;
	int rc;

	if (fs_fi_file(fi))
		return fs_fh_get(fi)->kind == FS_FH_OUT
			       ? fs_out_utimens(NULL, tv, fi)
			       : -EPERM;
	rc = fs_req_path(path, fi, &p);
	if (rc < 0)
		return rc;
	switch (p.kind) {
	case FS_OUT_FILE:
		return fs_out_utimens(&p, tv, NULL);
	case FS_OUT_DIR:
		return fs_utimens_dir(p.dir, tv);
	case FS_DEEP:
		return -ENOENT;
	default:
		break;
	}
	return -EPERM;
}

/* ---- file I/O dispatch --------------------------------------------- */

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	struct fs_path p;
	int rc;

	rc = fs_path_parse(path, &p);
	if (rc < 0)
		return rc;
	switch (p.kind) {
	case FS_OUT_FILE:
		return fs_out_open(&p, fi);
	case FS_IN_FILE:
		return fs_in_open(&p, fi);
	case FS_STATUS:
		if ((fi->flags & O_ACCMODE) != O_RDONLY)
			return -EACCES;
		return fs_status_open(fi);
	case FS_EVENTS:
		return fs_events_open(fi);
	case FS_DEEP:
		return -ENOENT;
	default:
		break;
	}
	return -EISDIR;
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct fs_path p;
	int rc;

	rc = fs_path_parse(path, &p);
	if (rc < 0)
		return rc;
	if (!S_ISREG(mode) && (mode & S_IFMT) != 0)
		return -EPERM;
	switch (p.kind) {
	case FS_OUT_FILE:
		return fs_out_create(&p, mode, fi);
	case FS_ROOT:
	case FS_INBOX:
	case FS_OUTBOX:
	case FS_STATUS:
	case FS_EVENTS:
		return -EEXIST;
	case FS_DEEP:
		return p.parent == FS_ROOT ? -EACCES : -ENOENT;
	default:
		break;
	}
	return -EACCES;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct fs_fh *fh = fs_fh_get(fi);

	(void)path;
	switch (fh->kind) {
	case FS_FH_OUT:
	case FS_FH_IN:
		return fs_out_read(fh, buf, size, off);
	case FS_FH_STATUS:
		return fs_status_read(fh, buf, size, off);
	case FS_FH_EVENTS:
		return fs_events_read(fh, buf, size, off, fi->flags);
	case FS_FH_DIR:
		break;
	}
	return -EISDIR;
}

static int fs_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs_fh *fh = fs_fh_get(fi);

	(void)path;
	if (fh->kind != FS_FH_OUT)
		return -EBADF;
	return fs_out_write(fh, buf, size, off);
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
	struct fs_fh *fh = fs_fh_get(fi);

	(void)path;
	fi->fh = 0;
	if (!fh)
		return 0;
	if (fh->kind == FS_FH_OUT)
		return fs_out_release(fh);
	if (fh->kind == FS_FH_EVENTS)
		fs_events_forget(fh);
	if (fh->fd >= 0)
		close(fh->fd);
	free(fh->buf);
	free(fh);
	return 0;
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct fs_fh *fh = fs_fh_get(fi);

	(void)path;
	if (fh->kind != FS_FH_OUT)
		return 0;
	return fs_out_fsync(fh, datasync);
}

static int fs_fallocate(const char *path, int mode, off_t off, off_t len,
			struct fuse_file_info *fi)
{
	struct fs_fh *fh = fs_fh_get(fi);

	(void)path;
	if (!fh || fh->kind != FS_FH_OUT)
		return -EBADF;
	return fs_out_fallocate(fh, mode, off, len);
}

static int fs_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	if (statvfs(store_data_dir(fs_cfg()->store), sv) < 0)
		return -errno;
	sv->f_namemax = FS_NAME_MAX;
	return 0;
}

/* ---- extended attributes ------------------------------------------- */

static int fs_getxattr(const char *path, const char *name, char *value,
		       size_t size)
{
	struct fs_path p;
	char link[256];
	int rc;

	/* The kernel asks for security.capability before writes; answer
	 * anything not ours without touching the store. */
	if (strncmp(name, FS_XATTR_PREFIX, strlen(FS_XATTR_PREFIX)) != 0)
		return -ENODATA;
	rc = fs_path_parse(path, &p);
	if (rc < 0)
		return rc;
	switch (p.kind) {
	case FS_ROOT:
		if (strcmp(name, FS_XATTR_LINK) != 0)
			return -ENODATA;
		store_get_link(fs_cfg()->store, link, sizeof(link));
		return fs_xattr_reply(link, strlen(link), value, size);
	case FS_OUT_FILE:
		return fs_out_getxattr(&p, name, value, size);
	case FS_IN_FILE:
		return fs_in_getxattr(&p, name, value, size);
	default:
		break;
	}
	return -ENODATA;
}

static int fs_listxattr(const char *path, char *list, size_t size)
{
	static const char root[] = FS_XATTR_LINK;
	struct fs_path p;
	int rc;

	rc = fs_path_parse(path, &p);
	if (rc < 0)
		return rc;
	switch (p.kind) {
	case FS_ROOT:
		return fs_xattr_reply(root, sizeof(root), list, size);
	case FS_OUT_FILE:
		return fs_out_listxattr(&p, list, size);
	case FS_IN_FILE:
		return fs_in_listxattr(&p, list, size);
	default:
		break;
	}
	return 0;
}

static int fs_setxattr(const char *path, const char *name, const char *value,
		       size_t size, int flags)
{
	(void)path;
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	return -ENOTSUP;
}

static int fs_removexattr(const char *path, const char *name)
{
	(void)path;
	(void)name;
	return -ENOTSUP;
}

/* ---- init / destroy ------------------------------------------------ */

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->use_ino = 0;
	cfg->readdir_ino = 0;
	cfg->nullpath_ok = 1;
	cfg->hard_remove = 1;
	cfg->kernel_cache = 0;
	cfg->auto_cache = 0;
	cfg->direct_io = 0;
	cfg->entry_timeout = 1.0;
	cfg->attr_timeout = 1.0;
	cfg->negative_timeout = 0.0;

	conn->max_write = 1u << 20;
	/* max_readahead arrives as the kernel's maximum; only raise it. */
	if (conn->max_readahead < (1u << 20))
		conn->max_readahead = 1u << 20;
#ifdef FUSE_CAP_BIG_WRITES
	if (conn->capable & FUSE_CAP_BIG_WRITES)
		conn->want |= FUSE_CAP_BIG_WRITES;
#endif
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/* "auto" switches to plain readdir after the first buffer, and then
	 * `ls -l` looks every file up one by one. */
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;

	fs_uid = getuid();
	fs_gid = getgid();
	fs_mount_ms = store_now_ms();
	return fuse_get_context()->private_data;
}

static void fs_destroy(void *private_data)
{
	(void)private_data;
	fs_out_writers_clear();
	fs_events_free_all();
}

static const struct fuse_operations fs_ops = {
	.init = fs_init,
	.destroy = fs_destroy,
	.getattr = fs_getattr,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.releasedir = fs_releasedir,
	.mkdir = fs_mkdir,
	.rmdir = fs_rmdir,
	.unlink = fs_unlink,
	.rename = fs_rename,
	.symlink = fs_symlink,
	.link = fs_link,
	.mknod = fs_mknod,
	.chmod = fs_chmod,
	.chown = fs_chown,
	.truncate = fs_truncate,
	.utimens = fs_utimens,
	.open = fs_open,
	.create = fs_create,
	.read = fs_read,
	.write = fs_write,
	.release = fs_release,
	.fsync = fs_fsync,
	.fallocate = fs_fallocate,
	.statfs = fs_statfs,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.setxattr = fs_setxattr,
	.removexattr = fs_removexattr,
};

const struct fuse_operations *fs_operations(void)
{
	return &fs_ops;
}
