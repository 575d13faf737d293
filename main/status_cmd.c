/*
 * main/status_cmd: `xmppfs status [--watch] [--json] [MOUNTPOINT]`.
 * Reads the mount's status file (TAB-separated, see fs/) and prints a
 * table with progress bars, or one JSON object per line.
 */
#include <errno.h>
#include <limits.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"

int status_main(int argc, char **argv);

static char *peek_buf; /* the text behind a data-directory FILE */

static int find_mount(char *buf, size_t len)
{
	FILE *m = setmntent("/proc/self/mounts", "r");
	struct mntent *e;
	int found = 0;

	if (!m)
		return -1;
	while ((e = getmntent(m))) {
		if (strcmp(e->mnt_type, "fuse.xmppfs") == 0) {
			snprintf(buf, len, "%s", e->mnt_dir);
			found = 1;
			break;
		}
	}
	endmntent(m);
	return found ? 0 : -1;
}

/* Undo the status file's escapes (\t \n \\) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (*s == '\\' && s[1]) {
			s++;
			*o++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. */
static int utf8_len(const unsigned char *s)
{
	int n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2
		: (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
	unsigned cp;

	if (n <= 1)
		return n;
	cp = s[0] & (0x7f >> n);
	for (int i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A JSON string; names are untrusted bytes, so invalid UTF-8 becomes
 * U+FFFD and the output is always valid JSON. */
static void json_str(FILE *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	fputc('"', out);
	while (*s) {
		int n = utf8_len(s);

		if (n == 0) {
			fputs("\\ufffd", out);
			s++;
		} else if (*s == '"' || *s == '\\') {
			fprintf(out, "\\%c", *s++);
		} else if (*s < 0x20) {
			fprintf(out, "\\u%04x", *s++);
		} else {
			fwrite(s, 1, (size_t)n, out);
			s += n;
		}
	}
	fputc('"', out);
}

static void human(char *buf, size_t len, unsigned long long v)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double d = (double)v;
	int i = 0;

	while (d >= 1024 && i < 4) {
		d /= 1024;
		i++;
	}
	snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", d, u[i]);
}

/* The status file's escapes: TAB, newline and backslash. */
static void put_escaped(FILE *f, const char *s, int dash_if_empty)
{
	if (dash_if_empty && (!s || !*s)) {
		fputc('-', f);
		return;
	}
	for (; s && *s; s++) {
		if (*s == '\t')
			fputs("\\t", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else if (*s == '\\')
			fputs("\\\\", f);
		else
			fputc(*s, f);
	}
}

static int peek_row(const struct store_xfer *x, void *arg)
{
	FILE *f = arg;

	fprintf(f, "%s\t%s\t%llu\t%llu\t", x->outgoing ? "out" : "in",
		store_state_name(x->state), (unsigned long long)x->progress,
		(unsigned long long)x->size);
	put_escaped(f, x->method, 1);
	fputc('\t', f);
	put_escaped(f, x->jid, 0);
	fputc('\t', f);
	put_escaped(f, x->name, 0);
	fputc('\t', f);
	put_escaped(f, x->error, 1);
	fputc('\n', f);
	return 0;
}

/* The status text of a data directory (no mount needed), in the same
 * format as the mount's status file. NULL with errno set on failure. */
static FILE *peek_data_dir(const char *dir)
{
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	int rc;

	if (!m)
		return NULL;
	fprintf(m, "# xmppfs %s (data directory)\n", dir);
	rc = store_peek_xfers(dir, 1000, peek_row, m);
	fclose(m);
	if (rc < 0) {
		free(text);
		errno = -rc;
		return NULL;
	}
	m = fmemopen(text, len, "r");
	if (!m)
		free(text);
	peek_buf = text;
	return m;
}

static int show(const char *path, int json, FILE *out)
{
	FILE *f;
	char line[8192];
	int rows = 0;
	struct stat sb;

	peek_buf = NULL;
	if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
		f = peek_data_dir(path);
	else
		f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "xmppfs status: %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *col[8] = {0}, *save = NULL, *p = line;
		unsigned long long prog, size;
		int n = 0;

		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '#') {
			if (!json)
				fprintf(out, "%s\n", line + 2);
			continue;
		}
		for (char *t = strtok_r(p, "\t", &save); t && n < 8;
		     t = strtok_r(NULL, "\t", &save))
			col[n++] = t;
		if (n < 8)
			continue;
		for (int i = 0; i < 8; i++)
			unescape(col[i]);
		prog = strtoull(col[2], NULL, 10);
		size = strtoull(col[3], NULL, 10);
		rows++;
		if (json) {
			fprintf(out, "{\"direction\":");
			json_str(out, col[0]);
			fprintf(out, ",\"state\":");
			json_str(out, col[1]);
			fprintf(out, ",\"progress\":%llu,\"size\":%llu,"
				"\"method\":", prog, size);
			json_str(out, strcmp(col[4], "-") ? col[4] : "");
			fprintf(out, ",\"jid\":");
			json_str(out, col[5]);
			fprintf(out, ",\"name\":");
			json_str(out, col[6]);
			fprintf(out, ",\"error\":");
			json_str(out, strcmp(col[7], "-") ? col[7] : "");
			fprintf(out, "}\n");
		} else {
			char bar[21], hs[32], hp[32];
			int pct = size ? (int)(prog * 100 / size) : 100;
			int fill = pct / 5;

			for (int i = 0; i < 20; i++)
				bar[i] = i < fill ? '#' : '.';
			bar[20] = '\0';
			human(hs, sizeof(hs), size);
			human(hp, sizeof(hp), prog);
			fprintf(out, "%-3s %-9s [%s] %3d%% %10s/%-10s %-10s "
				"%s %s%s%s\n", col[0], col[1], bar, pct, hp,
				hs, strcmp(col[4], "-") ? col[4] : "", col[5],
				col[6], strcmp(col[7], "-") ? "  error: " : "",
				strcmp(col[7], "-") ? col[7] : "");
		}
	}
	fclose(f);
	free(peek_buf);
	peek_buf = NULL;
	if (!json && rows == 0)
		fprintf(out, "no transfers\n");
	return 0;
}

int status_main(int argc, char **argv)
{
	int json = 0, watch = 0;
	const char *mnt = NULL;
	char buf[PATH_MAX], path[PATH_MAX + 16];

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--watch") == 0)
			watch = 1;
		else if (argv[i][0] == '-') {
			fprintf(stderr, "usage: xmppfs status [--watch] "
				"[--json] [MOUNTPOINT|DATA_DIR]\n");
			return 2;
		} else
			mnt = argv[i];
	}
	if (!mnt) {
		if (find_mount(buf, sizeof(buf)) < 0) {
			fprintf(stderr, "xmppfs status: no xmppfs mount "
				"found; name the mount point\n");
			return 1;
		}
		mnt = buf;
	}
	/* A mount point: its status file. A data directory (state.db in
	 * it): read the database itself, mounted or not. */
	snprintf(path, sizeof(path), "%s/state.db", mnt);
	if (access(path, F_OK) == 0)
		snprintf(path, sizeof(path), "%s", mnt);
	else
		snprintf(path, sizeof(path), "%s/status", mnt);
	if (!watch)
		return show(path, json, stdout) < 0 ? 1 : 0;
	for (;;) {
		if (!json)
			fputs("\033[H\033[2J", stdout);
		if (show(path, json, stdout) < 0)
			return 1;
		fflush(stdout);
		sleep(1);
	}
}
