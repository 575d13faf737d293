/*
 * main/options: one table of options drives the -o parser, the config file
 * reader and --help, so the three can never disagree. Values are checked
 * when they are read: a malformed value is an error naming the option.
 * Options the user gives on the command line win over the config file
 * (each table row has a bit in o->seen).
 *
 * Generic mount options that mount(8) and fstab pass along (rw, nosuid,
 * allow_other, ...) go to libfuse untouched, so an fstab line
 * "alice@example.org /mnt fuse.xmppfs defaults,password_file=... 0 0"
 * works through mount.fuse3.
 */
#include "options.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "util/jid.h"

enum opt_kind { OPT_STR, OPT_UINT, OPT_SIZE, OPT_SPECIAL };

struct opt_def {
	const char *key;
	enum opt_kind kind;
	const char *meta;
	const char *help;
	const char *def;
};

static const struct opt_def opt_table[] = {
	{"server", OPT_SPECIAL, "HOST[:PORT]", "where to connect",
	 "DNS SRV of the JID's domain, then the domain, port 5222"},
	{"cafile", OPT_STR, "PATH", "trust this CA or certificate alone",
	 "system store"},
	{"password_file", OPT_STR, "PATH", "password is the file's first line",
	 "$XMPPFS_PASSWORD, password_command, then a prompt"},
	{"password_command", OPT_STR, "CMD",
	 "run CMD (sh -c), password is its first line of output", "none"},
	{"resource", OPT_STR, "NAME", "XMPP resource", "xmppfs"},
	{"data_dir", OPT_STR, "PATH", "where state and files live",
	 "$XDG_DATA_HOME/xmppfs/<jid>"},
	{"settle_ms", OPT_UINT, "N", "quiet time after close before sending",
	 "1000"},
	{"accept", OPT_SPECIAL, "roster|all|none", "whose offers are accepted",
	 "roster"},
	{"max_size", OPT_SIZE, "BYTES",
	 "largest file accepted (suffixes K M G)", "no limit but free space"},
	{"methods", OPT_SPECIAL, "LIST",
	 "stream methods in order of preference, ':'-separated: s5b, ibb",
	 "s5b:ibb"},
	{"proxy", OPT_STR, "JID", "SOCKS5 proxy to offer; none for none",
	 "found by disco"},
	{"s5b_host", OPT_STR, "ADDR",
	 "address offered for direct connections; none for none",
	 "the address of the connection to the server"},
	{"on_receive", OPT_STR, "CMD",
	 "run CMD (sh -c) after a file arrives; $XMPPFS_FILE, $XMPPFS_SENDER",
	 "none"},
};
#define NOPTS (sizeof(opt_table) / sizeof(opt_table[0]))

/* Options handed to libfuse / ignored because mount(8) adds them. */
static const char *const fuse_pass[] = {
	"allow_other", "allow_root", "default_permissions", "auto_unmount",
	"ro",
	"fsname=", "subtype=", NULL,
};
static const char *const mount_ignored[] = {
	"rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec",
	"atime", "noatime", "relatime", "async", "sync", "auto", "noauto",
	"user", "users", "nouser", "nofail", "_netdev", "defaults", NULL,
};

