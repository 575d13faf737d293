/*
 * store_events: the event stream behind /events.
 *
 * Design. Every committed state change of an outgoing or incoming row
 * becomes one line of JSON (format below). Lines are formatted while the
 * change's transaction is open (store_ev_stage(), into st->ev_pend under
 * st->lock) and move to the ring only when the COMMIT succeeded
 * (store_ev_commit(), called by store_tx_commit()); a rollback drops them
 * (store_ev_discard()). So the stream never reports a change the database
 * does not hold, and lines appear in commit order.
 *
 * The ring keeps the newest STORE_EVENTS_RING bytes of the stream. A byte's
 * offset is its position in the stream since store_open(); byte g lives at
 * ev_ring[g % cap]. ev_start is always the first byte of a line: making
 * room drops whole lines from the front. Readers wait on ev_cond (CLOCK_
 * MONOTONIC deadlines) holding only ev_lock, never st->lock, so a blocked
 * reader never holds up the database.
 *
 * Lock order: st->lock, then st->ev_lock (store_ev_commit runs with
 * st->lock held and takes ev_lock; readers take ev_lock alone).
 *
 * Line format (one object per line, keys in this order, compact):
 *   {"time":"2024-05-01T12:00:00.123Z","dir":"out","state":"waiting",
 *    "jid":"bob@example.org","peer":"","name":"a.txt","size":5,
 *    "progress":0,"method":"","error":"","id":12}
 * Strings are JSON-escaped; control characters are \u00XX (or \n, \t,...);
 * bytes that are not valid UTF-8 become U+FFFD, so every line is valid JSON
 * in valid UTF-8 whatever the network sent.
 */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

/* ---- JSON ------------------------------------------------------------ */

static void store_ev_put(struct store_evbuf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;

		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void store_ev_puts(struct store_evbuf *b, const char *s)
{
	store_ev_put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at p (1..4), 0 if p starts an
 * invalid one (overlong forms, surrogates and > U+10FFFF included). The
 * string's NUL fails every continuation test, so nothing past it is read. */
static size_t store_utf8_len(const unsigned char *p)
{
	unsigned c = p[0], lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (c == 0xe0)
			lo = 0xa0;
		if (c == 0xed)
			hi = 0x9f;
		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3
									  : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (c == 0xf0)
			lo = 0x90;
		if (c == 0xf4)
			hi = 0x8f;
		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 &&
				       (p[3] & 0xc0) == 0x80
			       ? 4
			       : 0;
	}
	return 0;
}

/* s as a JSON string, quotes included. */
static void store_ev_str(struct store_evbuf *b, const char *str)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)(str ? str : "");
	char esc[8];

	store_ev_put(b, "\"", 1);
	while (*s) {
		size_t n = store_utf8_len(s);

		if (n == 0) {
			store_ev_put(b, "\xef\xbf\xbd", 3); /* U+FFFD */
			s++;
			continue;
		}
		if (n > 1) {
			store_ev_put(b, (const char *)s, n);
			s += n;
			continue;
		}
		switch (*s) {
		case '"':
			store_ev_put(b, "\\\"", 2);
			break;
		case '\\':
			store_ev_put(b, "\\\\", 2);
			break;
		case '\n':
			store_ev_put(b, "\\n", 2);
			break;
		case '\r':
			store_ev_put(b, "\\r", 2);
			break;
		case '\t':
			store_ev_put(b, "\\t", 2);
			break;
		default:
			if (*s >= 0x20 && *s != 0x7f) {
				store_ev_put(b, (const char *)s, 1);
				break;
			}
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*s >> 4];
			esc[5] = hex[*s & 15];
			store_ev_put(b, esc, 6);
			break;
		}
		s++;
	}
	store_ev_put(b, "\"", 1);
}

/* ISO 8601 UTC with milliseconds: 2024-05-01T12:00:00.123Z */
static void store_ev_time(char *out, size_t len, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms < 0 || !gmtime_r(&t, &tm)) {
		snprintf(out, len, "1970-01-01T00:00:00.000Z");
		return;
	}
	snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static void store_ev_field(struct store_evbuf *b, const char *key,
			   const char *val)
{
	store_ev_puts(b, key);
	store_ev_str(b, val);
}

void store_ev_stage(struct store *st, const struct store_xfer *x)
{
	struct store_evbuf *b = &st->ev_pend;
	char num[96];
	size_t mark = b->len;

	store_ev_time(num, sizeof(num), store_now_ms());
	store_ev_field(b, "{\"time\":", num);
	store_ev_field(b, ",\"dir\":", x->outgoing ? "out" : "in");
	store_ev_field(b, ",\"state\":", store_state_name(x->state));
	store_ev_field(b, ",\"jid\":", x->jid);
	store_ev_field(b, ",\"peer\":", x->peer);
	store_ev_field(b, ",\"name\":", x->name);
	snprintf(num, sizeof(num), ",\"size\":%" PRIu64 ",\"progress\":%" PRIu64,
		 x->size, x->progress);
	store_ev_puts(b, num);
	store_ev_field(b, ",\"method\":", x->method);
	store_ev_field(b, ",\"error\":", x->error);
	snprintf(num, sizeof(num), ",\"id\":%" PRId64 "}\n", x->id);
	store_ev_puts(b, num);
	if (b->err) {
		/* Out of memory: lose this line, keep the ones before. */
		b->len = mark;
		b->err = 0;
		log_warnx("store", "event line dropped: out of memory");
	}
}

