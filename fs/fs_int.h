/*
 * fs_int.h: declarations shared by the files of the fs module only.
 *
 *   fs.c         operations table, init, path parsing, directories, xattrs,
 *                rename/unlink dispatch
 *   fs_outbox.c  outbox files: spool fds, open-writer table, store calls
 *   fs_inbox.c   inbox files: read-only opens, rename within a sender
 *   fs_status.c  the /status text
 *   fs_events.c  the /events stream
 *
 * Every FUSE handler returns 0 or -errno. Open files keep a struct fs_fh in
 * fi->fh. libfuse runs with nullpath_ok, so operations on an open file get
 * path == NULL and must work from the handle alone.
 */
#ifndef XFS_FS_INT_H
#define XFS_FS_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h> /* RENAME_NOREPLACE */
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <fuse.h>

#include "fs/fs.h"
#include "store/store.h"

#define FS_NAME_MAX 255 /* bytes of one path component */

/* What a path names. */
enum fs_kind {
	FS_ROOT = 1,
	FS_STATUS,
	FS_EVENTS,   /* /events */
	FS_INBOX,    /* /inbox */
	FS_OUTBOX,   /* /outbox */
	FS_IN_DIR,   /* /inbox/<sender> */
	FS_OUT_DIR,  /* /outbox/<jid> */
	FS_IN_FILE,  /* /inbox/<sender>/<name> */
	FS_OUT_FILE, /* /outbox/<jid>/<name> */
	FS_DEEP,     /* anything below a file or an unknown top-level name */
};

struct fs_path {
	enum fs_kind kind;
	enum fs_kind parent;       /* kind of the containing folder */
	char dir[STORE_JID_MAX];   /* contact or sender, for *_DIR and *_FILE */
	char name[STORE_NAME_MAX]; /* file name, for *_FILE */
};

/* Split path. Unknown names (below /, below a file) get kind FS_DEEP;
 * -ENAMETOOLONG for a component over 255 bytes. */
int fs_path_parse(const char *path, struct fs_path *p);

enum fs_fh_kind {
	FS_FH_OUT = 1,
	FS_FH_IN,
	FS_FH_STATUS,
	FS_FH_EVENTS,
	FS_FH_DIR, /* struct fs_dh in fs.c, which starts with this kind */
};

/* One open file (fi->fh). */
struct fs_fh {
	enum fs_fh_kind kind;
	int fd;          /* spool or inbox file; -1 for status */
	int64_t id;      /* store row id */
	int writer;      /* counted in the open-writer table */
	atomic_int dirty; /* store_out_touch() done through this handle */
	int64_t mtime_ms; /* inbox: the time shown, 0 = the file's own */
	char *buf;       /* status text (owned) */
	size_t len;
	/* events: stream offset = file offset + ev_delta (fs_events.c) */
	uint64_t ev_open_end; /* stream end at open */
	int ev_mode;          /* protected by fs_ev_lock in fs_events.c */
	int64_t ev_delta;     /* protected by fs_ev_lock */
	int64_t ev_lo;        /* lowest offset read, -1: none; fs_ev_lock */
	struct fs_fh *ev_next, *ev_prev; /* open events handles; fs_ev_lock */
	/* outbox: MD5 while written (fs_hash.c); protected by fs_hash_lock
	 * in fs_outbox.c */
	struct fs_hash *hash;
	uint64_t hash_pos;    /* next offset the sequence expects */
	int hash_dead;        /* not sequential: hash after close instead */
	unsigned hash_epoch;  /* writer opens of the row when hashing began */
	uint64_t gen;         /* row gen after this handle's touch */
	/* every open outbox handle, so those the kernel never released
	 * (unmounted while open) are freed; fs_writers_lock */
	struct fs_fh *out_next, *out_prev;
};

/* fs_hash.c: a follower thread hashing [0, written) of a file. */
struct fs_hash;
struct fs_hash *fs_hash_start(int fd); /* NULL on failure */
void fs_hash_advance(struct fs_hash *h, uint64_t written);
/* Stop, wait, and give the MD5 of exactly size bytes; frees h. */
int fs_hash_finish(struct fs_hash *h, uint64_t size, char hex[33]);
void fs_hash_abort(struct fs_hash *h); /* NULL is fine; frees h */