static void seterr(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static int parse_u64(const char *s, uint64_t *out, int suffixes)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (!*s || *s == '-' || *s == ' ')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	if (suffixes && *end) {
		switch (*end) {
		case 'k': case 'K': mul = 1ULL << 10; break;
		case 'm': case 'M': mul = 1ULL << 20; break;
		case 'g': case 'G': mul = 1ULL << 30; break;
		case 't': case 'T': mul = 1ULL << 40; break;
		default: return -1;
		}
		end++;
		if (*end == 'i' || *end == 'B')
			end++;
		if (*end == 'B')
			end++;
	}
	if (*end)
		return -1;
	if (v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

static int set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -1;
}

static int apply_special(struct xfs_opts *o, const char *key, const char *v)
{
	if (strcmp(key, "server") == 0) {
		const char *colon = strrchr(v, ':');
		uint64_t port = 5222;

		if (!*v)
			return -1;
		if (colon && !strchr(colon, ']')) {
			if (parse_u64(colon + 1, &port, 0) < 0 || port == 0 ||
			    port > 65535)
				return -1;
		} else {
			colon = v + strlen(v);
		}
		free(o->server);
		o->server = strndup(v, (size_t)(colon - v));
		o->port = (unsigned short)port;
		return o->server && *o->server ? 0 : -1;
	}
	if (strcmp(key, "accept") == 0) {
		if (strcmp(v, "roster") == 0)
			o->accept = XT_ACCEPT_ROSTER;
		else if (strcmp(v, "all") == 0)
			o->accept = XT_ACCEPT_ALL;
		else if (strcmp(v, "none") == 0)
			o->accept = XT_ACCEPT_NONE;
		else
			return -1;
		return 0;
	}
	if (strcmp(key, "methods") == 0) {
		char buf[64], *save = NULL, *tok;
		int n = 0;

		if (strlen(v) >= sizeof(buf))
			return -1;
		memcpy(buf, v, strlen(v) + 1);
		for (tok = strtok_r(buf, ":,", &save); tok;
		     tok = strtok_r(NULL, ":,", &save)) {
			enum proto_method m;

			if (strcmp(tok, "s5b") == 0)
				m = PROTO_M_S5B;
			else if (strcmp(tok, "ibb") == 0)
				m = PROTO_M_IBB;
			else
				return -1;
			if (n == 2 || (n == 1 && o->methods[0] == m))
				return -1;
			o->methods[n++] = m;
		}
		if (n == 0)
			return -1;
		o->nmethods = n;
		return 0;
	}
	return -1;
}

static int pass_to_fuse(struct xfs_opts *o, const char *kv)
{
	size_t used = strlen(o->fuse_opts);

	for (int i = 0; mount_ignored[i]; i++)
		if (strcmp(kv, mount_ignored[i]) == 0)
			return 0;
	for (int i = 0; fuse_pass[i]; i++) {
		size_t n = strlen(fuse_pass[i]);
		int prefix = fuse_pass[i][n - 1] == '=';

		if (prefix ? strncmp(kv, fuse_pass[i], n) == 0
			   : strcmp(kv, fuse_pass[i]) == 0) {
			if (used + strlen(kv) + 2 > sizeof(o->fuse_opts))
				return -1;
			snprintf(o->fuse_opts + used,
				 sizeof(o->fuse_opts) - used, "%s%s",
				 used ? "," : "", kv);
			return 0;
		}
	}
	return -1;
}

int opts_apply(struct xfs_opts *o, const char *kv, int from_cli, char *err,
	       size_t errlen)
{
	char key[64];
	const char *eq = strchr(kv, '=');
	const char *v;
	size_t klen;

	while (*kv == ' ' || *kv == '\t')
		kv++;
	eq = strchr(kv, '=');
	klen = eq ? (size_t)(eq - kv) : strlen(kv);
	while (klen && (kv[klen - 1] == ' ' || kv[klen - 1] == '\t'))
		klen--;
	if (klen == 0 || klen >= sizeof(key)) {
		seterr(err, errlen, "bad option '%s'", kv);
		return -1;
	}
	memcpy(key, kv, klen);
	key[klen] = '\0';
	v = eq ? eq + 1 : NULL;
	while (v && (*v == ' ' || *v == '\t'))
		v++;

	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt_def *d = &opt_table[i];
		uint64_t n;
		int rc = 0;

		if (strcmp(key, d->key) != 0)
			continue;
		if (!from_cli && (o->seen & (1ULL << i)))
			return 0; /* the command line wins */
		if (!v) {
			seterr(err, errlen, "option %s needs a value (%s=%s)",
			       key, key, d->meta);
			return -1;
		}
		switch (d->kind) {
		case OPT_STR:
			if (!*v) {
				rc = -1;
				break;
			}
			if (strcmp(key, "cafile") == 0)
				rc = set_str(&o->cafile, v);
			else if (strcmp(key, "password_file") == 0)
				rc = set_str(&o->password_file, v);
			else if (strcmp(key, "password_command") == 0)
				rc = set_str(&o->password_command, v);
			else if (strcmp(key, "resource") == 0)
				rc = set_str(&o->resource, v);
			else if (strcmp(key, "data_dir") == 0)
				rc = set_str(&o->data_dir, v);
			else if (strcmp(key, "proxy") == 0)
				rc = set_str(&o->proxy, v);
			else if (strcmp(key, "s5b_host") == 0)
				rc = set_str(&o->s5b_host, v);
			else if (strcmp(key, "on_receive") == 0)
				rc = set_str(&o->on_receive, v);
			break;
		case OPT_UINT:
			rc = parse_u64(v, &n, 0);
			if (rc == 0 && n > 3600000)
				rc = -1;
			if (rc == 0)
				o->settle_ms = (unsigned)n;
			break;
		case OPT_SIZE:
			rc = parse_u64(v, &n, 1);
			if (rc == 0)
				o->max_size = n;
			break;
		case OPT_SPECIAL:
			rc = apply_special(o, key, v);
			break;
		}
		if (rc < 0) {
			seterr(err, errlen, "bad value for option %s: '%s' "
			       "(expected %s)", key, v, d->meta);
			return -1;
		}
		if (from_cli)
			o->seen |= 1ULL << i;
		return 0;
	}
	if (from_cli && pass_to_fuse(o, kv) == 0)
		return 0;
	seterr(err, errlen, "unknown option '%s' (see xmppfs --help)", key);
	return -1;
}

