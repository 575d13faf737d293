/*
 * fs_status.c: the read-only /status file.
 *
 * Design. The text is generated once at open() from store_xfer_list() into
 * a buffer owned by the handle, so one `cat` sees one consistent snapshot
 * and reads never touch the store. The file is opened with direct_io: its
 * getattr size is 0 (the text changes all the time), and direct_io makes
 * the kernel read until EOF anyway instead of trusting that size.
 *
 * Format (scripts rely on it; keep it stable):
 *   # xmppfs <self_jid> <link>
 *   <dir>\t<state>\t<progress>\t<size>\t<method>\t<jid>\t<name>\t<error>
 * dir is "out" or "in"; an empty method or error is "-"; tab, newline and
 * backslash inside jid, name and error are written as \t, \n and \\.
 */
#include "fs/fs_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FS_STATUS_MAX_ROWS 1000

struct fs_sbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void fs_sbuf_add(struct fs_sbuf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void fs_sbuf_str(struct fs_sbuf *b, const char *s)
{
	fs_sbuf_add(b, s, strlen(s));
}

/* s escaped, or "-" when empty (if dash). */
static void fs_sbuf_field(struct fs_sbuf *b, const char *s, int dash)
{
	const char *run = s;

	if (!s || !*s) {
		if (dash)
			fs_sbuf_add(b, "-", 1);
		return;
	}
	for (; *s; s++) {
		const char *esc = NULL;

		if (*s == '\t')
			esc = "\\t";
		else if (*s == '\n')
			esc = "\\n";
		else if (*s == '\\')
			esc = "\\\\";
		if (!esc)
			continue;
		fs_sbuf_add(b, run, (size_t)(s - run));
		fs_sbuf_add(b, esc, 2);
		run = s + 1;
	}
	fs_sbuf_add(b, run, (size_t)(s - run));
}

static int fs_status_row(const struct store_xfer *x, void *arg)
{
	struct fs_sbuf *b = arg;
	char num[64];

	fs_sbuf_str(b, x->outgoing ? "out\t" : "in\t");
	fs_sbuf_str(b, store_state_name(x->state));
	snprintf(num, sizeof(num), "\t%" PRIu64 "\t%" PRIu64 "\t", x->progress,
		 x->size);
	fs_sbuf_str(b, num);
	fs_sbuf_field(b, x->method, 1);
	fs_sbuf_add(b, "\t", 1);
	fs_sbuf_field(b, x->jid, 1);
	fs_sbuf_add(b, "\t", 1);
	fs_sbuf_field(b, x->name, 1);
	fs_sbuf_add(b, "\t", 1);
	fs_sbuf_field(b, x->error, 1);
	fs_sbuf_add(b, "\n", 1);
	return b->err;
}

int fs_status_open(struct fuse_file_info *fi)
{
	struct fs_config *c = fs_cfg();
	struct fs_sbuf b = { 0 };
	struct fs_fh *fh;
	char link[256];
	int rc;

	store_get_link(c->store, link, sizeof(link));
	fs_sbuf_str(&b, "# xmppfs ");
	fs_sbuf_str(&b, c->self_jid && *c->self_jid ? c->self_jid : "-");
	fs_sbuf_add(&b, " ", 1);
	fs_sbuf_field(&b, link, 1);
	fs_sbuf_add(&b, "\n", 1);
	rc = store_xfer_list(c->store, FS_STATUS_MAX_ROWS, fs_status_row, &b);
	if (rc >= 0 && b.err)
		rc = b.err;
	fh = rc < 0 ? NULL : calloc(1, sizeof(*fh));
	if (!fh) {
		free(b.p);
		return rc < 0 ? rc : -ENOMEM;
	}
	fh->kind = FS_FH_STATUS;
	fh->fd = -1;
	fh->buf = b.p;
	fh->len = b.len;
	fi->fh = (uint64_t)(uintptr_t)fh;
	fi->direct_io = 1;
	return 0;
}

int fs_status_read(struct fs_fh *fh, char *buf, size_t size, off_t off)
{
	size_t n;

	if (off < 0)
		return -EINVAL;
	if ((size_t)off >= fh->len)
		return 0;
	n = fh->len - (size_t)off;
	if (n > size)
		n = size;
	memcpy(buf, fh->buf + off, n);
	return (int)n;
}
