/*
 * xmpp/s5b: the bytes of XEP-0065 SOCKS5 bytestreams, off the xmpp thread.
 *
 * The listener (thread "s5b-listen") accepts direct connections from
 * targets. It accepts only a connection whose DST.ADDR matches a slot the
 * xmpp thread registered for a live offer (xt_s5b_expect), answers it, and
 * parks the socket until streamhost-used arrives (xt_s5b_take). Anything
 * else, and any handshake slower than 5 s, is closed at once.
 *
 * Jobs run on a thread each and move bytes: sendfile() from the spool file
 * to the socket (no copy through user space), or recv() into a buffer that
 * feeds MD5 and pwrite() for the receiver (the hash needs the bytes anyway).
 * Jobs report through xt_post(); the xmpp thread owns every state change.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util/log.h"
#include "xmpp/xt_int.h"

#define NSLOTS (sizeof(((struct xt *)0)->s5b_slots) / \
		sizeof(((struct xt *)0)->s5b_slots[0]))
#define RECV_BUF (1 << 20)
#define SOCK_BUF (4 << 20)

/* ---- MD5 over EVP ---------------------------------------------------- */

void *xt_md5_new(void)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	if (c && EVP_DigestInit_ex(c, EVP_md5(), NULL) != 1) {
		EVP_MD_CTX_free(c);
		return NULL;
	}
	return c;
}

void xt_md5_update(void *ctx, const void *data, size_t len)
{
	EVP_DigestUpdate(ctx, data, len);
}

void xt_md5_final(void *ctx, char hex[33])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_DigestFinal_ex(ctx, d, &n);
	for (unsigned i = 0; i < n && i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	hex[32] = '\0';
	EVP_MD_CTX_free(ctx);
}

