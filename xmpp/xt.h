/*
 * xmpp/xt: the XMPP side of xmppfs ("XMPP transfer").
 *
 * One thread (named "xmpp") owns the libstrophe context and connection and
 * runs the transfer engine: roster and presence, disco, SI offers in both
 * directions, IBB. SOCKS5 streams move their bytes on worker threads.
 * Everything else talks to it through the store (the source of truth) and
 * xt_wake(). See xmpp/engine.c for the design.
 */
#ifndef XFS_XT_H
#define XFS_XT_H

#include <stdint.h>
#include <stddef.h>

#include "xmpp/proto.h"

struct store;
struct xt;

enum xt_accept {
	XT_ACCEPT_ROSTER = 0, /* roster contacts we have a subscription with */
	XT_ACCEPT_ALL,
	XT_ACCEPT_NONE,
};

struct xt_config {
	struct store *store;
	const char *jid;       /* bare JID of the account */
	const char *password;
	const char *resource;  /* default "xmppfs" */
	const char *server;    /* host to connect to, NULL = SRV/domain */
	unsigned short port;   /* 0 = 5222 */
	const char *cafile;    /* trust this CA alone, NULL = system store */
	enum xt_accept accept;
	uint64_t max_size;     /* 0 = no limit but free space */
	enum proto_method methods[2];
	int nmethods;
	const char *proxy;     /* JID of a proxy65 to use, "none", NULL=disco */
	const char *s5b_host;  /* address offered for direct S5B, "none",
				  NULL = local address of the server link */
	const char *on_receive; /* shell command run after a file arrives */
	const char *mountpoint; /* for paths given to on_receive */
	int debug;             /* log protocol steps */
};

/* Create the engine (no thread, no connection yet). cfg strings are
 * copied. */
int xt_new(const struct xt_config *cfg, struct xt **out);

/*
 * Start the xmpp thread and its first connection attempt; then wait up to
 * timeout_ms for the first login. Returns 0 when logged in; -EACCES (wrong
 * password), -EPERM (certificate not trusted), -ENOENT (unknown host) or
 * -EINVAL (bad JID) are fatal; -ETIMEDOUT / -ECONNREFUSED / -EHOSTUNREACH mean the server is not
 * reachable now (the thread keeps retrying with backoff). err gets one line
 * for the user.
 */
int xt_start(struct xt *xt, int timeout_ms, char *err, size_t errlen);

/* Thread-safe, never blocks: something changed in the store (a file is
 * ready, was changed or deleted). Signature fits fs_wake_fn. */
void xt_wake(void *xt);

/* Stop the thread: transfers in flight are left resumable. */
void xt_stop(struct xt *xt);
void xt_free(struct xt *xt); /* NULL is fine */

#endif