static inline struct fs_fh *fs_fh_get(const struct fuse_file_info *fi)
{
	return (struct fs_fh *)(uintptr_t)fi->fh;
}

/* A directory listing, loaded once per opendir/rewinddir (fs.c). */
struct fs_dent {
	char *name;
	int64_t id; /* row id of a file */
	int64_t ms; /* mtime_ms of an inbox file */
	uint32_t mode;    /* contact folder: permission bits */
	int64_t mtime_ns; /* contact folder: mtime */
};

struct fs_dents {
	struct fs_dent *v;
	size_t n, cap;
};

/* fs.c */
int fs_dents_add(struct fs_dents *d, const char *name, int64_t id,
		 int64_t ms);
void fs_dents_free(struct fs_dents *d);

struct fs_config *fs_cfg(void);
void fs_wake(void);
int64_t fs_ready_at(void); /* now + settle_ms */
void fs_stat_owner(struct stat *st);
void fs_stat_dir(struct stat *st, int64_t mtime_ms);
void fs_ts_from_ms(struct timespec *ts, int64_t ms);
int64_t fs_mount_time_ms(void);

/* fs_outbox.c */
int fs_out_list(const char *contact, struct fs_dents *d);
int fs_out_getattr(const struct fs_path *p, struct stat *st,
		   struct fuse_file_info *fi);
int fs_out_stat_id(int64_t id, struct stat *st);
int fs_out_create(const struct fs_path *p, mode_t mode,
		  struct fuse_file_info *fi);
int fs_out_open(const struct fs_path *p, struct fuse_file_info *fi);
/* pread on fh->fd; used for inbox handles too. */
int fs_out_read(struct fs_fh *fh, char *buf, size_t size, off_t off);
int fs_out_write(struct fs_fh *fh, const char *buf, size_t size, off_t off);
int fs_out_release(struct fs_fh *fh);
int fs_out_fsync(struct fs_fh *fh, int datasync);
int fs_out_truncate(const struct fs_path *p, off_t size,
		    struct fuse_file_info *fi);
int fs_out_fallocate(struct fs_fh *fh, int mode, off_t off, off_t len);
int fs_out_chmod(const struct fs_path *p, mode_t mode,
		 struct fuse_file_info *fi);
int fs_out_utimens(const struct fs_path *p, const struct timespec tv[2],
		   struct fuse_file_info *fi);
int fs_out_rename(const struct fs_path *from, const struct fs_path *to,
		  unsigned int flags);
int fs_out_unlink(const struct fs_path *p);
int fs_out_getxattr(const struct fs_path *p, const char *name, char *value,
		    size_t size);
int fs_out_listxattr(const struct fs_path *p, char *list, size_t size);
void fs_out_writers_clear(void);

/* fs_inbox.c */
int fs_in_getattr(const struct fs_path *p, struct stat *st,
		  struct fuse_file_info *fi);
int fs_in_open(const struct fs_path *p, struct fuse_file_info *fi);
int fs_in_rename(const struct fs_path *from, const struct fs_path *to,
		 unsigned int flags);
int fs_in_unlink(const struct fs_path *p);
int fs_in_getxattr(const struct fs_path *p, const char *name, char *value,
		   size_t size);
int fs_in_listxattr(const struct fs_path *p, char *list, size_t size);
int fs_in_sender_exists(const char *sender);
int fs_in_list(const char *sender, struct fs_dents *d);
int fs_in_list_senders(struct fs_dents *d);
int fs_in_stat_id(int64_t id, int64_t mtime_ms, struct stat *st);

/* fs_status.c */
int fs_status_open(struct fuse_file_info *fi);
int fs_status_read(struct fs_fh *fh, char *buf, size_t size, off_t off);

/* fs_events.c */
void fs_events_stat(struct stat *st);
int fs_events_open(struct fuse_file_info *fi);
/* Forget an events handle at release; free those still open at unmount
 * (a reader blocked at unmount never gets its release). */
void fs_events_forget(struct fs_fh *fh);
void fs_events_free_all(void);
/* flags: the request's file flags (O_NONBLOCK as set by fcntl). */
int fs_events_read(struct fs_fh *fh, char *buf, size_t size, off_t off,
		   int flags);

/* Copy value (len bytes) out as an xattr reply: size 0 asks for the length;
 * -ERANGE when it does not fit. */
int fs_xattr_reply(const char *value, size_t len, char *buf, size_t size);

#endif