void xt_md5_free(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

int xt_md5_prefix(void *ctx, int fd, uint64_t len)
{
	static const size_t bufsz = 1 << 20;
	uint8_t *buf = malloc(bufsz);
	uint64_t off = 0;

	if (!buf)
		return -ENOMEM;
	while (off < len) {
		size_t want = len - off < bufsz ? (size_t)(len - off) : bufsz;
		ssize_t n = pread(fd, buf, want, (off_t)off);

		if (n <= 0) {
			free(buf);
			return n < 0 ? -errno : -EIO;
		}
		xt_md5_update(ctx, buf, (size_t)n);
		off += (uint64_t)n;
	}
	free(buf);
	return 0;
}

/* ---- jobs -------------------------------------------------------------- */

struct xt_job *xt_job_new(enum xt_job_kind kind, uint64_t serial)
{
	struct xt_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	atomic_init(&j->refs, 1);
	j->kind = kind;
	j->xfer_serial = serial;
	j->fd = -1;
	j->sock = -1;
	j->used_host = -1;
	pthread_mutex_init(&j->go_lock, NULL);
	pthread_cond_init(&j->go_cond, NULL);
	return j;
}

void xt_job_unref(struct xt_job *j)
{
	if (!j || atomic_fetch_sub(&j->refs, 1) != 1)
		return;
	if (j->sock >= 0)
		close(j->sock);
	if (j->fd >= 0)
		close(j->fd);
	if (j->md5_ctx)
		xt_md5_free(j->md5_ctx);
	pthread_mutex_destroy(&j->go_lock);
	pthread_cond_destroy(&j->go_cond);
	free(j);
}

void xt_job_go(struct xt_job *j, int go)
{
	pthread_mutex_lock(&j->go_lock);
	j->go = go;
	pthread_cond_broadcast(&j->go_cond);
	pthread_mutex_unlock(&j->go_lock);
	if (go < 0) {
		atomic_store(&j->cancel, 1);
		if (j->sock >= 0)
			shutdown(j->sock, SHUT_RDWR);
	}
}

static void job_fail(struct xt_job *j, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void job_fail(struct xt_job *j, int err, const char *fmt, ...)
{
	va_list ap;

	j->err = err;
	va_start(ap, fmt);
	vsnprintf(j->errmsg, sizeof(j->errmsg), fmt, ap);
	va_end(ap);
}

static void tune_socket(int s)
{
	int one = 1, buf = SOCK_BUF;

	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

/* Wait for fd to be ready for events within ms; 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, int ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	int rc = poll(&p, 1, ms);

	if (rc < 0)
		return -errno;
	return rc == 0 ? -ETIMEDOUT : 0;
}

/* Exactly len bytes, each read within ms. */
static int read_full(int fd, uint8_t *buf, size_t len, int ms)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n;
		int rc = wait_fd(fd, POLLIN, ms);

		if (rc < 0)
			return rc;
		n = recv(fd, buf + got, len - got, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* TCP connect with a deadline; returns the socket or -errno. */
static int connect_host(const char *host, uint16_t port, int ms)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL, *ai;
	char portstr[8];
	int s = -ECONNREFUSED;

	snprintf(portstr, sizeof(portstr), "%u", port);
	if (getaddrinfo(host, portstr, &hints, &res) != 0)
		return -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
						 SOCK_NONBLOCK, 0);
		int err = 0;
		socklen_t el = sizeof(err);

		if (fd < 0)
			continue;
		tune_socket(fd);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 &&
		    errno != EINPROGRESS) {
			s = -errno;
			close(fd);
			continue;
		}
		if (wait_fd(fd, POLLOUT, ms) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 ||
		    err) {
			s = err ? -err : -ETIMEDOUT;
			close(fd);
			continue;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		s = fd;
		break;
	}
	freeaddrinfo(res);
	return s;
}

/* SOCKS5 client handshake (RFC 1928, XEP-0065 §5.3.2). Prosody's proxy65
 * wants the greeting and the CONNECT in separate reads of exact sizes, so
 * never pipeline: greet, wait for 05 00, then connect (INTEROP.md §3). */
static int socks5_client(int s, const char dst[41], int ms)
{
	uint8_t buf[64];
	size_t need = 0;
	size_t n;
	int rc;

	n = proto_socks5_greeting(buf);
	if ((rc = write_full(s, buf, n)) < 0)
		return rc;
	if ((rc = read_full(s, buf, 2, ms)) < 0)
		return rc;
	if (proto_socks5_check_choice(buf, 2) < 0)
		return -EPROTO;
	n = proto_socks5_connect(dst, buf);
	if ((rc = write_full(s, buf, n)) < 0)
		return rc;
	if ((rc = read_full(s, buf, 5, ms)) < 0)
		return rc;
	rc = proto_socks5_check_reply(buf, 5, &need);
	if (rc == -EAGAIN && need > 5 && need <= sizeof(buf)) {
		if ((rc = read_full(s, buf + 5, need - 5, ms)) < 0)
			return rc;
		rc = proto_socks5_check_reply(buf, need, &need);
	}
	return rc < 0 ? -EPROTO : 0;
}

static void job_send(struct xt_job *j)
{
	off_t off = (off_t)j->offset;
	uint64_t left = j->length;

	while (left > 0 && !atomic_load(&j->cancel)) {
		size_t chunk = left > (1u << 24) ? (1u << 24) : (size_t)left;
		ssize_t n = sendfile(j->sock, j->fd, &off, chunk);

		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			job_fail(j, -errno, "sending: %s", strerror(errno));
			return;
		}
		if (n == 0) {
			job_fail(j, -EIO, "the file shrank while sending");
			return;
		}
		left -= (uint64_t)n;
		atomic_fetch_add(&j->done_bytes, (uint64_t)n);
	}
	if (atomic_load(&j->cancel)) {
		job_fail(j, -ECANCELED, "cancelled");
		return;
	}
	/* Done when the last byte is written (as libpurple and QXmpp);
	 * a graceful FIN tells the target the stream is complete. */
	shutdown(j->sock, SHUT_WR);
	/* Give the peer a moment to read everything before close. */
	{
		uint8_t b[256];

		for (int i = 0; i < 50; i++) {
			if (wait_fd(j->sock, POLLIN, 100) == 0 &&
			    recv(j->sock, b, sizeof(b), 0) <= 0)
				break;
		}
	}
}

/*
 * The receiver's MD5 runs on a second thread that follows the writer
 * through the page cache (pread of what was just written), so receiving
 * and hashing overlap: one core hashes while the other copies. Memory
 * stays one buffer per thread whatever the file size. Small files hash
 * inline (a thread would cost more than it saves).
 */
#define HASH_THREAD_MIN (8u << 20)

