/*
 * fs_events.c: the read-only /events file, a stream of JSON lines (one per
 * transfer state change, store_events_read()) for `tail -f` and
 * `while read`.
 *
 * Design. Two kinds of readers must both work:
 *  - GNU tail -f: on FUSE (a "remote" file system to tail) it polls fstat
 *    every second and, when st_size grew, reads exactly the new bytes at
 *    its offset. At start it reads 8 KiB blocks backwards from st_size
 *    until it has its last lines; with too few lines it seeks to 0 and
 *    prints the file from there.
 *  - cat, `while read` (bash reads a chunk and lseek()s back to the end of
 *    the line), Python readline(): they start at offset 0 and expect reads
 *    that block until there is something to return.
 * So st_size is the stream's length plus FS_EVENTS_BASE, mtime the time of
 * the last event, and the file is opened direct_io (the kernel neither
 * caches it nor stops at st_size). Each handle maps its file offsets to
 * stream offsets with a delta (stream = file + delta), chosen at its first
 * read:
 *  - first read at offset 0: a streaming reader; it starts at the end of
 *    the stream as of open(), i.e. sees only new events, and blocks at the
 *    end;
 *  - first read elsewhere: the reader positioned itself from st_size;
 *    delta = -FS_EVENTS_BASE, offsets are the stream's.
 * FS_EVENTS_BASE keeps st_size above tail's block size even with no
 * events, so a reader that works from st_size never starts at offset 0,
 * and st_size is never 0 (tail would read a 0-size file like a pipe).
 *
 * Below the oldest line the store still holds (the base, or lines that
 * fell out of the ring) there is nothing to return. A read there that lies
 * wholly below everything the handle has read so far is tail scanning
 * backwards: it gets spaces (no newline, so no line is counted) and ends
 * up at offset 0 printing "the whole file". Any other read there (that
 * print from 0, a slow reader moving forward) skips to the oldest line:
 * the handle's delta moves so the offsets the kernel tracks stay
 * consistent with the bytes returned (bash's lseek back keeps working).
 *
 * A read at the end of the stream blocks for streaming readers, and for
 * others whose offset is at or past st_size (they seeked to the end to
 * follow). A reader below st_size at the end (tail after its delta moved)
 * gets 0, EOF, as a plain file would give it. O_NONBLOCK gets -EAGAIN.
 * A blocked read holds a FUSE worker thread: it waits on the store's
 * condition variable in FS_EVENTS_STEP_MS steps and returns -EINTR when
 * the request was interrupted (the reader was killed) or the session
 * ends. At most events_readers (fs_config; default FS_EVENTS_READERS)
 * reads block at once; more get -EAGAIN, so readers can never take every
 * worker thread (libfuse needs a free one even to deliver the interrupt).
 *
 * Locking: fs_ev_lock (a leaf) guards the handles' mapping and the count
 * of blocked reads; it is never held while calling the store.
 */
#include "fs/fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <fuse_lowlevel.h>

#include "util/log.h"

#define FS_EVENTS_BASE (64u << 10)
#define FS_EVENTS_READERS 8
#define FS_EVENTS_STEP_MS 250

enum { FS_EV_FRESH = 0, FS_EV_STREAM, FS_EV_GLOBAL };

static pthread_mutex_t fs_ev_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned fs_ev_blocked; /* protected by fs_ev_lock */
static int fs_ev_warned;       /* protected by fs_ev_lock */

/* A handle's mapping as one read sees it. */
struct fs_ev_view {
	int mode;
	int64_t g;  /* stream offset of the read (may be < 0: the base) */
	int64_t lo; /* lowest file offset read so far, -1: none */
};

