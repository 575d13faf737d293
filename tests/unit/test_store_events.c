/*
 * test_store_events: unit tests of the store's event stream (the bytes
 * behind /events): which changes make a line, the JSON of a line (escaping,
 * invalid UTF-8), offsets and the ring (wrap-around, offsets that fell out,
 * clamping, timeouts) and concurrent blocking readers. Real data directory
 * under /tmp. Exit 0 = pass.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

#include "test.h"


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
	static char buf[16][512];
	static int i;

	i = (i + 1) % 16;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", base, sub);
	return buf[i];
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- reading lines -------------------------------------------------- */

struct lines {
	char *buf; /* all bytes read, NUL-terminated */
	size_t len;
	uint64_t off; /* next offset */
};

/* Read everything from l->off to the end (no waiting). */
static void drain(struct store *st, struct lines *l)
{
	char tmp[4096];
	uint64_t next;
	int n;

	while ((n = store_events_read(st, l->off, tmp, sizeof(tmp), 0,
				      &next)) > 0) {
		l->buf = realloc(l->buf, l->len + (size_t)n + 1);
		memcpy(l->buf + l->len, tmp, (size_t)n);
		l->len += (size_t)n;
		l->buf[l->len] = '\0';
		l->off = next;
	}
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

/* The value of "key" in line i (0-based) of s, unescaped only as far as
 * the tests need (the raw JSON text between the quotes, or the number). */
static const char *field(const char *s, int i, const char *key)
{
	static char out[4096];
	char pat[64];
	const char *p, *e;

	out[0] = '\0';
	while (s && i-- > 0) {
		s = strchr(s, '\n');
		if (s)
			s++;
	}
	if (!s)
		return "<no line>";
	e = strchr(s, '\n');
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(s, pat);
	if (!p || (e && p > e))
		return "<no key>";
	p += strlen(pat);
	if (*p == '"') {
		const char *q = ++p;

		while (*q && *q != '"')
			q += *q == '\\' ? 2 : 1;
		snprintf(out, sizeof(out), "%.*s", (int)(q - p), p);
	} else {
		snprintf(out, sizeof(out), "%.*s", (int)strcspn(p, ",}"), p);
	}
	return out;
}

/* Every line is one JSON object of the documented keys, in order. */
static int line_shape_ok(const char *s, size_t len)
{
	static const char *const keys[] = {
		"{\"time\":\"", "\",\"dir\":\"", "\",\"state\":\"",
		"\",\"jid\":\"", "\",\"peer\":\"", "\",\"name\":\"",
		"\",\"size\":", ",\"progress\":", ",\"method\":\"",
		"\",\"error\":\"", "\",\"id\":"};
	const char *p = s, *end = s + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (!nl || nl[-1] != '}')
			return 0;
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			const char *q = strstr(p, keys[k]);

			if (!q || q > nl)
				return 0;
			p = q + strlen(keys[k]);
		}
		p = nl + 1;
	}
	return 1;
}

static struct store_in offer(const char *sender, const char *name,
			     uint64_t size)
{
	struct store_in in;

	memset(&in, 0, sizeof(in));
	snprintf(in.sender, sizeof(in.sender), "%s", sender);
	snprintf(in.peer, sizeof(in.peer), "%s/phone", sender);
	snprintf(in.offer_name, sizeof(in.offer_name), "%s", name);
	in.size = size;
	snprintf(in.sid, sizeof(in.sid), "sid-%s", name);
	snprintf(in.method, sizeof(in.method), "s5b-direct");
	return in;
}

/* ---- tests ---------------------------------------------------------- */