struct follower {
	struct xt_job *j;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t written;  /* bytes [offset, written) are in the file */
	int stop;          /* writer finished (or failed) */
	int err;
};

static void *follow_main(void *arg)
{
	struct follower *f = arg;
	uint64_t pos = f->j->offset;
	uint8_t *buf = malloc(RECV_BUF);

	pthread_setname_np(pthread_self(), "md5");
	if (!buf) {
		f->err = -ENOMEM;
		return NULL;
	}
	for (;;) {
		uint64_t upto;
		int stop;

		pthread_mutex_lock(&f->lock);
		while (f->written == pos && !f->stop)
			pthread_cond_wait(&f->cond, &f->lock);
		upto = f->written;
		stop = f->stop;
		pthread_mutex_unlock(&f->lock);
		while (pos < upto) {
			size_t want = upto - pos < RECV_BUF
				? (size_t)(upto - pos) : RECV_BUF;
			ssize_t n = pread(f->j->fd, buf, want, (off_t)pos);

			if (n <= 0) {
				f->err = n < 0 ? -errno : -EIO;
				free(buf);
				return NULL;
			}
			xt_md5_update(f->j->md5_ctx, buf, (size_t)n);
			pos += (uint64_t)n;
		}
		if (stop && pos == f->written)
			break;
	}
	free(buf);
	return NULL;
}

static void follower_advance(struct follower *f, uint64_t written, int stop)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->written = written;
	f->stop |= stop;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static void job_recv_stream(struct xt_job *j)
{
	size_t bufsz = j->length < RECV_BUF ? (size_t)j->length + 1 : RECV_BUF;
	uint8_t *buf = malloc(bufsz);
	uint64_t off = j->offset, end = j->offset + j->length;
	struct follower fol, *f = NULL;
	pthread_t ft;

	if (!buf) {
		job_fail(j, -ENOMEM, "out of memory");
		return;
	}
	if (j->length >= HASH_THREAD_MIN) {
		memset(&fol, 0, sizeof(fol));
		fol.j = j;
		fol.written = j->offset;
		pthread_mutex_init(&fol.lock, NULL);
		pthread_cond_init(&fol.cond, NULL);
		if (pthread_create(&ft, NULL, follow_main, &fol) == 0)
			f = &fol;
	}
	while (!atomic_load(&j->cancel)) {
		ssize_t n;
		int rc = wait_fd(j->sock, POLLIN, XT_STREAM_WAIT_MS);

		if (rc < 0) {
			job_fail(j, rc, "no data for %d s",
				 XT_STREAM_WAIT_MS / 1000);
			break;
		}
		n = recv(j->sock, buf, bufsz, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			job_fail(j, -errno, "receiving: %s", strerror(errno));
			break;
		}
		if (n == 0) {
			if (off < end)
				job_fail(j, -EPIPE, "stream closed after %llu "
					 "of %llu bytes",
					 (unsigned long long)off,
					 (unsigned long long)end);
			break;
		}
		if ((uint64_t)n > end - off) {
			job_fail(j, -EMSGSIZE, "peer sent more bytes than "
				 "the %llu it announced",
				 (unsigned long long)end);
			break;
		}
		for (ssize_t w = 0; w < n;) {
			ssize_t m = pwrite(j->fd, buf + w, (size_t)(n - w),
					   (off_t)(off + (uint64_t)w));

			if (m < 0) {
				job_fail(j, -errno, "writing: %s",
					 strerror(errno));
				goto out;
			}
			w += m;
		}
		if (!f)
			xt_md5_update(j->md5_ctx, buf, (size_t)n);
		off += (uint64_t)n;
		follower_advance(f, off, 0);
		atomic_store(&j->done_bytes, off - j->offset);
		if (off == end) {
			/* All announced bytes are here. Peers that never
			 * close (QXmpp, INTEROP §6) must not hang us. */
			break;
		}
	}
	if (atomic_load(&j->cancel) && !j->err)
		job_fail(j, -ECANCELED, "cancelled");
	/* The data must be on disk before the store calls it received;
	 * syncing here, on the job's thread, leaves store_in_finish() on
	 * the xmpp thread with nothing left to flush. */
	if (!j->err && off == end && fdatasync(j->fd) < 0)
		job_fail(j, -errno, "syncing: %s", strerror(errno));
out:
	if (f) {
		follower_advance(f, off, 1);
		pthread_join(ft, NULL);
		if (f->err && !j->err)
			job_fail(j, f->err, "hashing: %s", strerror(-f->err));
		pthread_mutex_destroy(&f->lock);
		pthread_cond_destroy(&f->cond);
	}
	free(buf);
}

