/*
 * main: options, wiring, daemonizing, signals.
 *
 * Start-up order matters because a daemon must report failures to the
 * user's terminal before it detaches, and threads do not survive fork():
 *
 *   parse options and password (foreground)
 *   fork (unless -f); the parent waits on a pipe for one status line
 *   child: open the store, start the XMPP thread and wait for the first
 *          login (wrong password / untrusted certificate: report, exit 1;
 *          unreachable server: report a warning and go on, files queue)
 *   mount (busy or missing mount point: report, exit 1)
 *   report "ok" through the pipe; the parent exits 0
 *   run the FUSE loop until unmount or SIGTERM/SIGINT/SIGHUP
 *   stop the XMPP thread (transfers left resumable), close the store
 */
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <mntent.h>
#include <strings.h>

#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs.h"
#include "main/options.h"
#include "store/store.h"
#include "util/log.h"
#include "xmpp/xt.h"

int status_main(int argc, char **argv); /* main/status_cmd.c */

/* The pipe to the waiting parent; -1 in the foreground. */
static int report_fd = -1;

/* Tell the user (stderr in the foreground, the parent otherwise) one line.
 * ok=1 means the mount is up and the parent may exit 0. */
static void report(int ok, const char *msg)
{
	if (report_fd < 0) {
		if (msg && *msg)
			fprintf(stderr, "xmppfs: %s\n", msg);
		return;
	}
	dprintf(report_fd, "%c%s\n", ok ? 'O' : (msg && strncmp(msg,
		"warning", 7) == 0 ? 'W' : 'E'), msg ? msg : "");
	if (ok) {
		close(report_fd);
		report_fd = -1;
	}
}

/* Parent side: relay the child's lines, exit with its verdict. */
static int wait_child(int fd)
{
	char buf[2048];
	FILE *f = fdopen(fd, "r");

	while (f && fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = '\0';
		if (buf[0] == 'O') {
			if (buf[1])
				fprintf(stderr, "xmppfs: %s\n", buf + 1);
			return 0;
		}
		fprintf(stderr, "xmppfs: %s\n", buf + 1);
		if (buf[0] == 'E')
			return 1;
	}
	fprintf(stderr, "xmppfs: the daemon exited during start-up "
		"(see syslog)\n");
	return 1;
}

static int daemonize(void)
{
	int fds[2];
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0) {
		perror("xmppfs: pipe");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		perror("xmppfs: fork");
		return -1;
	}
	if (pid > 0) {
		close(fds[1]);
		exit(wait_child(fds[0]));
	}
	close(fds[0]);
	report_fd = fds[1];
	setsid();
	if (chdir("/") < 0)
		return -1;
	int nul = open("/dev/null", O_RDWR);
	if (nul >= 0) {
		dup2(nul, STDIN_FILENO);
		dup2(nul, STDOUT_FILENO);
		dup2(nul, STDERR_FILENO);
		if (nul > 2)
			close(nul);
	}
	return 0;
}

static void fuse_log_sink(enum fuse_log_level level, const char *fmt,
			  va_list ap) __attribute__((format(printf, 2, 0)));
static void fuse_log_sink(enum fuse_log_level level, const char *fmt,
			  va_list ap)
{
	log_vmsg((enum log_level)level, "fuse", fmt, ap);
}

static int run_fuse(struct xfs_opts *o, struct fs_config *fcfg)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	char fsname[1200], msg[512];
	struct fuse *fuse;
	struct fuse_loop_config *lc;
	int rc;

	snprintf(fsname, sizeof(fsname), "-ofsname=xmppfs#%s,subtype=xmppfs",
		 o->jid);
	fuse_opt_add_arg(&args, "xmppfs");
	fuse_opt_add_arg(&args, fsname);
	if (o->fuse_opts[0]) {
		fuse_opt_add_arg(&args, "-o");
		fuse_opt_add_arg(&args, o->fuse_opts);
	}
	fuse = fuse_new(&args, fs_operations(), sizeof(struct fuse_operations),
			fcfg);
	fuse_opt_free_args(&args);
	if (!fuse) {
		report(0, "cannot set up FUSE (is the fuse3 package "
		       "installed?)");
		return 1;
	}
	if (fuse_mount(fuse, o->mountpoint) != 0) {
		snprintf(msg, sizeof(msg), "cannot mount on %s: is it a "
			 "directory, not already mounted, and is /dev/fuse "
			 "usable?", o->mountpoint);
		report(0, msg);
		fuse_destroy(fuse);
		return 1;
	}
	if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0) {
		report(0, "cannot install signal handlers");
		fuse_unmount(fuse);
		fuse_destroy(fuse);
		return 1;
	}
	log_info("main", "mounted %s on %s", o->jid, o->mountpoint);
	report(1, NULL);

	lc = fuse_loop_cfg_create();
	/* Blocked /events readers each hold a thread: leave plenty for
	 * everything else (fcfg->events_readers caps them). */
	fuse_loop_cfg_set_max_threads(lc, 32);
	fuse_loop_cfg_set_clone_fd(lc, 0);
	/* 0, or the number of the signal that ended the loop (SIGTERM on
	 * a systemd stop): both are a clean stop; < 0 is an error. */
	rc = fuse_loop_mt(fuse, lc);
	fuse_loop_cfg_destroy(lc);
	log_info("main", "unmounting %s", o->mountpoint);
	fuse_remove_signal_handlers(fuse_get_session(fuse));
	fuse_unmount(fuse);
	fuse_destroy(fuse);
	return rc >= 0 ? 0 : 1;
}

