/*
 * purplepeer: a headless libpurple 2.x (Pidgin's library) XMPP client for
 * xmppfs interoperability tests. It logs in to one account with
 * prpl-jabber and either receives file transfers (auto-accepted) or sends
 * one file, then prints one JSON line per file and exits.
 *
 *   purplepeer --jid bob@localhost/purple --password bob-pw --port N
 *              --userdir D [--cert SERVER.pem] [--ready-file F]
 *              receive --dir OUT [--count 1] [--timeout 60]
 *   purplepeer ... send --to alice@localhost/xmppfs --file F [--timeout 60]
 *
 * receive prints {"name","size","expected","md5"?...,"ok","error","from"}
 * per file; send prints {"ok","error","size","to"}. Exit status 0 when every
 * file went through, 1 when one failed, 2 on timeout, 3 on login failure,
 * 64 on bad usage.
 *
 * Loopback only: libpurple would offer every interface address (and a
 * UPnP/STUN-discovered public one) as a SOCKS5 streamhost and would look up
 * _stun._udp SRV records through the system resolver. The test machine must
 * never send traffic off the loopback, so this program pins the server
 * (connect_server 127.0.0.1), sets the network prefs (no auto IP, no port
 * mapping, no STUN) in the private user dir before libpurple starts, and
 * interposes the few libpurple functions that would reach other addresses
 * (local IP list, my-IP, UPnP discovery, SRV/TXT resolution). The binary is
 * linked with --export-dynamic so the prpl plugin (libjabber.so) binds to
 * these definitions.
 *
 * TLS: the server certificate is pinned in the user dir's
 * certificates/x509/tls_peers/<domain> (libpurple's own cache), and as a
 * fallback every "Accept certificate?" request is answered with Accept.
 */
#define _GNU_SOURCE
#include <purple.h>
#include <glib.h>
#include <glib/gstdio.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UI_ID "purplepeer"

/* ------------------------------------------------------------ options */

static const char *opt_jid, *opt_password, *opt_userdir, *opt_cert;
static const char *opt_ready_file, *opt_mode, *opt_dir, *opt_to, *opt_file;
static const char *opt_proxies = "proxy.localhost";
static int opt_port = 5222, opt_count = 1, opt_timeout = 60;
static gboolean opt_debug;

static GMainLoop *loop;
static PurpleAccount *account;
static int results, failures, exit_code;
static gboolean signed_on, ready_done, send_started, target_online;
static char *last_error;
static GHashTable *accepted;    /* xfer -> local path (receive) */