struct job_start {
	struct xt *xt;
	struct xt_job *job;
};

static void run_hash(struct xt_job *j)
{
	void *c = xt_md5_new();
	struct stat sb;
	int rc;

	if (!c || fstat(j->fd, &sb) < 0) {
		job_fail(j, -EIO, "cannot hash the file");
		xt_md5_free(c);
		return;
	}
	rc = xt_md5_prefix(c, j->fd, (uint64_t)sb.st_size);
	if (rc < 0) {
		job_fail(j, rc, "reading the file: %s", strerror(-rc));
		xt_md5_free(c);
		return;
	}
	j->length = (uint64_t)sb.st_size;
	xt_md5_final(c, j->md5);
}

static void run_proxy(struct xt *xt, struct xt_job *j)
{
	const struct proto_streamhost *h = &j->hosts[0];
	int s = connect_host(h->host, h->port, XT_S5B_CONNECT_MS);
	int rc;

	if (s < 0) {
		job_fail(j, s, "cannot connect to proxy %s:%u: %s", h->host,
			 h->port, strerror(-s));
		return;
	}
	j->sock = s;
	rc = socks5_client(s, j->dstaddr, XT_S5B_CONNECT_MS);
	if (rc < 0) {
		job_fail(j, rc, "SOCKS5 with proxy %s failed", h->jid);
		return;
	}
	xt_post(xt, EV_JOB_CONNECTED, j);
	pthread_mutex_lock(&j->go_lock);
	while (j->go == 0) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 70; /* ejabberd kills unactivated streams at 60 s */
		if (pthread_cond_timedwait(&j->go_cond, &j->go_lock, &ts) ==
		    ETIMEDOUT)
			break;
	}
	rc = j->go;
	pthread_mutex_unlock(&j->go_lock);
	if (rc <= 0) {
		job_fail(j, -ECANCELED, "proxy activation failed");
		return;
	}
	job_send(j);
}

static void run_recv(struct xt *xt, struct xt_job *j)
{
	for (int i = 0; i < j->nhosts && !atomic_load(&j->cancel); i++) {
		const struct proto_streamhost *h = &j->hosts[i];
		int s = connect_host(h->host, h->port, XT_S5B_CONNECT_MS);

		if (s < 0) {
			log_debug("s5b", "streamhost %s %s:%u: %s", h->jid,
				  h->host, h->port, strerror(-s));
			continue;
		}
		if (socks5_client(s, j->dstaddr, XT_S5B_CONNECT_MS) < 0) {
			log_debug("s5b", "streamhost %s %s:%u: SOCKS5 failed",
				  h->jid, h->host, h->port);
			close(s);
			continue;
		}
		j->sock = s;
		j->used_host = i;
		break;
	}
	if (j->used_host < 0) {
		job_fail(j, -EHOSTUNREACH, "could not connect to any "
			 "streamhost");
		return;
	}
	xt_post(xt, EV_JOB_CONNECTED, j);
	if (j->length == 0) {
		/* A 0-byte file needs no data, but keep the socket until the
		 * sender closes it: through a proxy, the sender activates
		 * after we connected, and a target that is gone by then makes
		 * activation fail. Some senders never close (QXmpp, INTEROP
		 * §6), so wait a bounded time only. */
		uint8_t b;

		if (wait_fd(j->sock, POLLIN, 10000) == 0 &&
		    recv(j->sock, &b, 1, 0) > 0)
			job_fail(j, -EMSGSIZE, "peer sent more bytes than "
				 "the 0 it announced");
		return;
	}
	job_recv_stream(j);
}

