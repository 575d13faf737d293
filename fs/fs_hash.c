/*
 * fs/fs_hash: the MD5 of an outbox file, computed while it is written.
 *
 * The offer carries the file's MD5 (XEP-0096 §3), and hashing a big file
 * after its close delays the offer by seconds (~1.7 s per GiB here). So a
 * handle that writes a file from offset 0 sequentially gets a follower
 * thread that reads back what was just written (from the page cache) and
 * hashes it on the other core, without slowing the writes. At the last
 * close, if the handle wrote the whole file in order and nothing else
 * touched it, the hash goes into the store with the row's gen before the
 * row is released, and the XMPP side offers at once. Anything else
 * (random writes, truncation, a second writer) drops the follower and the
 * XMPP side hashes after close as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "fs/fs_int.h"

#define FS_HASH_BUF (1u << 20)

struct fs_hash {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int fd;            /* our own dup of the spool fd */
	EVP_MD_CTX *ctx;
	uint64_t written;  /* [0, written) is in the file; protected by lock */
	int stop;          /* protected by lock */
	int err;           /* set by the thread before it ends */
	uint64_t pos;      /* hashed so far; the thread's own */
};

static void *fs_hash_main(void *arg)
{
	struct fs_hash *h = arg;
	uint8_t *buf = malloc(FS_HASH_BUF);

	pthread_setname_np(pthread_self(), "fs-md5");
	if (!buf) {
		h->err = -ENOMEM;
		return NULL;
	}
	for (;;) {
		uint64_t upto;
		int stop;

		pthread_mutex_lock(&h->lock);
		while (h->written == h->pos && !h->stop)
			pthread_cond_wait(&h->cond, &h->lock);
		upto = h->written;
		stop = h->stop;
		pthread_mutex_unlock(&h->lock);
		while (h->pos < upto && !h->err) {
			size_t want = upto - h->pos < FS_HASH_BUF
				? (size_t)(upto - h->pos) : FS_HASH_BUF;
			ssize_t n = pread(h->fd, buf, want, (off_t)h->pos);

			if (n <= 0)
				h->err = n < 0 ? -errno : -EIO;
			else if (EVP_DigestUpdate(h->ctx, buf, (size_t)n) != 1)
				h->err = -EIO;
			else
				h->pos += (uint64_t)n;
		}
		if (h->err || (stop && h->pos == upto))
			break;
	}
	free(buf);
	return NULL;
}

struct fs_hash *fs_hash_start(int fd)
{
	struct fs_hash *h = calloc(1, sizeof(*h));

	char path[64];

	if (!h)
		return NULL;
	/* The writer's fd is often write-only (cp opens O_WRONLY): open the
	 * same file again for reading. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	h->fd = open(path, O_RDONLY | O_CLOEXEC);
	h->ctx = EVP_MD_CTX_new();
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	if (h->fd < 0 || !h->ctx ||
	    EVP_DigestInit_ex(h->ctx, EVP_md5(), NULL) != 1 ||
	    pthread_create(&h->thread, NULL, fs_hash_main, h) != 0) {
		if (h->fd >= 0)
			close(h->fd);
		EVP_MD_CTX_free(h->ctx);
		pthread_mutex_destroy(&h->lock);
		pthread_cond_destroy(&h->cond);
		free(h);
		return NULL;
	}
	return h;
}

void fs_hash_advance(struct fs_hash *h, uint64_t written)
{
	pthread_mutex_lock(&h->lock);
	h->written = written;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

static void fs_hash_end(struct fs_hash *h)
{
	pthread_mutex_lock(&h->lock);
	h->stop = 1;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
}

static void fs_hash_free(struct fs_hash *h)
{
	close(h->fd);
	EVP_MD_CTX_free(h->ctx);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h);
}

int fs_hash_finish(struct fs_hash *h, uint64_t size, char hex[33])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	int rc = 0;

	fs_hash_end(h);
	if (h->err || h->pos != size ||
	    EVP_DigestFinal_ex(h->ctx, d, &n) != 1 || n != 16)
		rc = h->err ? h->err : -EIO;
	for (unsigned i = 0; rc == 0 && i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	fs_hash_free(h);
	return rc;
}

void fs_hash_abort(struct fs_hash *h)
{
	if (!h)
		return;
	fs_hash_end(h);
	fs_hash_free(h);
}