static void test_empty(void)
{
	struct store *st;
	char buf[64];
	uint64_t next = 7;
	int64_t last = 7, t0;

	REQUIRE_OK(store_open(tpath("empty"), &st));
	CHECK_INT(0, store_events_end(st, &last));
	CHECK_INT(0, last);
	CHECK_INT(0, store_events_read(st, 0, buf, sizeof(buf), 0, &next));
	CHECK_INT(0, next);
	CHECK_INT(0, store_events_read(st, 12345, buf, sizeof(buf), 0, &next));
	CHECK_INT(0, next); /* clamped to the end */
	CHECK_INT(-EINVAL, store_events_read(st, 0, NULL, 1, 0, &next));
	CHECK_INT(-EINVAL, store_events_read(st, 0, buf, 1, 0, NULL));
	t0 = mono_ms();
	CHECK_INT(0, store_events_read(st, 0, buf, sizeof(buf), 150, &next));
	CHECK(mono_ms() - t0 >= 140);
	CHECK(mono_ms() - t0 < 2000);
	/* contacts make no events */
	CHECK_INT(0, store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	CHECK_INT(0, store_contact_set_attr(st, "bob@x", 0700, 5));
	CHECK_INT(0, store_events_end(st, NULL));
	store_close(st);
}

static void test_out_events(void)
{
	struct store *st;
	struct store_out o, p;
	struct lines l = {0};
	int64_t last = 0;

	REQUIRE_OK(store_open(tpath("out"), &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", "a.txt", 0644, &o));
	CHECK(store_events_end(st, &last) > 0);
	CHECK(last > 0);
	REQUIRE_OK(store_out_release(st, o.id, 5, 0));
	/* a size update of a waiting row is no state change */
	REQUIRE_OK(store_out_release(st, o.id, 6, 0));
	REQUIRE_OK(store_out_set_state(st, o.id, o.gen, STORE_OFFERED,
				       "bob@x/res", "", "sid1", NULL));
	REQUIRE_OK(store_out_set_state(st, o.id, o.gen, STORE_SENDING, NULL,
				       "s5b-direct", NULL, NULL));
	/* same state, same method: nothing; progress: nothing */
	REQUIRE_OK(store_out_set_state(st, o.id, o.gen, STORE_SENDING, NULL,
				       "s5b-direct", NULL, NULL));
	REQUIRE_OK(store_out_set_progress(st, o.id, o.gen, 3));
	/* same state, new method (fallback): a line */
	REQUIRE_OK(store_out_set_state(st, o.id, o.gen, STORE_SENDING, NULL,
				       "ibb", NULL, NULL));
	REQUIRE_OK(store_out_set_progress(st, o.id, o.gen, 6));
	REQUIRE_OK(store_out_set_state(st, o.id, o.gen, STORE_SENT, NULL,
				       NULL, NULL, ""));
	/* a stale gen is rolled back: no line */
	CHECK_INT(-ESTALE, store_out_set_state(st, o.id, o.gen + 9,
					       STORE_FAILED, NULL, NULL, NULL,
					       "x"));
	REQUIRE_OK(store_out_touch(st, o.id, &o.gen));
	REQUIRE_OK(store_out_touch(st, o.id, &o.gen)); /* still staged */
	REQUIRE_OK(store_out_release(st, o.id, 7, 0));
	REQUIRE_OK(store_out_set_state(st, o.id, o.gen, STORE_REJECTED,
				       "bob@x/res", NULL, NULL, "declined"));
	drain(st, &l);
	CHECK_INT(9, count_lines(l.buf));
	CHECK(line_shape_ok(l.buf, l.len));
	CHECK_STR("staged", field(l.buf, 0, "state"));
	CHECK_STR("out", field(l.buf, 0, "dir"));
	CHECK_STR("bob@x", field(l.buf, 0, "jid"));
	CHECK_STR("a.txt", field(l.buf, 0, "name"));
	CHECK_STR("0", field(l.buf, 0, "size"));
	CHECK_STR("waiting", field(l.buf, 1, "state"));
	CHECK_STR("5", field(l.buf, 1, "size"));
	CHECK_STR("offered", field(l.buf, 2, "state"));
	CHECK_STR("bob@x/res", field(l.buf, 2, "peer"));
	CHECK_STR("sending", field(l.buf, 3, "state"));
	CHECK_STR("s5b-direct", field(l.buf, 3, "method"));
	CHECK_STR("sending", field(l.buf, 4, "state"));
	CHECK_STR("ibb", field(l.buf, 4, "method"));
	CHECK_STR("3", field(l.buf, 4, "progress"));
	CHECK_STR("sent", field(l.buf, 5, "state"));
	CHECK_STR("6", field(l.buf, 5, "progress"));
	CHECK_STR("6", field(l.buf, 5, "size"));
	CHECK_STR("staged", field(l.buf, 6, "state"));
	CHECK_STR("0", field(l.buf, 6, "progress"));
	CHECK_STR("waiting", field(l.buf, 7, "state"));
	CHECK_STR("rejected", field(l.buf, 8, "state"));
	CHECK_STR("declined", field(l.buf, 8, "error"));
	{
		char id[32];

		snprintf(id, sizeof(id), "%" PRId64, o.id);
		CHECK_STR(id, field(l.buf, 8, "id"));
	}
	/* time: ISO 8601 UTC with milliseconds */
	{
		const char *t = field(l.buf, 0, "time");
		int y, mo, d, h, mi, s, ms;

		CHECK_INT(24, strlen(t));
		CHECK_INT(7, sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &y, &mo,
				    &d, &h, &mi, &s, &ms));
		CHECK(y >= 2024);
	}

	/* rename: staged -> waiting is a line; a hidden name stages it */
	REQUIRE_OK(store_out_create(st, "bob@x", ".tmp", 0644, &p));
	REQUIRE_OK(store_out_release(st, p.id, 1, 0)); /* hidden: no line */
	REQUIRE_OK(store_out_rename(st, p.id, "bob@x", "b.txt", 0, NULL));
	/* in flight, then deleted: cancelled */
	REQUIRE_OK(store_out_get_id(st, p.id, &p));
	REQUIRE_OK(store_out_set_state(st, p.id, p.gen, STORE_OFFERED,
				       "bob@x/r", NULL, NULL, NULL));
	REQUIRE_OK(store_out_delete(st, p.id));
	/* a waiting row deleted: no line */
	REQUIRE_OK(store_out_touch(st, o.id, &o.gen));
	REQUIRE_OK(store_out_release(st, o.id, 7, 0));
	REQUIRE_OK(store_out_delete(st, o.id));
	free(l.buf);
	memset(&l, 0, sizeof(l));
	drain(st, &l);
	CHECK_INT(9 + 6, count_lines(l.buf));
	CHECK(line_shape_ok(l.buf, l.len));
	CHECK_STR("staged", field(l.buf, 9, "state"));
	CHECK_STR(".tmp", field(l.buf, 9, "name"));
	CHECK_STR("waiting", field(l.buf, 10, "state"));
	CHECK_STR("b.txt", field(l.buf, 10, "name"));
	CHECK_STR("offered", field(l.buf, 11, "state"));
	CHECK_STR("cancelled", field(l.buf, 12, "state"));
	CHECK_STR("deleted", field(l.buf, 12, "error"));
	CHECK_STR("b.txt", field(l.buf, 12, "name"));
	CHECK_STR("staged", field(l.buf, 13, "state"));
	CHECK_STR("waiting", field(l.buf, 14, "state"));
	CHECK_INT(l.off, store_events_end(st, NULL));
	free(l.buf);
	store_close(st);
}

static void test_requeue_and_reopen(void)
{
	struct store *st;
	struct store_out o;
	struct lines l = {0};

	REQUIRE_OK(store_open(tpath("requeue"), &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", "r", 0644, &o));
	REQUIRE_OK(store_out_release(st, o.id, 1, 0));
	REQUIRE_OK(store_out_set_state(st, o.id, o.gen, STORE_SENDING,
				       "bob@x/r", "ibb", "s", NULL));
	REQUIRE_OK(store_out_set_progress(st, o.id, o.gen, 1));
	l.off = store_events_end(st, NULL);
	REQUIRE_OK(store_out_requeue_inflight(st));
	drain(st, &l);
	CHECK_INT(1, count_lines(l.buf));
	CHECK_STR("waiting", field(l.buf, 0, "state"));
	CHECK_STR("0", field(l.buf, 0, "progress"));
	REQUIRE_OK(store_out_requeue_inflight(st)); /* nothing in flight */
	drain(st, &l);
	CHECK_INT(1, count_lines(l.buf));
	REQUIRE_OK(store_out_set_state(st, o.id, o.gen, STORE_OFFERED,
				       "bob@x/r", NULL, NULL, NULL));
	store_close(st);
	free(l.buf);

	/* the stream starts again at 0 per open; recovery is its first line */
	memset(&l, 0, sizeof(l));
	REQUIRE_OK(store_open(tpath("requeue"), &st));
	drain(st, &l);
	CHECK_INT(1, count_lines(l.buf));
	CHECK_STR("waiting", field(l.buf, 0, "state"));
	CHECK_STR("r", field(l.buf, 0, "name"));
	free(l.buf);
	store_close(st);
}

static void test_in_events(void)
{
	struct store *st;
	struct store_in a = offer("carol@x", "photo.jpg", 0);
	struct store_in b = offer("carol@x", "photo.jpg", 10);
	struct lines l = {0};
	char name[STORE_NAME_MAX];

	REQUIRE_OK(store_open(tpath("in"), &st));
	REQUIRE_OK(store_in_begin(st, &a));
	REQUIRE_OK(store_in_finish(st, a.id, name));
	REQUIRE_OK(store_in_begin(st, &b));
	REQUIRE_OK(store_in_set_progress(st, b.id, 4)); /* no line */
	REQUIRE_OK(store_in_fail(st, b.id, "connection lost", 1));
	REQUIRE_OK(store_in_rebind(st, b.id, "sid2", "carol@x/laptop", "ibb"));
	REQUIRE_OK(store_in_rebind(st, b.id, "sid3", NULL, NULL)); /* same */
	REQUIRE_OK(store_in_fail(st, b.id, "bad hash", 0));
	CHECK(store_in_finish(st, b.id, name) < 0); /* no line */
	drain(st, &l);
	CHECK_INT(6, count_lines(l.buf));
	CHECK(line_shape_ok(l.buf, l.len));
	CHECK_STR("in", field(l.buf, 0, "dir"));
	CHECK_STR("receiving", field(l.buf, 0, "state"));
	CHECK_STR("carol@x", field(l.buf, 0, "jid"));
	CHECK_STR("carol@x/phone", field(l.buf, 0, "peer"));
	CHECK_STR("s5b-direct", field(l.buf, 0, "method"));
	CHECK_STR("received", field(l.buf, 1, "state"));
	CHECK_STR("photo.jpg", field(l.buf, 1, "name"));
	CHECK_STR("receiving", field(l.buf, 2, "state"));
	CHECK_STR("10", field(l.buf, 2, "size"));
	CHECK_STR("failed", field(l.buf, 3, "state"));
	CHECK_STR("connection lost", field(l.buf, 3, "error"));
	CHECK_STR("4", field(l.buf, 3, "progress"));
	CHECK_STR("receiving", field(l.buf, 4, "state"));
	CHECK_STR("carol@x/laptop", field(l.buf, 4, "peer"));
	CHECK_STR("failed", field(l.buf, 5, "state"));
	CHECK_STR("bad hash", field(l.buf, 5, "error"));
	/* a second file of the same name is received as "photo (2).jpg" */
	{
		struct store_in c = offer("carol@x", "photo.jpg", 0);

		REQUIRE_OK(store_in_begin(st, &c));
		REQUIRE_OK(store_in_finish(st, c.id, name));
		drain(st, &l);
		CHECK_STR("photo (2).jpg", field(l.buf, 7, "name"));
	}
	free(l.buf);
	store_close(st);
}

static void test_escaping(void)
{
	struct store *st;
	struct store_out o;
	struct store_in in;
	struct lines l = {0};
	/* quote, backslash, tab, newline, 0x01, DEL, valid 2-, 3- and 4-byte
	 * UTF-8, then invalid: lone continuation, truncated sequence,
	 * overlong '/', a UTF-16 surrogate, > U+10FFFF, 0xff */
	const char *name = "q\"b\\t\tn\nc\x01" "d\x7f" "\xc3\xa9\xe2\x82\xac"
			   "\xf0\x9f\x98\x80" "|\x80|\xe2\x82|\xc0\xaf|"
			   "\xed\xa0\x80|\xf4\x90\x80\x80|\xff";
	const char *want = "q\\\"b\\\\t\\tn\\nc\\u0001d\\u007f"
			   "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
			   "|\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
			   "\xef\xbf\xbd\xef\xbf\xbd|"
			   "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
			   "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
			   "\xef\xbf\xbd";

	REQUIRE_OK(store_open(tpath("esc"), &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", name, 0644, &o));
	in = offer("eve@x", "x", 1);
	snprintf(in.peer, sizeof(in.peer), "eve@x/\x1b[31m\r");
	REQUIRE_OK(store_in_begin(st, &in));
	drain(st, &l);
	CHECK_INT(2, count_lines(l.buf));
	CHECK(line_shape_ok(l.buf, l.len));
	CHECK_STR(want, field(l.buf, 0, "name"));
	CHECK_STR("eve@x/\\u001b[31m\\r", field(l.buf, 1, "peer"));
	/* no raw control byte anywhere but the line ends */
	for (size_t i = 0; i < l.len; i++)
		if ((unsigned char)l.buf[i] < 0x20 && l.buf[i] != '\n')
			CHECK(!"raw control character in a line");
	free(l.buf);
	store_close(st);
}

/* Make at least `bytes` of stream with cheap changes (touch + release). */
static int churn(struct store *st, int64_t id, uint64_t bytes)
{
	uint64_t end = store_events_end(st, NULL) + bytes;
	int n = 0;

	while (store_events_end(st, NULL) < end) {
		if (store_out_touch(st, id, NULL) < 0 ||
		    store_out_release(st, id, (uint64_t)n, 0) < 0)
			return -1;
		n += 2;
	}
	return n;
}

static void test_ring(void)
{
	struct store *st;
	struct store_out o;
	struct lines l = {0};
	char *buf;
	uint64_t end, next, at;
	int n, lines;

	buf = malloc(STORE_EVENTS_RING + 1);
	REQUIRE_OK(buf == NULL);
	REQUIRE_OK(store_open(tpath("ring"), &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", "r", 0644, &o));
	/* a reader that keeps up never loses a byte across wrap-arounds */
	l.off = 0;
	for (int round = 0; round < 7; round++) {
		CHECK(churn(st, o.id, STORE_EVENTS_RING / 2) > 0);
		drain(st, &l);
	}
	end = store_events_end(st, NULL);
	CHECK(end > 3 * (uint64_t)STORE_EVENTS_RING);
	CHECK_INT(end, l.off);
	CHECK_INT(end, l.len);
	CHECK(line_shape_ok(l.buf, l.len));
	lines = count_lines(l.buf);
	CHECK(lines > 3 * STORE_EVENTS_RING / 300);

	/* offset 0 fell out: the read starts at the oldest whole line */
	n = store_events_read(st, 0, buf, STORE_EVENTS_RING, 0, &next);
	CHECK(n > 0);
	at = next - (uint64_t)n;
	CHECK(at > end - STORE_EVENTS_RING);
	CHECK(at <= end);
	CHECK_INT(end, next); /* the whole ring in one read */
	CHECK(n <= STORE_EVENTS_RING);
	CHECK(n > STORE_EVENTS_RING - 4096); /* nearly full */
	CHECK(memcmp(buf, "{\"time\":", 8) == 0);
	CHECK(l.buf[at - 1] == '\n');
	CHECK(memcmp(buf, l.buf + at, (size_t)n) == 0);
	/* so does an offset in the middle of a line that fell out */
	n = store_events_read(st, at - 5, buf, 100, 0, &next);
	CHECK_INT(100, n);
	CHECK_INT(at + 100, next);
	/* an offset inside the ring, even mid-line, is taken as is */
	n = store_events_read(st, at + 3, buf, 10, 0, &next);
	CHECK_INT(10, n);
	CHECK_INT(at + 13, next);
	CHECK(memcmp(buf, l.buf + at + 3, 10) == 0);
	/* reads that straddle the physical end of the ring are whole */
	for (uint64_t off = end - 1; off > at && off > end - 2000; off -= 97) {
		n = store_events_read(st, off, buf, 4096, 0, &next);
		CHECK_INT(end - off, n);
		CHECK(memcmp(buf, l.buf + off, (size_t)n) == 0);
	}
	/* past the end: clamped */
	CHECK_INT(0, store_events_read(st, end + 999, buf, 10, 0, &next));
	CHECK_INT(end, next);
	free(buf);
	free(l.buf);
	store_close(st);
}

/* ---- concurrent readers --------------------------------------------- */

#define NREADERS 4
#define NCHANGES 400

struct reader {
	struct store *st;
	uint64_t off;
	char *buf;
	size_t len;
	int lines, want;
	int64_t max_gap_ms; /* longest wait for one read */
	int errors;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	char tmp[1000]; /* small: reads cut lines, the next one continues */
	uint64_t next;
	int n;

	while (r->lines < r->want) {
		int64_t t0 = mono_ms();

		n = store_events_read(r->st, r->off, tmp, sizeof(tmp), 5000,
				      &next);
		if (n <= 0 || next - (uint64_t)n != r->off) {
			r->errors++;
			break;
		}
		if (mono_ms() - t0 > r->max_gap_ms)
			r->max_gap_ms = mono_ms() - t0;
		r->buf = realloc(r->buf, r->len + (size_t)n + 1);
		memcpy(r->buf + r->len, tmp, (size_t)n);
		r->len += (size_t)n;
		r->buf[r->len] = '\0';
		r->off = next;
		r->lines = count_lines(r->buf);
	}
	return NULL;
}

struct writer {
	struct store *st;
	int64_t id;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (int i = 0; i < NCHANGES / 2; i++) {
		store_out_touch(w->st, w->id, NULL);
		store_out_release(w->st, w->id, (uint64_t)i, 0);
		if (i % 50 == 0)
			usleep(20000); /* let the readers block now and then */
	}
	return NULL;
}

static void test_readers(void)
{
	struct store *st;
	struct store_out o;
	struct reader r[NREADERS];
	struct writer w;
	pthread_t rt[NREADERS], wt;
	uint64_t start;
	int i;

	REQUIRE_OK(store_open(tpath("readers"), &st));
	REQUIRE_OK(store_contact_add(st, "bob@x", STORE_CONTACT_USER));
	REQUIRE_OK(store_out_create(st, "bob@x", "w", 0644, &o));
	REQUIRE_OK(store_out_release(st, o.id, 0, 0)); /* waiting */
	start = store_events_end(st, NULL);
	for (i = 0; i < NREADERS; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].st = st;
		r[i].off = start;
		r[i].want = NCHANGES;
		pthread_create(&rt[i], NULL, reader_main, &r[i]);
	}
	usleep(50000); /* the readers block at the end */
	w = (struct writer){st, o.id};
	pthread_create(&wt, NULL, writer_main, &w);
	pthread_join(wt, NULL);
	for (i = 0; i < NREADERS; i++)
		pthread_join(rt[i], NULL);
	for (i = 0; i < NREADERS; i++) {
		CHECK_INT(0, r[i].errors);
		CHECK_INT(NCHANGES, r[i].lines);
		CHECK_INT(store_events_end(st, NULL), r[i].off);
		CHECK(line_shape_ok(r[i].buf, r[i].len));
		CHECK(r[i].max_gap_ms < 2000);
		if (i > 0) {
			CHECK_INT(r[0].len, r[i].len);
			CHECK(r[i].len == r[0].len &&
			      memcmp(r[0].buf, r[i].buf, r[0].len) == 0);
		}
	}
	/* a blocked reader wakes at once when a line comes */
	{
		struct reader one = {.st = st, .want = 1};
		pthread_t t;
		int64_t t0;

		one.off = store_events_end(st, NULL);
		pthread_create(&t, NULL, reader_main, &one);
		usleep(100000);
		t0 = mono_ms();
		CHECK_INT(0, store_out_touch(st, o.id, NULL));
		pthread_join(t, NULL);
		CHECK(mono_ms() - t0 < 1000);
		CHECK_STR("staged", field(one.buf, 0, "state"));
		free(one.buf);
	}
	for (i = 0; i < NREADERS; i++)
		free(r[i].buf);
	store_close(st);
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
	snprintf(base, sizeof(base), "/tmp/test_store_events.XXXXXX");
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
	RUN(test_empty);
	RUN(test_out_events);
	RUN(test_requeue_and_reopen);
	RUN(test_in_events);
	RUN(test_escaping);
	RUN(test_ring);
	RUN(test_readers);
	nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