void fs_events_stat(struct stat *st)
{
	int64_t last_ms = 0;
	uint64_t end = store_events_end(fs_cfg()->store, &last_ms);

	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_blksize = 4096;
	st->st_size = (off_t)(FS_EVENTS_BASE + end);
	st->st_blocks = 0;
	fs_stat_owner(st);
	fs_ts_from_ms(&st->st_mtim, last_ms ? last_ms : fs_mount_time_ms());
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

static struct fs_fh *fs_ev_open; /* protected by fs_ev_lock */

void fs_events_forget(struct fs_fh *fh)
{
	pthread_mutex_lock(&fs_ev_lock);
	if (fh->ev_prev)
		fh->ev_prev->ev_next = fh->ev_next;
	else if (fs_ev_open == fh)
		fs_ev_open = fh->ev_next;
	if (fh->ev_next)
		fh->ev_next->ev_prev = fh->ev_prev;
	fh->ev_next = fh->ev_prev = NULL;
	pthread_mutex_unlock(&fs_ev_lock);
}

void fs_events_free_all(void)
{
	pthread_mutex_lock(&fs_ev_lock);
	while (fs_ev_open) {
		struct fs_fh *fh = fs_ev_open;

		fs_ev_open = fh->ev_next;
		free(fh);
	}
	pthread_mutex_unlock(&fs_ev_lock);
}

int fs_events_open(struct fuse_file_info *fi)
{
	struct fs_fh *fh;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return -EACCES;
	fh = calloc(1, sizeof(*fh));
	if (!fh)
		return -ENOMEM;
	fh->kind = FS_FH_EVENTS;
	fh->fd = -1;
	fh->ev_open_end = store_events_end(fs_cfg()->store, NULL);
	fh->ev_mode = FS_EV_FRESH;
	pthread_mutex_lock(&fs_ev_lock);
	fh->ev_next = fs_ev_open;
	if (fs_ev_open)
		fs_ev_open->ev_prev = fh;
	fs_ev_open = fh;
	pthread_mutex_unlock(&fs_ev_lock);
	fi->fh = (uint64_t)(uintptr_t)fh;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	return 0;
}

/* The mapping for a read at file offset off; the first read decides the
 * mode. */
static void fs_ev_map(struct fs_fh *fh, off_t off, struct fs_ev_view *v)
{
	pthread_mutex_lock(&fs_ev_lock);
	if (fh->ev_mode == FS_EV_FRESH) {
		fh->ev_mode = off == 0 ? FS_EV_STREAM : FS_EV_GLOBAL;
		fh->ev_delta = off == 0 ? (int64_t)fh->ev_open_end
					: -(int64_t)FS_EVENTS_BASE;
		fh->ev_lo = -1;
	}
	v->mode = fh->ev_mode;
	v->g = (int64_t)off + fh->ev_delta;
	v->lo = fh->ev_lo;
	pthread_mutex_unlock(&fs_ev_lock);
}

/* n bytes were returned for file offset off; they came from stream
 * offset at (anchor != 0: move the delta to match). */
static void fs_ev_done(struct fs_fh *fh, off_t off, int n, int anchor,
		       uint64_t at)
{
	pthread_mutex_lock(&fs_ev_lock);
	if (anchor)
		fh->ev_delta = (int64_t)at - (int64_t)off;
	if (n > 0 && (fh->ev_lo < 0 || off < fh->ev_lo))
		fh->ev_lo = off;
	pthread_mutex_unlock(&fs_ev_lock);
}

/* At the end of the stream (end): wait for more, or is this EOF? */
static int fs_ev_may_block(const struct fs_ev_view *v, off_t off,
			   uint64_t end)
{
	return v->mode == FS_EV_STREAM ||
	       (uint64_t)off >= FS_EVENTS_BASE + end;
}

static int fs_ev_slot_get(void)
{
	unsigned max = fs_cfg()->events_readers;
	int ok;

	if (max == 0)
		max = FS_EVENTS_READERS;
	pthread_mutex_lock(&fs_ev_lock);
	ok = fs_ev_blocked < max;
	if (ok)
		fs_ev_blocked++;
	if (!ok && !fs_ev_warned) {
		fs_ev_warned = 1; /* once per mount is enough */
		log_warnx("fs", "more than %u blocking readers of /events; "
			  "refusing more with EAGAIN", max);
	}
	pthread_mutex_unlock(&fs_ev_lock);
	return ok;
}

static void fs_ev_slot_put(void)
{
	pthread_mutex_lock(&fs_ev_lock);
	fs_ev_blocked--;
	pthread_mutex_unlock(&fs_ev_lock);
}

static int fs_ev_session_over(void)
{
	struct fuse *f = fuse_get_context()->fuse;

	return f && fuse_session_exited(fuse_get_session(f));
}

/* Wait in FS_EVENTS_STEP_MS steps until bytes arrive at g or the request
 * is interrupted. Bytes read or -errno. */
static int fs_ev_wait(struct store *st, uint64_t g, char *buf, size_t size,
		      uint64_t *next)
{
	int n;

	if (!fs_ev_slot_get())
		return -EAGAIN;
	for (;;) {
		n = store_events_read(st, g, buf, size, FS_EVENTS_STEP_MS,
				      next);
		if (n != 0)
			break;
		if (fuse_interrupted() || fs_ev_session_over()) {
			n = -EINTR;
			break;
		}
	}
	fs_ev_slot_put();
	return n;
}

int fs_events_read(struct fs_fh *fh, char *buf, size_t size, off_t off,
		   int flags)
{
	struct store *st = fs_cfg()->store;
	struct fs_ev_view v;
	uint64_t next = 0, at;
	int n;

	if (off < 0)
		return -EINVAL;
	if (size == 0)
		return 0;
	if (size > INT32_MAX)
		size = INT32_MAX;
	fs_ev_map(fh, off, &v);
	n = store_events_read(st, v.g < 0 ? 0 : (uint64_t)v.g, buf, size, 0,
			      &next);
	at = next - (uint64_t)n;
	if ((int64_t)at > v.g && v.lo >= 0 &&
	    (uint64_t)off + size <= (uint64_t)v.lo) {
		/* tail scanning backwards past the oldest line */
		if ((uint64_t)((int64_t)at - v.g) < size)
			size = (size_t)((int64_t)at - v.g);
		memset(buf, ' ', size);
		fs_ev_done(fh, off, (int)size, 0, 0);
		return (int)size;
	}
	if (n == 0) {
		if (!fs_ev_may_block(&v, off, next))
			return 0;
		if (flags & O_NONBLOCK)
			return -EAGAIN;
		n = fs_ev_wait(st, next, buf, size, &next);
		if (n <= 0)
			return n;
		at = next - (uint64_t)n;
	}
	fs_ev_done(fh, off, n, (int64_t)at != v.g, at);
	return n;
}