static void
logmsg(const char *fmt, ...)
{
	va_list ap;
	GDateTime *now = g_date_time_new_now_local();
	gchar *ts = g_date_time_format(now, "%H:%M:%S.%f");

	fprintf(stderr, "purplepeer %.12s: ", ts);
	g_free(ts);
	g_date_time_unref(now);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

/* ------------------------------------------- loopback-only interposers */

GList *
purple_network_get_all_local_system_ips(void)
{
	return g_list_append(NULL, g_strdup("127.0.0.1"));
}

const char *
purple_network_get_my_ip(int fd)
{
	(void)fd;
	return "127.0.0.1";
}

const char *
purple_network_get_local_system_ip(int fd)
{
	(void)fd;
	return "127.0.0.1";
}

void
purple_upnp_discover(PurpleUPnPCallback cb, gpointer cb_data)
{
	(void)cb;
	(void)cb_data;
	logmsg("UPnP discovery suppressed (loopback only)");
}

const gchar *
purple_upnp_get_public_ip(void)
{
	return NULL;
}

PurpleSrvTxtQueryData *
purple_srv_resolve_account(PurpleAccount *a, const char *protocol,
                           const char *transport, const char *domain,
                           PurpleSrvCallback cb, gpointer extradata)
{
	(void)a; (void)cb; (void)extradata;
	logmsg("SRV lookup _%s._%s.%s suppressed (loopback only)",
	       protocol, transport, domain);
	return NULL;
}

PurpleSrvTxtQueryData *
purple_srv_resolve(const char *protocol, const char *transport,
                   const char *domain, PurpleSrvCallback cb,
                   gpointer extradata)
{
	return purple_srv_resolve_account(NULL, protocol, transport, domain,
	                                  cb, extradata);
}

PurpleSrvTxtQueryData *
purple_txt_resolve_account(PurpleAccount *a, const char *owner,
                           const char *domain, PurpleTxtCallback cb,
                           gpointer extradata)
{
	(void)a; (void)cb; (void)extradata;
	logmsg("TXT lookup %s.%s suppressed (loopback only)", owner, domain);
	return NULL;
}

PurpleSrvTxtQueryData *
purple_txt_resolve(const char *owner, const char *domain,
                   PurpleTxtCallback cb, gpointer extradata)
{
	return purple_txt_resolve_account(NULL, owner, domain, cb, extradata);
}

/* -------------------------------------------------------- JSON output */

static void
json_str(GString *s, const char *v)
{
	const unsigned char *p;

	if (!v) {
		g_string_append(s, "null");
		return;
	}
	g_string_append_c(s, '"');
	for (p = (const unsigned char *)v; *p; p++) {
		switch (*p) {
		case '"': g_string_append(s, "\\\""); break;
		case '\\': g_string_append(s, "\\\\"); break;
		case '\n': g_string_append(s, "\\n"); break;
		case '\r': g_string_append(s, "\\r"); break;
		case '\t': g_string_append(s, "\\t"); break;
		default:
			if (*p < 0x20)
				g_string_append_printf(s, "\\u%04x", *p);
			else
				g_string_append_c(s, *p);
		}
	}
	g_string_append_c(s, '"');
}

static void
emit(GString *s)
{
	g_string_append(s, "}\n");
	fputs(s->str, stdout);
	fflush(stdout);
	logmsg("result: %s", g_strchomp(s->str));
	g_string_free(s, TRUE);
}

/* ------------------------------------------------------ event loop ops */

#define PURPLE_GLIB_READ_COND  (G_IO_IN | G_IO_HUP | G_IO_ERR)
#define PURPLE_GLIB_WRITE_COND (G_IO_OUT | G_IO_HUP | G_IO_ERR | G_IO_NVAL)

typedef struct {
	PurpleInputFunction function;
	guint result;
	gpointer data;
} IoClosure;

static void
io_destroy(gpointer data)
{
	g_free(data);
}

static gboolean
io_invoke(GIOChannel *source, GIOCondition condition, gpointer data)
{
	IoClosure *closure = data;
	PurpleInputCondition cond = 0;

	if (condition & PURPLE_GLIB_READ_COND)
		cond |= PURPLE_INPUT_READ;
	if (condition & PURPLE_GLIB_WRITE_COND)
		cond |= PURPLE_INPUT_WRITE;
	closure->function(closure->data, g_io_channel_unix_get_fd(source), cond);
	return TRUE;
}

static guint
glib_input_add(gint fd, PurpleInputCondition condition,
               PurpleInputFunction function, gpointer data)
{
	IoClosure *closure = g_new0(IoClosure, 1);
	GIOChannel *channel;
	GIOCondition cond = 0;

	closure->function = function;
	closure->data = data;
	if (condition & PURPLE_INPUT_READ)
		cond |= PURPLE_GLIB_READ_COND;
	if (condition & PURPLE_INPUT_WRITE)
		cond |= PURPLE_GLIB_WRITE_COND;
	channel = g_io_channel_unix_new(fd);
	closure->result = g_io_add_watch_full(channel, G_PRIORITY_DEFAULT, cond,
	                                      io_invoke, closure, io_destroy);
	g_io_channel_unref(channel);
	return closure->result;
}

static PurpleEventLoopUiOps eventloop_ops = {
	.timeout_add = g_timeout_add,
	.timeout_remove = g_source_remove,
	.input_add = glib_input_add,
	.input_remove = g_source_remove,
	.timeout_add_seconds = g_timeout_add_seconds,
};

/* ------------------------------------------------ request / notify ops */

typedef struct {
	PurpleRequestActionCb cb;
	void *user_data;
	int index;
} Deferred;

static gboolean
run_deferred(gpointer p)
{
	Deferred *d = p;

	d->cb(d->user_data, d->index);
	g_free(d);
	return FALSE;
}

static void *
request_action(const char *title, const char *primary, const char *secondary,
               int default_action, PurpleAccount *acct, const char *who,
               PurpleConversation *conv, void *user_data,
               size_t action_count, va_list actions)
{
	int pick = default_action >= 0 ? default_action : 0;
	size_t i;
	Deferred *d = NULL;

	(void)acct; (void)who; (void)conv;
	for (i = 0; i < action_count; i++) {
		const char *label = va_arg(actions, const char *);
		PurpleRequestActionCb cb = va_arg(actions, PurpleRequestActionCb);

		if ((int)i == pick && cb) {
			d = g_new0(Deferred, 1);
			d->cb = cb;
			d->user_data = user_data;
			d->index = pick;
			logmsg("request '%s' / '%s' / '%s': answering '%s'",
			       title ? title : "", primary ? primary : "",
			       secondary ? secondary : "", label ? label : "?");
		}
	}
	if (d)
		g_idle_add(run_deferred, d);
	return NULL;
}

static void *
notify_message(PurpleNotifyMsgType type, const char *title,
               const char *primary, const char *secondary)
{
	logmsg("notify(%d) %s: %s %s", type, title ? title : "",
	       primary ? primary : "", secondary ? secondary : "");
	if (type == PURPLE_NOTIFY_MSG_ERROR) {
		g_free(last_error);
		last_error = g_strdup_printf("%s%s%s", primary ? primary : "",
		                             secondary ? ": " : "",
		                             secondary ? secondary : "");
	}
	return NULL;
}

static PurpleRequestUiOps request_ops = {
	.request_action = request_action,
};

static PurpleNotifyUiOps notify_ops = {
	.notify_message = notify_message,
};

static void
debug_print(PurpleDebugLevel level, const char *category, const char *arg)
{
	(void)level;
	fprintf(stderr, "  [%s] %s", category ? category : "-", arg);
	if (!*arg || arg[strlen(arg) - 1] != '\n')
		fputc('\n', stderr);
}

static gboolean
debug_is_enabled(PurpleDebugLevel level, const char *category)
{
	(void)level; (void)category;
	return opt_debug;
}

static PurpleDebugUiOps debug_ops = {
	.print = debug_print,
	.is_enabled = debug_is_enabled,
};

static void
ui_init(void)
{
	purple_request_set_ui_ops(&request_ops);
	purple_notify_set_ui_ops(&notify_ops);
}

static PurpleCoreUiOps core_ops = {
	.ui_init = ui_init,
};

/* ----------------------------------------------------------- transfers */

static void finish_soon(int code);

static char *
md5_of(const char *path, goffset *size)
{
	GChecksum *ck = g_checksum_new(G_CHECKSUM_MD5);
	FILE *f = fopen(path, "rb");
	guchar buf[65536];
	size_t n;
	char *out;

	*size = -1;
	if (!f) {
		g_checksum_free(ck);
		return NULL;
	}
	*size = 0;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		g_checksum_update(ck, buf, n);
		*size += n;
	}
	fclose(f);
	out = g_strdup(g_checksum_get_string(ck));
	g_checksum_free(ck);
	return out;
}