static void *job_main(void *arg)
{
	struct job_start *js = arg;
	struct xt *xt = js->xt;
	struct xt_job *j = js->job;
	char name[16];

	free(js);
	snprintf(name, sizeof(name), "job-%d", (int)j->kind);
	pthread_setname_np(pthread_self(), name);
	switch (j->kind) {
	case JOB_HASH:
		run_hash(j);
		break;
	case JOB_S5B_SEND:
		job_send(j);
		break;
	case JOB_S5B_PROXY:
		run_proxy(xt, j);
		break;
	case JOB_S5B_RECV:
		run_recv(xt, j);
		break;
	}
	if (j->sock >= 0) {
		close(j->sock);
		j->sock = -1;
	}
	xt_post(xt, EV_JOB_DONE, j);
	xt_job_unref(j);
	atomic_fetch_sub(&xt->workers, 1);
	return NULL;
}

int xt_job_start(struct xt *xt, struct xt_job *j)
{
	struct job_start *js = malloc(sizeof(*js));
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (!js)
		return -ENOMEM;
	js->xt = xt;
	js->job = j;
	atomic_fetch_add(&j->refs, 1);
	atomic_fetch_add(&xt->workers, 1);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, job_main, js);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		free(js);
		xt_job_unref(j);
		atomic_fetch_sub(&xt->workers, 1);
		return -rc;
	}
	return 0;
}

/* ---- the direct listener ---------------------------------------------- */

static void serve_one(struct xt *xt, int c)
{
	uint8_t buf[300];
	size_t have = 0, used = 0;
	char dst[41];
	int rc = -EAGAIN;

	/* Greeting: VER NMETHODS METHODS; then the request. Each must come
	 * within 5 s or the connection is dropped. */
	while (rc == -EAGAIN && have < sizeof(buf)) {
		ssize_t n;

		if (wait_fd(c, POLLIN, 5000) < 0)
			goto drop;
		n = recv(c, buf + have, sizeof(buf) - have, 0);
		if (n <= 0)
			goto drop;
		have += (size_t)n;
		rc = proto_socks5_parse_greeting(buf, have, &used);
	}
	if (rc < 0) {
		uint8_t no[2] = {5, 0xff};

		write_full(c, no, 2);
		goto drop;
	}
	{
		uint8_t ok[2] = {5, 0};

		if (write_full(c, ok, 2) < 0)
			goto drop;
	}
	memmove(buf, buf + used, have - used);
	have -= used;
	rc = proto_socks5_parse_request(buf, have, &used, dst);
	while (rc == -EAGAIN && have < sizeof(buf)) {
		ssize_t n;

		if (wait_fd(c, POLLIN, 5000) < 0)
			goto drop;
		n = recv(c, buf + have, sizeof(buf) - have, 0);
		if (n <= 0)
			goto drop;
		have += (size_t)n;
		rc = proto_socks5_parse_request(buf, have, &used, dst);
	}
	if (rc < 0)
		goto drop;
	pthread_mutex_lock(&xt->s5b_lock);
	for (size_t i = 0; i < NSLOTS; i++) {
		struct xt_s5b_slot *s = &xt->s5b_slots[i];
		uint8_t rep[47];
		size_t n;

		if (!s->used || s->sock >= 0 || strcmp(s->dstaddr, dst) != 0)
			continue;
		n = proto_socks5_reply(dst, rep);
		if (write_full(c, rep, n) < 0)
			break;
		tune_socket(c);
		s->sock = c;
		pthread_mutex_unlock(&xt->s5b_lock);
		log_debug("s5b", "parked a direct connection");
		return;
	}
	pthread_mutex_unlock(&xt->s5b_lock);
	log_debug("s5b", "refused a SOCKS5 connection for an unknown hash");
	{
		/* RFC 1928 §6: REP 02, connection not allowed by ruleset. */
		uint8_t rep[10] = {5, 2, 0, 1, 0, 0, 0, 0, 0, 0};

		write_full(c, rep, sizeof(rep));
	}
drop:
	close(c);
}

#define MAX_HANDSHAKES 16

struct serve_arg {
	struct xt *xt;
	int fd;
};

static atomic_int handshakes;

static void *serve_main(void *arg)
{
	struct serve_arg *sa = arg;
	struct xt *xt = sa->xt;

	pthread_setname_np(pthread_self(), "s5b-hello");
	serve_one(xt, sa->fd);
	free(sa);
	atomic_fetch_sub(&handshakes, 1);
	atomic_fetch_sub(&xt->workers, 1);
	return NULL;
}

