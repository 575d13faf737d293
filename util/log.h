/*
 * util/log: one log sink for the whole daemon (after OpenSMTPD log.h and
 * libfuse fuse_log.h). Messages go to stderr in the foreground and to
 * syslog when daemonized. log_warn() appends strerror(errno); log_warnx()
 * does not. errno is preserved by every call. Thread-safe.
 * Never log secrets or file contents.
 */
#ifndef XFS_LOG_H
#define XFS_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LVL_ERR = 3,
	LOG_LVL_WARNING = 4,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

/* Set where messages go and the most verbose level printed. */
void log_init(const char *ident, int to_syslog, enum log_level max);
int log_enabled(enum log_level lvl);

void log_msg(enum log_level lvl, const char *mod, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level lvl, const char *mod, const char *fmt,
	      va_list ap) __attribute__((format(printf, 3, 0)));

#define log_warnx(mod, ...) log_msg(LOG_LVL_WARNING, mod, __VA_ARGS__)
#define log_info(mod, ...) log_msg(LOG_LVL_INFO, mod, __VA_ARGS__)
#define log_debug(mod, ...)                                                 \
	do {                                                                \
		if (log_enabled(LOG_LVL_DEBUG))                             \
			log_msg(LOG_LVL_DEBUG, mod, __VA_ARGS__);           \
	} while (0)
#define log_errx(mod, ...) log_msg(LOG_LVL_ERR, mod, __VA_ARGS__)

/* Like log_warnx, with ": strerror(errno)" appended. */
void log_warn(const char *mod, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Startup only: print and exit(1). */
void fatalx(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