typedef struct {
	char *name, *who, *local, *why;
	gboolean recv, ok;
	gsize expected;
	int status;
} Report;

/* Runs a little after the completion signal: libpurple emits
 * file-recv-complete before purple_xfer_end() closes the local file. */
static gboolean
report_now(gpointer data)
{
	Report *r = data;
	GString *s = g_string_new("{");
	goffset have = -1;
	char *md5 = NULL;
	char *err;
	gboolean ok = r->ok;
	const char *why = r->why;

	if (ok && r->recv && r->local)
		md5 = md5_of(r->local, &have);
	if (ok && r->recv && have != (goffset)r->expected) {
		ok = FALSE;
		why = "size mismatch";
	}
	err = ok ? NULL : g_strdup_printf("%s%s%s", why ? why : "failed",
	                                  last_error ? ": " : "",
	                                  last_error ? last_error : "");
	g_string_append(s, "\"name\": ");
	json_str(s, r->name);
	g_string_append_printf(s, ", \"direction\": \"%s\"",
	                       r->recv ? "receive" : "send");
	g_string_append_printf(s, ", \"expected\": %" G_GSIZE_FORMAT,
	                       r->expected);
	if (r->recv) {
		g_string_append_printf(s, ", \"size\": %" G_GINT64_FORMAT,
		                       (gint64)have);
		g_string_append(s, ", \"md5\": ");
		json_str(s, md5);
		g_string_append(s, ", \"path\": ");
		json_str(s, r->local);
		g_string_append(s, ", \"from\": ");
	} else {
		g_string_append(s, ", \"to\": ");
	}
	json_str(s, r->who);
	g_string_append_printf(s, ", \"status\": %d", r->status);
	g_string_append_printf(s, ", \"ok\": %s, \"error\": ",
	                       ok ? "true" : "false");
	json_str(s, err);
	emit(s);
	g_free(md5);
	g_free(err);
	g_free(last_error);
	last_error = NULL;

	results++;
	if (!ok)
		failures++;
	if (strcmp(opt_mode, "send") == 0 || results >= opt_count)
		finish_soon(failures ? 1 : 0);
	g_free(r->name);
	g_free(r->who);
	g_free(r->local);
	g_free(r->why);
	g_free(r);
	return FALSE;
}