/* Is path already the mount point of a FUSE file system? */
static int fuse_mounted_on(const char *path)
{
	FILE *m = setmntent("/proc/self/mounts", "r");
	struct mntent *e;
	int found = 0;

	if (!m)
		return 0;
	while (!found && (e = getmntent(m)))
		found = strcmp(e->mnt_dir, path) == 0 &&
			strncmp(e->mnt_type, "fuse", 4) == 0;
	endmntent(m);
	return found;
}

static int check_mountpoint(const char *path, char *err, size_t len)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		snprintf(err, len, "mount point %s: %s", path,
			 strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, len, "mount point %s is not a directory", path);
		return -1;
	}
	if (fuse_mounted_on(path)) {
		snprintf(err, len, "mount point %s is busy: something is "
			 "already mounted there (fusermount3 -u %s)", path,
			 path);
		return -1;
	}
	return 0;
}

/* After a stop (clean or not) nothing has an outbox file open, so staged
 * visible files were closed by a writer we never saw release: queue them.
 * Incoming rows still "receiving" belong to streams that died with the
 * old process: mark them failed, keeping the partial for resume. */
struct recover_ctx {
	struct store *st;
	int64_t now;
};

static int recover_out(const struct store_out *o, void *arg)
{
	struct recover_ctx *rc = arg;
	char path[4096];
	struct stat sb;

	if (o->state != STORE_STAGED || o->name[0] == '.')
		return 0;
	store_spool_path(rc->st, o->id, path, sizeof(path));
	if (stat(path, &sb) == 0)
		store_out_release(rc->st, o->id, (uint64_t)sb.st_size, rc->now);
	return 0;
}

static int recover_contact(const struct store_contact *c, void *arg)
{
	struct recover_ctx *rc = arg;

	store_out_list(rc->st, c->jid, recover_out, rc);
	return 0;
}

/* MD5 of a whole file as lower-case hex; 0 or -1. */
static int md5_file(const char *path, char hex[33])
{
	unsigned char d[EVP_MAX_MD_SIZE], *buf = malloc(1 << 20);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;
	ssize_t r;

	if (fd >= 0 && c && buf && EVP_DigestInit_ex(c, EVP_md5(), NULL)) {
		while ((r = read(fd, buf, 1 << 20)) > 0)
			EVP_DigestUpdate(c, buf, (size_t)r);
		if (r == 0 && EVP_DigestFinal_ex(c, d, &n) && n == 16) {
			for (unsigned i = 0; i < 16; i++)
				snprintf(hex + 2 * i, 3, "%02x", d[i]);
			rc = 0;
		}
	}
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(c);
	free(buf);
	return rc;
}

/*
 * A receive the old process did not finish. If every byte is there and
 * matches the offered MD5, it only missed its publication (killed while
 * syncing, say): publish it now, since the sender has already called it
 * sent and will not offer it again. Otherwise keep it for a resume.
 */
static int recover_in(const struct store_xfer *x, void *arg)
{
	struct recover_ctx *rc = arg;
	struct store_in in;
	char path[4096], hex[33];
	struct stat sb;

	if (x->outgoing || x->state != STORE_RECEIVING)
		return 0;
	if (store_in_get_id(rc->st, x->id, &in) == 0 && in.hash[0] &&
	    stat(store_partial_path(rc->st, x->id, path, sizeof(path)),
		 &sb) == 0 && (uint64_t)sb.st_size == in.size &&
	    md5_file(path, hex) == 0 && strcasecmp(hex, in.hash) == 0 &&
	    store_in_finish(rc->st, x->id, NULL) == 0) {
		log_info("main", "%s from %s was complete and verified: "
			 "published after the restart", in.name, in.sender);
		return 0;
	}
	store_in_fail(rc->st, x->id, "interrupted: xmppfs stopped during "
		      "the transfer (resumes if offered again)", 1);
	return 0;
}

