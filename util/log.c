/*
 * util/log: see log.h. A single mutex keeps lines whole when several
 * threads log at once; syslog is already line-atomic.
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static int use_syslog;
static enum log_level max_level = LOG_LVL_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *log_ident = "xmppfs";

void log_init(const char *ident, int to_syslog, enum log_level max)
{
	log_ident = ident;
	use_syslog = to_syslog;
	max_level = max;
	if (use_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

int log_enabled(enum log_level lvl)
{
	return lvl <= max_level;
}

static const char *lvl_name(enum log_level lvl)
{
	switch (lvl) {
	case LOG_LVL_ERR:
		return "error";
	case LOG_LVL_WARNING:
		return "warning";
	case LOG_LVL_INFO:
		return "info";
	default:
		return "debug";
	}
}

void log_vmsg(enum log_level lvl, const char *mod, const char *fmt, va_list ap)
{
	int saved = errno;
	char buf[1024];

	if (!log_enabled(lvl)) {
		errno = saved;
		return;
	}
	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (use_syslog) {
		syslog((int)lvl, "%s: %s", mod, buf);
	} else {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		pthread_mutex_lock(&log_lock);
		fprintf(stderr, "%02d:%02d:%02d.%03ld %s[%s] %s: %s\n",
			tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			log_ident, mod, lvl_name(lvl), buf);
		pthread_mutex_unlock(&log_lock);
	}
	errno = saved;
}

void log_msg(enum log_level lvl, const char *mod, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(lvl, mod, fmt, ap);
	va_end(ap);
}

void log_warn(const char *mod, const char *fmt, ...)
{
	int saved = errno;
	char buf[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_msg(LOG_LVL_WARNING, mod, "%s: %s", buf, strerror(saved));
	errno = saved;
}

void fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("xmppfs: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}