static void
report_xfer(PurpleXfer *xfer, gboolean ok, const char *why)
{
	Report *r = g_new0(Report, 1);

	r->name = g_strdup(purple_xfer_get_filename(xfer));
	r->who = g_strdup(purple_xfer_get_remote_user(xfer));
	r->local = g_strdup(purple_xfer_get_local_filename(xfer));
	r->why = g_strdup(why);
	r->recv = purple_xfer_get_type(xfer) == PURPLE_XFER_RECEIVE;
	r->ok = ok;
	r->expected = purple_xfer_get_size(xfer);
	r->status = purple_xfer_get_status(xfer);
	g_timeout_add(200, report_now, r);
}

static void
file_recv_request(PurpleXfer *xfer, gpointer data)
{
	const char *name = purple_xfer_get_filename(xfer);
	char *base, *path;

	(void)data;
	if (purple_xfer_get_type(xfer) != PURPLE_XFER_RECEIVE)
		return;
	base = g_path_get_basename(name && *name ? name : "unnamed");
	if (!strcmp(base, ".") || !strcmp(base, "..") || !strcmp(base, "/")) {
		g_free(base);
		base = g_strdup("unnamed");
	}
	path = g_build_filename(opt_dir, base, NULL);
	logmsg("offer from %s: %s (%" G_GSIZE_FORMAT " bytes) -> %s",
	       purple_xfer_get_remote_user(xfer), name ? name : "(null)",
	       (gsize)purple_xfer_get_size(xfer), path);
	g_hash_table_insert(accepted, xfer, g_strdup(path));
	purple_xfer_request_accepted(xfer, path);
	g_free(base);
	g_free(path);
}

static void
file_complete(PurpleXfer *xfer, gpointer data)
{
	(void)data;
	logmsg("complete: %s", purple_xfer_get_filename(xfer));
	report_xfer(xfer, TRUE, NULL);
}

static void
file_cancel(PurpleXfer *xfer, gpointer data)
{
	PurpleXferStatusType st = purple_xfer_get_status(xfer);
	gboolean remote = st == PURPLE_XFER_STATUS_CANCEL_REMOTE;

	(void)data;

	logmsg("cancelled (%s, status %d): %s", remote ? "remote" : "local",
	       st, purple_xfer_get_filename(xfer));
	report_xfer(xfer, FALSE, remote ? "cancelled by peer"
	                                : "cancelled locally");
}

static void
file_start(PurpleXfer *xfer, gpointer data)
{
	(void)data;
	logmsg("started: %s", purple_xfer_get_filename(xfer));
}

/* ---------------------------------------------------------- lifecycle */

static gboolean
quit_cb(gpointer data)
{
	(void)data;
	g_main_loop_quit(loop);
	return FALSE;
}

static void
finish_soon(int code)
{
	static gboolean finishing;

	if (finishing)
		return;
	finishing = TRUE;
	exit_code = code;
	/* let libpurple flush its last acks and stanzas */
	g_timeout_add(500, quit_cb, NULL);
}