static int apply_list(struct xfs_opts *o, const char *list, char *err,
		      size_t errlen)
{
	char *copy = strdup(list), *save = NULL, *tok;
	int rc = 0;

	if (!copy)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok && rc == 0;
	     tok = strtok_r(NULL, ",", &save))
		rc = opts_apply(o, tok, 1, err, errlen);
	free(copy);
	return rc;
}

int opts_read_config(struct xfs_opts *o, const char *path, char *err,
		     size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	int lineno = 0;

	if (!f)
		return errno == ENOENT ? 0 : (seterr(err, errlen,
				"cannot read config %s: %s", path,
				strerror(errno)), -1);
	while (fgets(line, sizeof(line), f)) {
		char sub[512];
		size_t n = strcspn(line, "\r\n");
		char *p = line;

		lineno++;
		line[n] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '#' || *p == '\0')
			continue;
		if (opts_apply(o, p, 0, sub, sizeof(sub)) < 0) {
			seterr(err, errlen, "%s:%d: %s", path, lineno, sub);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

void opts_usage(FILE *out)
{
	fprintf(out,
		"usage: xmppfs [-f] [-d] [-o OPT[,OPT...]] JID MOUNTPOINT\n"
		"       xmppfs status [--watch] [--json] [MOUNTPOINT|DATA_DIR]\n"
		"       xmppfs --help | --version\n"
		"       fusermount3 -u MOUNTPOINT     (unmount)\n\n"
		"Mounts the XMPP account JID at MOUNTPOINT. Files copied into\n"
		"outbox/<contact>/ are sent (XEP-0096 over SOCKS5 or in-band);\n"
		"files contacts send appear in inbox/<sender>/.\n\n"
		"  -f            stay in the foreground, log to stderr\n"
		"  -d            debug: foreground, log protocol steps\n"
		"  -o OPTS       options below, ',' separated; also read from\n"
		"                $XDG_CONFIG_HOME/xmppfs/config (key = value\n"
		"                lines; the command line wins)\n\n"
		"Options (default in brackets):\n");
	for (size_t i = 0; i < NOPTS; i++) {
		char left[64];

		snprintf(left, sizeof(left), "%s=%s", opt_table[i].key,
			 opt_table[i].meta);
		fprintf(out, "  %-26s %s\n  %-26s [%s]\n", left,
			opt_table[i].help, "", opt_table[i].def);
	}
	fprintf(out,
		"\nAlso accepted for fstab/mount.fuse3: allow_other,\n"
		"default_permissions, auto_unmount, and the generic mount\n"
		"options (rw, nosuid, nodev, noauto, _netdev, ...).\n"
		"The password is never taken from the command line.\n");
}

static char *first_line(char *buf)
{
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf;
}

static char *password_from_command(const char *cmd, char *err, size_t errlen)
{
	FILE *p = popen(cmd, "r");
	char buf[1024];
	int status;

	if (!p) {
		seterr(err, errlen, "password_command: %s", strerror(errno));
		return NULL;
	}
	if (!fgets(buf, sizeof(buf), p))
		buf[0] = '\0';
	status = pclose(p);
	if (status != 0 || !*first_line(buf)) {
		seterr(err, errlen, "password_command failed or printed "
		       "nothing (exit status %d)",
		       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return NULL;
	}
	return strdup(buf);
}

static char *password_prompt(const char *jid, char *err, size_t errlen)
{
	struct termios old, noecho;
	char buf[1024];
	FILE *tty = fopen("/dev/tty", "r+");
	int ok;

	if (!tty || !isatty(fileno(tty))) {
		if (tty)
			fclose(tty);
		seterr(err, errlen, "no password: set password_file=, "
		       "$XMPPFS_PASSWORD or password_command=");
		return NULL;
	}
	fprintf(tty, "Password for %s: ", jid);
	fflush(tty);
	tcgetattr(fileno(tty), &old);
	noecho = old;
	noecho.c_lflag &= ~(tcflag_t)ECHO;
	tcsetattr(fileno(tty), TCSAFLUSH, &noecho);
	ok = fgets(buf, sizeof(buf), tty) != NULL;
	tcsetattr(fileno(tty), TCSAFLUSH, &old);
	fputc('\n', tty);
	fclose(tty);
	if (!ok || !*first_line(buf)) {
		seterr(err, errlen, "no password given");
		return NULL;
	}
	return strdup(buf);
}

char *opts_password(const struct xfs_opts *o, char *err, size_t errlen)
{
	const char *env = getenv("XMPPFS_PASSWORD");

	if (o->password_file) {
		char buf[1024];
		FILE *f = fopen(o->password_file, "r");

		if (!f) {
			seterr(err, errlen, "cannot read password_file %s: %s",
			       o->password_file, strerror(errno));
			return NULL;
		}
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = '\0';
		fclose(f);
		if (!*first_line(buf)) {
			seterr(err, errlen, "password_file %s is empty",
			       o->password_file);
			return NULL;
		}
		return strdup(buf);
	}
	if (env && *env)
		return strdup(env);
	if (o->password_command)
		return password_from_command(o->password_command, err, errlen);
	return password_prompt(o->jid, err, errlen);
}

/* $HOME, else the password database's home of the user. */
static const char *home_dir(void)
{
	const char *home = getenv("HOME");
	struct passwd *pw;

	if (home && *home)
		return home;
	pw = getpwuid(getuid());
	return pw && pw->pw_dir ? pw->pw_dir : "/";
}

static int default_data_dir(struct xfs_opts *o)
{
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = home_dir();
	char buf[PATH_MAX];

	if (xdg && *xdg)
		snprintf(buf, sizeof(buf), "%s/xmppfs/%s", xdg, o->jid);
	else
		snprintf(buf, sizeof(buf), "%s/.local/share/xmppfs/%s", home,
			 o->jid);
	return set_str(&o->data_dir, buf);
}

static void config_path(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");

	if (xdg && *xdg)
		snprintf(buf, len, "%s/xmppfs/config", xdg);
	else
		snprintf(buf, len, "%s/.config/xmppfs/config", home_dir());
}

static int make_absolute(char **path)
{
	char cwd[PATH_MAX], *abs;

	if (!*path || (*path)[0] == '/')
		return 0;
	if (!getcwd(cwd, sizeof(cwd)))
		return -1;
	if (asprintf(&abs, "%s/%s", cwd, *path) < 0)
		return -1;
	free(*path);
	*path = abs;
	return 0;
}

int opts_parse(int argc, char **argv, struct xfs_opts *o, char *err,
	       size_t errlen)
{
	const char *pos[2] = {NULL, NULL};
	char cfg[PATH_MAX], jid[1100];
	int npos = 0;

	memset(o, 0, sizeof(*o));
	o->settle_ms = 1000;
	o->accept = XT_ACCEPT_ROSTER;
	o->methods[0] = PROTO_M_S5B;
	o->methods[1] = PROTO_M_IBB;
	o->nmethods = 2;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			opts_usage(stdout);
			return 1;
		} else if (strcmp(a, "-V") == 0 ||
			   strcmp(a, "--version") == 0) {
			printf("xmppfs %s\n", XFS_VERSION);
			return 1;
		} else if (strcmp(a, "-f") == 0) {
			o->foreground = 1;
		} else if (strcmp(a, "-d") == 0) {
			o->foreground = 1;
			o->debug = 1;
		} else if (strncmp(a, "-o", 2) == 0) {
			const char *list = a[2] ? a + 2 : argv[++i];

			if (!list) {
				seterr(err, errlen, "-o needs options");
				return -1;
			}
			if (apply_list(o, list, err, errlen) < 0)
				return -1;
		} else if (a[0] == '-' && a[1]) {
			seterr(err, errlen, "unknown flag '%s' (see xmppfs "
			       "--help)", a);
			return -1;
		} else if (npos < 2) {
			pos[npos++] = a;
		} else {
			seterr(err, errlen, "too many arguments: '%s'", a);
			return -1;
		}
	}
	if (npos < 2) {
		seterr(err, errlen, "need JID and MOUNTPOINT (see xmppfs "
		       "--help)");
		return -1;
	}
	if (jid_bare_normalize(pos[0], jid, sizeof(jid)) < 0) {
		seterr(err, errlen, "'%s' is not a valid bare JID (like "
		       "alice@example.org)", pos[0]);
		return -1;
	}
	o->jid = strdup(jid);
	/* A missing mount point is reported by main (exit 1, not usage). */
	o->mountpoint = realpath(pos[1], NULL);
	if (!o->mountpoint)
		o->mountpoint = strdup(pos[1]);
	config_path(cfg, sizeof(cfg));
	if (opts_read_config(o, cfg, err, errlen) < 0)
		return -1;
	/* The daemon changes to /: paths the user gave relative to the
	 * current directory must be made absolute before that. */
	if (make_absolute(&o->cafile) < 0 || make_absolute(&o->data_dir) < 0 ||
	    make_absolute(&o->password_file) < 0) {
		seterr(err, errlen, "cannot resolve a relative path: %s",
		       strerror(errno));
		return -1;
	}
	if (!o->resource)
		set_str(&o->resource, "xmppfs");
	if (!o->data_dir && default_data_dir(o) < 0)
		return -1;
	return 0;
}

void opts_free(struct xfs_opts *o)
{
	free(o->jid);
	free(o->mountpoint);
	free(o->server);
	free(o->cafile);
	free(o->password_file);
	free(o->password_command);
	free(o->resource);
	free(o->data_dir);
	free(o->proxy);
	free(o->s5b_host);
	free(o->on_receive);
	memset(o, 0, sizeof(*o));
}