static void recover(struct store *st)
{
	struct recover_ctx rc = {.st = st, .now = store_now_ms()};

	store_contact_list(st, recover_contact, &rc);
	store_xfer_list(st, 0, recover_in, &rc);
}

static void fill_xt_config(struct xt_config *x, const struct xfs_opts *o,
			   struct store *st, const char *password)
{
	memset(x, 0, sizeof(*x));
	x->store = st;
	x->jid = o->jid;
	x->password = password;
	x->resource = o->resource;
	x->server = o->server;
	x->port = o->port;
	x->cafile = o->cafile;
	x->accept = o->accept;
	x->max_size = o->max_size;
	x->methods[0] = o->methods[0];
	x->methods[1] = o->methods[1];
	x->nmethods = o->nmethods;
	x->proxy = o->proxy;
	x->s5b_host = o->s5b_host;
	x->on_receive = o->on_receive;
	x->mountpoint = o->mountpoint;
	x->debug = o->debug;
}

/* Open the store, waiting a little for a daemon that was just unmounted
 * and may still be closing it. 0, or 1 with the reason reported. */
static int open_store(const struct xfs_opts *o, struct store **st)
{
	char err[1200];
	int rc = -EBUSY;

	for (int i = 0; i < 50 && rc == -EBUSY; i++) {
		rc = store_open(o->data_dir, st);
		if (rc == -EBUSY)
			usleep(100 * 1000);
	}
	if (rc == -EBUSY)
		snprintf(err, sizeof(err), "data directory %s is in use by "
			 "another xmppfs (unmount it first, or choose another "
			 "with -o data_dir=PATH)", o->data_dir);
	else if (rc < 0)
		snprintf(err, sizeof(err), "data directory %s: %s (choose "
			 "another with -o data_dir=PATH)", o->data_dir,
			 strerror(-rc));
	if (rc < 0) {
		report(0, err);
		return 1;
	}
	return 0;
}

/* Log in (or find the server unreachable). 0 to go on, 1 on a fatal
 * start-up error (reported). The password is wiped either way. */
static int start_xmpp(const struct xfs_opts *o, struct store *st,
		      char *password, struct xt **out)
{
	struct xt_config xcfg;
	char err[1024];
	int rc;

	fill_xt_config(&xcfg, o, st, password);
	rc = xt_new(&xcfg, out);
	explicit_bzero(password, strlen(password));
	if (rc < 0) {
		report(0, "cannot start the XMPP engine");
		return 1;
	}
	rc = xt_start(*out, 15000, err, sizeof(err));
	if (rc == -EACCES || rc == -EPERM || rc == -EINVAL || rc == -ENOENT) {
		report(0, err);
		return 1;
	}
	if (rc < 0) {
		char w[1100];

		snprintf(w, sizeof(w), "warning: %s; mounting anyway, files "
			 "will wait and go out once connected", err);
		report(0, w);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct xfs_opts o;
	struct fs_config fcfg;
	struct store *st = NULL;
	struct xt *xt = NULL;
	char err[1024], *password = NULL;
	int rc;

	if (argc > 1 && strcmp(argv[1], "status") == 0)
		return status_main(argc - 2, argv + 2);

	signal(SIGPIPE, SIG_IGN); /* LIBSTROPHE.md §7: dead sockets */
	umask(077);
	rc = opts_parse(argc - 1, argv + 1, &o, err, sizeof(err));
	if (rc != 0) {
		if (rc < 0)
			fprintf(stderr, "xmppfs: %s\n", err);
		opts_free(&o);
		return rc < 0 ? 2 : 0;
	}
	rc = 1;
	if (check_mountpoint(o.mountpoint, err, sizeof(err)) < 0) {
		fprintf(stderr, "xmppfs: %s\n", err);
		goto out;
	}
	password = opts_password(&o, err, sizeof(err));
	if (!password) {
		fprintf(stderr, "xmppfs: %s\n", err);
		goto out;
	}
	log_init("xmppfs", !o.foreground,
		 o.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	fuse_set_log_func(fuse_log_sink);
	if (!o.foreground && daemonize() < 0)
		goto out;
	if (open_store(&o, &st) != 0)
		goto out;
	recover(st);
	if (start_xmpp(&o, st, password, &xt) != 0)
		goto out;

	memset(&fcfg, 0, sizeof(fcfg));
	fcfg.store = st;
	fcfg.settle_ms = o.settle_ms;
	fcfg.wake = xt_wake;
	fcfg.wake_arg = xt;
	fcfg.self_jid = o.jid;
	fcfg.events_readers = 12;
	rc = run_fuse(&o, &fcfg);
out:
	xt_free(xt); /* stops the thread first */
	store_close(st);
	if (password) {
		explicit_bzero(password, strlen(password));
		free(password);
	}
	opts_free(&o);
	return rc;
}