static void *listen_main(void *arg)
{
	struct xt *xt = arg;

	pthread_setname_np(pthread_self(), "s5b-listen");
	for (;;) {
		int c = accept4(xt->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		struct serve_arg *sa;
		pthread_attr_t attr;
		pthread_t t;

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED ||
			    errno == EAGAIN)
				continue;
			break; /* shut down */
		}
		/* Each handshake on its own thread, so a silent client
		 * cannot hold up the others; a bounded number at once. */
		sa = malloc(sizeof(*sa));
		if (!sa || atomic_fetch_add(&handshakes, 1) >= MAX_HANDSHAKES) {
			atomic_fetch_sub(&handshakes, sa ? 1 : 0);
			free(sa);
			close(c);
			continue;
		}
		sa->xt = xt;
		sa->fd = c;
		atomic_fetch_add(&xt->workers, 1);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, serve_main, sa) != 0) {
			atomic_fetch_sub(&handshakes, 1);
			atomic_fetch_sub(&xt->workers, 1);
			free(sa);
			close(c);
		}
		pthread_attr_destroy(&attr);
	}
	return NULL;
}

void xt_workers_wait(struct xt *xt, int timeout_ms)
{
	for (int i = 0; i < timeout_ms / 10 && atomic_load(&xt->workers);
	     i++)
		usleep(10000);
}

int xt_s5b_listen(struct xt *xt, const char *host)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd, one = 1;

	if (getaddrinfo(host, "0", &hints, &res) != 0)
		return -EINVAL;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(res);
		return -errno;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 ||
	    listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		int e = errno;

		close(fd);
		freeaddrinfo(res);
		return -e;
	}
	freeaddrinfo(res);
	xt->listen_fd = fd;
	xt->listen_port = ntohs(ss.ss_family == AF_INET6
		? ((struct sockaddr_in6 *)&ss)->sin6_port
		: ((struct sockaddr_in *)&ss)->sin_port);
	snprintf(xt->listen_host, sizeof(xt->listen_host), "%s", host);
	if (pthread_create(&xt->listen_thread, NULL, listen_main, xt) != 0) {
		close(fd);
		xt->listen_fd = -1;
		return -EAGAIN;
	}
	xt->listen_started = 1;
	log_info("s5b", "direct SOCKS5 streamhost on %s port %u", host,
		 xt->listen_port);
	return 0;
}

void xt_s5b_stop(struct xt *xt)
{
	if (xt->listen_fd >= 0)
		shutdown(xt->listen_fd, SHUT_RDWR);
	if (xt->listen_started) {
		pthread_join(xt->listen_thread, NULL);
		xt->listen_started = 0;
	}
	if (xt->listen_fd >= 0) {
		close(xt->listen_fd);
		xt->listen_fd = -1;
	}
	pthread_mutex_lock(&xt->s5b_lock);
	for (size_t i = 0; i < NSLOTS; i++) {
		if (xt->s5b_slots[i].sock >= 0)
			close(xt->s5b_slots[i].sock);
		xt->s5b_slots[i].sock = -1;
		xt->s5b_slots[i].used = 0;
	}
	pthread_mutex_unlock(&xt->s5b_lock);
}

int xt_s5b_expect(struct xt *xt, const char *dstaddr)
{
	int rc = -EBUSY;

	pthread_mutex_lock(&xt->s5b_lock);
	for (size_t i = 0; i < NSLOTS; i++) {
		struct xt_s5b_slot *s = &xt->s5b_slots[i];

		if (s->used)
			continue;
		s->used = 1;
		s->sock = -1;
		snprintf(s->dstaddr, sizeof(s->dstaddr), "%s", dstaddr);
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&xt->s5b_lock);
	return rc;
}

int xt_s5b_take(struct xt *xt, const char *dstaddr)
{
	int sock = -1;

	pthread_mutex_lock(&xt->s5b_lock);
	for (size_t i = 0; i < NSLOTS; i++) {
		struct xt_s5b_slot *s = &xt->s5b_slots[i];

		if (s->used && strcmp(s->dstaddr, dstaddr) == 0) {
			sock = s->sock;
			s->sock = -1;
			s->used = 0;
			break;
		}
	}
	pthread_mutex_unlock(&xt->s5b_lock);
	return sock;
}

void xt_s5b_forget(struct xt *xt, const char *dstaddr)
{
	int sock = xt_s5b_take(xt, dstaddr);

	if (sock >= 0)
		close(sock);
}
