/*
 * main/options: the command line, the config file and the password sources.
 * Every option of DESIGN.md's table is one entry of a table in options.c,
 * which drives parsing, validation, --help and the config file alike.
 */
#ifndef XFS_OPTIONS_H
#define XFS_OPTIONS_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "xmpp/xt.h"

struct xfs_opts {
	char *jid;        /* bare, normalised */
	char *mountpoint; /* absolute */
	int foreground;
	int debug;

	char *server; /* host part of server= */
	unsigned short port;
	char *cafile;
	char *password_file;
	char *password_command;
	char *resource;
	char *data_dir;
	unsigned settle_ms;
	enum xt_accept accept;
	uint64_t max_size;
	enum proto_method methods[2];
	int nmethods;
	char *proxy;
	char *s5b_host;
	char *on_receive;

	/* -o options handed to libfuse as they are (allow_other, ...). */
	char fuse_opts[1024];
	/* set by options seen on the command line, so the config file does
	 * not override them: a bitmask indexed like the option table. */
	uint64_t seen;
};

/*
 * Parse argv (after the program name) and then the config file. On error
 * writes one line to err and returns -1; returns 1 for --help/--version
 * (already printed), 0 to go on.
 */
int opts_parse(int argc, char **argv, struct xfs_opts *o, char *err,
	       size_t errlen);

/* Apply one "key=value" (or "key = value") option; from_cli marks it seen.
 * Returns 0 or -1 with err set. */
int opts_apply(struct xfs_opts *o, const char *kv, int from_cli, char *err,
	       size_t errlen);

/* Read $XDG_CONFIG_HOME/xmppfs/config (or path) for options not given on
 * the command line. A missing file is fine. */
int opts_read_config(struct xfs_opts *o, const char *path, char *err,
		     size_t errlen);

/* The password by the documented order of sources; owned, free() it. NULL
 * with err set when none could be had. */
char *opts_password(const struct xfs_opts *o, char *err, size_t errlen);

void opts_usage(FILE *out);
void opts_free(struct xfs_opts *o);

#endif
