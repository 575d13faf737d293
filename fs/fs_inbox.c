/*
 * fs_inbox.c: inbox/<sender>/<name>, the files received completely.
 *
 * Design. A sender folder exists while the store has a received row for
 * that sender; a file is a received row and its file under the data
 * directory's inbox/. Files are read-only (mode 0644, mtime the store's
 * mtime_ms: the offered date or the arrival time). The user may read them,
 * rename them within the sender's folder (store_in_rename, POSIX replace)
 * and delete them; everything else is EACCES, and a move to another folder
 * is EXDEV so `mv` copies the file out and deletes it here.
 */
#include "fs/fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct store *fs_st(void)
{
	return fs_cfg()->store;
}

static void fs_in_fix_stat(struct stat *st, int64_t mtime_ms)
{
	st->st_mode = S_IFREG | 0644;
	st->st_nlink = 1;
	st->st_ino = 0;
	st->st_dev = 0;
	fs_stat_owner(st);
	if (mtime_ms > 0)
		fs_ts_from_ms(&st->st_mtim, mtime_ms);
}

int fs_in_stat_id(int64_t id, int64_t mtime_ms, struct stat *st)
{
	char path[PATH_MAX];

	if (stat(store_inbox_path(fs_st(), id, path, sizeof(path)), st) < 0)
		return -errno;
	fs_in_fix_stat(st, mtime_ms);
	return 0;
}

static int fs_in_row(const struct fs_path *p, struct store_in *in)
{
	return store_in_get(fs_st(), p->dir, p->name, in);
}

int fs_in_getattr(const struct fs_path *p, struct stat *st,
		  struct fuse_file_info *fi)
{
	struct store_in in;
	int rc;

	if (fi) {
		struct fs_fh *fh = fs_fh_get(fi);

		if (fstat(fh->fd, st) < 0)
			return -errno;
		fs_in_fix_stat(st, fh->mtime_ms);
		return 0;
	}
	rc = fs_in_row(p, &in);
	if (rc < 0)
		return rc;
	return fs_in_stat_id(in.id, in.mtime_ms, st);
}

int fs_in_open(const struct fs_path *p, struct fuse_file_info *fi)
{
	struct store_in in;
	struct fs_fh *fh;
	char path[PATH_MAX];
	int fd, rc;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return -EACCES;
	rc = fs_in_row(p, &in);
	if (rc < 0)
		return rc;
	fd = open(store_inbox_path(fs_st(), in.id, path, sizeof(path)),
		  O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	fh = calloc(1, sizeof(*fh));
	if (!fh) {
		close(fd);
		return -ENOMEM;
	}
	fh->kind = FS_FH_IN;
	fh->fd = fd;
	fh->id = in.id;
	fh->mtime_ms = in.mtime_ms;
	fi->fh = (uint64_t)(uintptr_t)fh;
	/* A received file never changes. A name that comes back (delete,
	 * then a new arrival; or a rename over it) is a new FUSE node with
	 * its own page cache, so keeping the cache across opens is safe and
	 * makes warm reads run at page-cache speed. */
	fi->keep_cache = 1;
	return 0;
}

int fs_in_rename(const struct fs_path *from, const struct fs_path *to,
		 unsigned int flags)
{
	struct store_in in, t;
	int rc;

	rc = fs_in_row(from, &in);
	if (rc < 0)
		return rc;
	rc = fs_in_row(to, &t);
	if (rc == 0 && t.id == in.id)
		return 0;
	if (rc == 0 && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	return store_in_rename(fs_st(), in.id, to->name);
}

int fs_in_unlink(const struct fs_path *p)
{
	struct store_in in;
	int rc;

	rc = fs_in_row(p, &in);
	if (rc < 0)
		return rc;
	return store_in_delete(fs_st(), in.id);
}

static const char fs_in_xattrs[] = "user.xmppfs.state\0"
				   "user.xmppfs.peer\0"
				   "user.xmppfs.method";

int fs_in_getxattr(const struct fs_path *p, const char *name, char *value,
		   size_t size)
{
	struct store_in in;
	const char *v;
	int rc;

	rc = fs_in_row(p, &in);
	if (rc < 0)
		return rc;
	if (strcmp(name, "user.xmppfs.state") == 0)
		v = store_state_name(in.state);
	else if (strcmp(name, "user.xmppfs.peer") == 0)
		v = in.peer;
	else if (strcmp(name, "user.xmppfs.method") == 0)
		v = in.method;
	else
		return -ENODATA;
	return fs_xattr_reply(v, strlen(v), value, size);
}

int fs_in_listxattr(const struct fs_path *p, char *list, size_t size)
{
	struct store_in in;
	int rc;

	rc = fs_in_row(p, &in);
	if (rc < 0)
		return rc;
	return fs_xattr_reply(fs_in_xattrs, sizeof(fs_in_xattrs), list, size);
}

/* ---- listing ------------------------------------------------------- */

static int fs_in_first(const struct store_in *in, void *arg)
{
	(void)in;
	*(int *)arg = 1;
	return 1; /* one is enough */
}

int fs_in_sender_exists(const char *sender)
{
	int found = 0;
	int rc = store_in_list(fs_st(), sender, fs_in_first, &found);

	if (rc < 0 && !found)
		return rc == -ENOENT ? 0 : rc;
	return found;
}

static int fs_in_collect(const struct store_in *in, void *arg)
{
	return fs_dents_add(arg, in->name, in->id, in->mtime_ms);
}

static int fs_in_collect_sender(const struct store_in *in, void *arg)
{
	return fs_dents_add(arg, in->sender, 0, 0);
}

int fs_in_list_senders(struct fs_dents *d)
{
	return store_in_senders(fs_st(), fs_in_collect_sender, d);
}

int fs_in_list(const char *sender, struct fs_dents *d)
{
	return store_in_list(fs_st(), sender, fs_in_collect, d);
}