static gboolean
timeout_cb(gpointer data)
{
	GString *s = g_string_new("{\"ok\": false, \"error\": ");
	char *e;

	(void)data;
	e = g_strdup_printf("timeout after %d s (%s; %d of %d files done)%s%s",
	                    opt_timeout,
	                    !signed_on ? "not signed on" :
	                    (!strcmp(opt_mode, "send") && !target_online)
	                    ? "target not online" : "signed on",
	                    results, strcmp(opt_mode, "send") ? opt_count : 1,
	                    last_error ? ": " : "", last_error ? last_error : "");
	json_str(s, e);
	g_free(e);
	emit(s);
	exit_code = 2;
	g_main_loop_quit(loop);
	return FALSE;
}

static void
write_ready(void)
{
	if (ready_done)
		return;
	ready_done = TRUE;
	logmsg("READY %s", opt_jid);
	if (opt_ready_file) {
		char *tmp = g_strconcat(opt_ready_file, ".tmp", NULL);

		if (g_file_set_contents(tmp, opt_jid, -1, NULL))
			g_rename(tmp, opt_ready_file);
		g_free(tmp);
	}
}

static gboolean
ready_cb(gpointer data)
{
	(void)data;
	write_ready();
	return FALSE;
}

static gboolean
start_send(gpointer data)
{
	PurpleConnection *gc = purple_account_get_connection(account);

	(void)data;
	if (send_started || !gc)
		return FALSE;
	send_started = TRUE;
	logmsg("sending %s to %s", opt_file, opt_to);
	serv_send_file(gc, opt_to, opt_file);
	return FALSE;
}

static gboolean
same_target(const char *from)
{
	size_t n;

	if (!from)
		return FALSE;
	if (strchr(opt_to, '/'))
		return g_ascii_strcasecmp(from, opt_to) == 0;
	n = strlen(opt_to);
	return g_ascii_strncasecmp(from, opt_to, n) == 0 &&
	       (from[n] == '/' || from[n] == '\0');
}

static gboolean
jabber_presence(PurpleConnection *gc, const char *type, const char *from,
                xmlnode *presence, gpointer data)
{
	(void)gc; (void)presence; (void)data;
	logmsg("presence %s from %s", type ? type : "available",
	       from ? from : "?");
	if (opt_mode && !strcmp(opt_mode, "send") && same_target(from)) {
		if (!type || !*type) {
			if (!target_online) {
				target_online = TRUE;
				/* give caps/disco a moment, then offer */
				g_timeout_add(700, start_send, NULL);
			}
		} else if (!strcmp(type, "unavailable")) {
			target_online = FALSE;
		}
	}
	return FALSE;   /* not handled: let libpurple process it */
}

static void
signed_on_cb(PurpleConnection *gc, gpointer data)
{
	(void)data; (void)gc;
	signed_on = TRUE;
	logmsg("signed on as %s", opt_jid);
	/* initial presence goes out with the sign-on; a short delay so that
	 * peers see us before the test acts on the ready file */
	g_timeout_add(300, ready_cb, NULL);
}

static void
connection_error_cb(PurpleConnection *gc, PurpleConnectionError err,
                    const gchar *desc, gpointer data)
{
	GString *s;
	char *e;

	(void)gc; (void)data;
	logmsg("connection error %d: %s", err, desc ? desc : "");
	if (signed_on && results > 0)
		return;
	s = g_string_new("{\"ok\": false, \"error\": ");
	e = g_strdup_printf("connection error %d: %s", err, desc ? desc : "");
	json_str(s, e);
	g_free(e);
	emit(s);
	exit_code = 3;
	g_main_loop_quit(loop);
}

/* ---------------------------------------------------------- user dir */

static gboolean
write_file(const char *path, const char *text)
{
	GError *err = NULL;

	if (!g_file_set_contents(path, text, -1, &err)) {
		logmsg("cannot write %s: %s", path, err->message);
		g_error_free(err);
		return FALSE;
	}
	return TRUE;
}