void store_ev_stage_out(struct store *st, const struct store_out *o,
			enum store_state state, const char *error)
{
	struct store_xfer x = {
		.outgoing = 1,
		.id = o->id,
		.jid = o->contact,
		.peer = o->peer,
		.name = o->name,
		.state = state,
		.size = o->size,
		.progress = o->progress,
		.method = o->method,
		.error = error ? error : o->error,
	};

	store_ev_stage(st, &x);
}

void store_ev_stage_in(struct store *st, const struct store_in *in)
{
	struct store_xfer x = {
		.outgoing = 0,
		.id = in->id,
		.jid = in->sender,
		.peer = in->peer,
		.name = in->name,
		.state = in->state,
		.size = in->size,
		.progress = in->progress,
		.method = in->method,
		.error = in->error,
	};

	store_ev_stage(st, &x);
}

/* ---- the ring -------------------------------------------------------- */

int store_ev_init(struct store *st)
{
	pthread_condattr_t ca;

	st->ev_cap = STORE_EVENTS_RING;
	st->ev_ring = malloc(st->ev_cap);
	if (!st->ev_ring)
		return -ENOMEM;
	pthread_mutex_init(&st->ev_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->ev_cond, &ca);
	pthread_condattr_destroy(&ca);
	st->ev_ready = 1;
	return 0;
}

void store_ev_fini(struct store *st)
{
	if (st->ev_ready) {
		pthread_cond_destroy(&st->ev_cond);
		pthread_mutex_destroy(&st->ev_lock);
	}
	st->ev_ready = 0;
	free(st->ev_ring);
	free(st->ev_pend.p);
}

void store_ev_discard(struct store *st)
{
	st->ev_pend.len = 0;
	st->ev_pend.err = 0;
}

/* Drop whole lines from the front until n more bytes fit. ev_lock held. */
static void store_ev_make_room(struct store *st, size_t n)
{
	while (st->ev_end - st->ev_start + n > st->ev_cap) {
		char c;

		do {
			c = st->ev_ring[st->ev_start % st->ev_cap];
			st->ev_start++;
		} while (c != '\n' && st->ev_start < st->ev_end);
	}
}

/* Append one or more whole lines. ev_lock held. */
static void store_ev_append(struct store *st, const char *p, size_t n)
{
	size_t at, first;

	if (n > st->ev_cap)
		return; /* cannot happen: a line is a few KiB at most */
	store_ev_make_room(st, n);
	at = (size_t)(st->ev_end % st->ev_cap);
	first = st->ev_cap - at < n ? st->ev_cap - at : n;
	memcpy(st->ev_ring + at, p, first);
	memcpy(st->ev_ring, p + first, n - first);
	st->ev_end += n;
}

void store_ev_commit(struct store *st)
{
	struct store_evbuf *b = &st->ev_pend;
	size_t off = 0;

	if (!b->len || !st->ev_ready) {
		store_ev_discard(st);
		return;
	}
	pthread_mutex_lock(&st->ev_lock);
	/* Line by line, so a batch bigger than the ring still keeps its
	 * newest lines. */
	while (off < b->len) {
		const char *nl = memchr(b->p + off, '\n', b->len - off);
		size_t n = nl ? (size_t)(nl - (b->p + off)) + 1 : b->len - off;

		store_ev_append(st, b->p + off, n);
		off += n;
	}
	st->ev_last_ms = store_now_ms();
	pthread_cond_broadcast(&st->ev_cond);
	pthread_mutex_unlock(&st->ev_lock);
	store_ev_discard(st);
}

uint64_t store_events_end(struct store *st, int64_t *last_ms)
{
	uint64_t end;

	pthread_mutex_lock(&st->ev_lock);
	end = st->ev_end;
	if (last_ms)
		*last_ms = st->ev_last_ms;
	pthread_mutex_unlock(&st->ev_lock);
	return end;
}

/* Wait on ev_cond until the stream grows past off or the deadline passes.
 * ev_lock held. */
static void store_ev_wait(struct store *st, uint64_t off, int timeout_ms)
{
	struct timespec dl;

	if (timeout_ms < 0) {
		while (st->ev_end <= off)
			pthread_cond_wait(&st->ev_cond, &st->ev_lock);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	while (st->ev_end <= off)
		if (pthread_cond_timedwait(&st->ev_cond, &st->ev_lock, &dl) ==
		    ETIMEDOUT)
			break;
}

int store_events_read(struct store *st, uint64_t off, char *buf, size_t len,
		      int timeout_ms, uint64_t *next_off)
{
	size_t n = 0, at, first;

	if (!buf || !next_off)
		return -EINVAL;
	if (len > INT32_MAX)
		len = INT32_MAX;
	pthread_mutex_lock(&st->ev_lock);
	if (off > st->ev_end)
		off = st->ev_end;
	if (off == st->ev_end && timeout_ms != 0 && len > 0)
		store_ev_wait(st, off, timeout_ms);
	/* Fell out of the ring (or did while we waited): go on at the oldest
	 * line still held, never in the middle of one. */
	if (off < st->ev_start)
		off = st->ev_start;
	if (st->ev_end - off < len)
		len = (size_t)(st->ev_end - off);
	at = (size_t)(off % st->ev_cap);
	if (len) {
		first = st->ev_cap - at < len ? st->ev_cap - at : len;
		memcpy(buf, st->ev_ring + at, first);
		memcpy(buf + first, st->ev_ring, len - first);
		n = len;
	}
	*next_off = off + n;
	pthread_mutex_unlock(&st->ev_lock);
	return (int)n;
}
