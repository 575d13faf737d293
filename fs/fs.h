/*
 * fs: the FUSE filesystem. Maps paths to store rows and spool files; never
 * talks XMPP. When a file becomes ready to send (or a transfer must stop
 * because the user changed or deleted its file) it commits that to the
 * store and calls the wake hook, which main wires to the XMPP thread.
 *
 *   /status                  read-only text, one line per transfer
 *   /events                  read-only stream, one JSON line per transfer
 *                            state change (tail -f, while read)
 *   /inbox/<sender>/<name>   received files (read, rename, unlink)
 *   /outbox/<jid>/<name>     files to send (full read/write semantics)
 */
#ifndef XFS_FS_H
#define XFS_FS_H

#include <stdint.h>

struct store;

typedef void (*fs_wake_fn)(void *arg);

struct fs_config {
	struct store *store;
	unsigned settle_ms;  /* quiet time after the last close */
	fs_wake_fn wake;     /* called from FUSE threads; must not block */
	void *wake_arg;
	/* Own account's bare JID, for status; may be NULL. */
	const char *self_jid;
	/* Most reads of /events that may block at once; each holds a FUSE
	 * worker thread, so keep it well under the loop's max_threads.
	 * 0 = 8 (for max_threads 16). */
	unsigned events_readers;
};

/* The operations table for fuse_new(); private_data must be the
 * struct fs_config * (it must outlive the mount). */
struct fuse_operations;
const struct fuse_operations *fs_operations(void);

#endif