static gboolean
prepare_userdir(const char *domain)
{
	char *certdir, *p;
	gboolean ok = TRUE;

	if (g_mkdir_with_parents(opt_userdir, 0700) < 0) {
		logmsg("mkdir %s: %s", opt_userdir, g_strerror(errno));
		return FALSE;
	}
	/* Read by purple_prefs_init inside purple_core_init, before the
	 * network code starts (which would otherwise run UPnP discovery). */
	p = g_build_filename(opt_userdir, "prefs.xml", NULL);
	ok = write_file(p,
		"<?xml version='1.0' encoding='UTF-8' ?>\n"
		"<pref version='1' name='/'>\n"
		" <pref name='purple'>\n"
		"  <pref name='network'>\n"
		"   <pref name='auto_ip' type='bool' value='0'/>\n"
		"   <pref name='public_ip' type='string' value='127.0.0.1'/>\n"
		"   <pref name='map_ports' type='bool' value='0'/>\n"
		"   <pref name='stun_server' type='string' value=''/>\n"
		"   <pref name='turn_server' type='string' value=''/>\n"
		"   <pref name='ports_range_use' type='bool' value='0'/>\n"
		"  </pref>\n"
		"  <pref name='proxy'>\n"
		"   <pref name='type' type='string' value='none'/>\n"
		"  </pref>\n"
		"  <pref name='logging'>\n"
		"   <pref name='log_ims' type='bool' value='0'/>\n"
		"   <pref name='log_chats' type='bool' value='0'/>\n"
		"   <pref name='log_system' type='bool' value='0'/>\n"
		"  </pref>\n"
		" </pref>\n"
		"</pref>\n");
	g_free(p);
	if (ok && opt_cert) {
		char *pem = NULL;
		GError *err = NULL;

		certdir = g_build_filename(opt_userdir, "certificates", "x509",
		                           "tls_peers", NULL);
		g_mkdir_with_parents(certdir, 0700);
		if (!g_file_get_contents(opt_cert, &pem, NULL, &err)) {
			logmsg("cannot read --cert %s: %s", opt_cert, err->message);
			g_error_free(err);
			ok = FALSE;
		} else {
			/* libpurple names the peer after the host it connected
			 * to (connect_server), and after the domain otherwise */
			p = g_build_filename(certdir, domain, NULL);
			ok = write_file(p, pem);
			g_free(p);
			p = g_build_filename(certdir, "127.0.0.1", NULL);
			ok = ok && write_file(p, pem);
			g_free(p);
		}
		g_free(pem);
		g_free(certdir);
	}
	return ok;
}

/* --------------------------------------------------------------- main */

static void
usage(void)
{
	fprintf(stderr,
	        "usage: purplepeer --jid JID/RES --password PW --port N --userdir D\n"
	        "                  [--cert SERVER.pem] [--proxies JID[,JID]]\n"
	        "                  [--ready-file F] [--debug]\n"
	        "                  receive --dir OUT [--count N] [--timeout S]\n"
	        "       purplepeer ... send --to JID[/RES] --file F [--timeout S]\n");
	exit(64);
}

int
main(int argc, char **argv)
{
	int i;
	char *domain, *slash;
	PurplePlugin *jabber;
	PurpleSavedStatus *status;
	static int handle;

	signal(SIGPIPE, SIG_IGN);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
#define ARG(name, var) \
		if (!strcmp(a, name)) { if (++i >= argc) usage(); var = argv[i]; continue; }
#define IARG(name, var) \
		if (!strcmp(a, name)) { if (++i >= argc) usage(); var = atoi(argv[i]); continue; }
		ARG("--jid", opt_jid)
		ARG("--password", opt_password)
		ARG("--userdir", opt_userdir)
		ARG("--cert", opt_cert)
		ARG("--ready-file", opt_ready_file)
		ARG("--proxies", opt_proxies)
		ARG("--dir", opt_dir)
		ARG("--to", opt_to)
		ARG("--file", opt_file)
		IARG("--port", opt_port)
		IARG("--count", opt_count)
		IARG("--timeout", opt_timeout)
		if (!strcmp(a, "--debug")) { opt_debug = TRUE; continue; }
		if (!strcmp(a, "receive") || !strcmp(a, "send")) {
			opt_mode = a;
			continue;
		}
		fprintf(stderr, "purplepeer: unknown argument %s\n", a);
		usage();
	}
	if (!opt_jid || !opt_password || !opt_userdir || !opt_mode)
		usage();
	if (!strcmp(opt_mode, "receive") && !opt_dir)
		usage();
	if (!strcmp(opt_mode, "send") && (!opt_to || !opt_file))
		usage();
	if (!strchr(opt_jid, '@'))
		usage();

	domain = g_strdup(strchr(opt_jid, '@') + 1);
	if ((slash = strchr(domain, '/')))
		*slash = '\0';
	if (!prepare_userdir(domain))
		return 3;
	if (opt_dir)
		g_mkdir_with_parents(opt_dir, 0755);

	loop = g_main_loop_new(NULL, FALSE);
	accepted = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
	                                 g_free);

	purple_util_set_user_dir(opt_userdir);
	purple_debug_set_enabled(FALSE);
	purple_debug_set_ui_ops(&debug_ops);
	purple_core_set_ui_ops(&core_ops);
	purple_eventloop_set_ui_ops(&eventloop_ops);
	if (!purple_core_init(UI_ID)) {
		logmsg("libpurple initialization failed");
		return 3;
	}
	/* belt and braces: the prefs file should already say so */
	purple_prefs_set_bool("/purple/network/auto_ip", FALSE);
	purple_prefs_set_string("/purple/network/public_ip", "127.0.0.1");
	purple_prefs_set_bool("/purple/network/map_ports", FALSE);
	purple_network_set_public_ip("127.0.0.1");
	purple_set_blist(purple_blist_new());

	jabber = purple_find_prpl("prpl-jabber");
	if (!jabber) {
		logmsg("prpl-jabber not found (libpurple plugins missing?)");
		return 3;
	}
	if (!purple_ssl_is_supported()) {
		logmsg("libpurple has no SSL plugin");
		return 3;
	}

	account = purple_account_new(opt_jid, "prpl-jabber");
	purple_account_set_password(account, opt_password);
	purple_account_set_remember_password(account, FALSE);
	purple_account_set_string(account, "connect_server", "127.0.0.1");
	purple_account_set_int(account, "port", opt_port);
	purple_account_set_string(account, "connection_security", "require_tls");
	purple_account_set_bool(account, "require_tls", TRUE);
	purple_account_set_bool(account, "auth_plain_in_clear", FALSE);
	purple_account_set_string(account, "ft_proxies", opt_proxies);
	purple_account_set_string(account, "bosh_url", "");
	purple_accounts_add(account);

	purple_signal_connect(purple_connections_get_handle(), "signed-on",
	                      &handle, PURPLE_CALLBACK(signed_on_cb), NULL);
	purple_signal_connect(purple_connections_get_handle(), "connection-error",
	                      &handle, PURPLE_CALLBACK(connection_error_cb), NULL);
	purple_signal_connect(jabber, "jabber-receiving-presence", &handle,
	                      PURPLE_CALLBACK(jabber_presence), NULL);
	purple_signal_connect(purple_xfers_get_handle(), "file-recv-request",
	                      &handle, PURPLE_CALLBACK(file_recv_request), NULL);
	purple_signal_connect(purple_xfers_get_handle(), "file-recv-start",
	                      &handle, PURPLE_CALLBACK(file_start), NULL);
	purple_signal_connect(purple_xfers_get_handle(), "file-send-start",
	                      &handle, PURPLE_CALLBACK(file_start), NULL);
	purple_signal_connect(purple_xfers_get_handle(), "file-recv-complete",
	                      &handle, PURPLE_CALLBACK(file_complete), NULL);
	purple_signal_connect(purple_xfers_get_handle(), "file-send-complete",
	                      &handle, PURPLE_CALLBACK(file_complete), NULL);
	purple_signal_connect(purple_xfers_get_handle(), "file-recv-cancel",
	                      &handle, PURPLE_CALLBACK(file_cancel),
	                      GINT_TO_POINTER(0));
	purple_signal_connect(purple_xfers_get_handle(), "file-send-cancel",
	                      &handle, PURPLE_CALLBACK(file_cancel),
	                      GINT_TO_POINTER(0));

	purple_account_set_enabled(account, UI_ID, TRUE);
	status = purple_savedstatus_new(NULL, PURPLE_STATUS_AVAILABLE);
	purple_savedstatus_activate(status);

	g_timeout_add_seconds(opt_timeout, timeout_cb, NULL);
	logmsg("connecting as %s to 127.0.0.1:%d (%s)", opt_jid, opt_port,
	       opt_mode);
	g_main_loop_run(loop);

	fflush(stdout);
	/* No purple_core_quit(): a plain exit is enough for a test peer and
	 * avoids libpurple's slow teardown of half-open transfers. */
	_exit(exit_code);
}
