/*
 * Unit tests for fs/ internals that need no mount: path parsing (what each
 * path names, its parent kind, the 255-byte component limit). The FUSE
 * operations themselves are covered by tests/integration/test_mount.py on
 * real mounts.
 */
#include "fs/fs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"


static void check_path(const char *path, int rc, enum fs_kind kind,
		       enum fs_kind parent, const char *dir, const char *name)
{
	struct fs_path p;

	CHECK_INT(rc, fs_path_parse(path, &p));
	if (rc < 0)
		return;
	CHECK_INT(kind, p.kind);
	CHECK_INT(parent, p.parent);
	CHECK_STR(dir, p.dir);
	CHECK_STR(name, p.name);
}

static void test_parse(void)
{
	check_path("/", 0, FS_ROOT, FS_ROOT, "", "");
	check_path("/status", 0, FS_STATUS, FS_ROOT, "", "");
	check_path("/inbox", 0, FS_INBOX, FS_ROOT, "", "");
	check_path("/outbox", 0, FS_OUTBOX, FS_ROOT, "", "");
	check_path("/outbox/bob@x", 0, FS_OUT_DIR, FS_OUTBOX, "bob@x", "");
	check_path("/inbox/bob@x", 0, FS_IN_DIR, FS_INBOX, "bob@x", "");
	check_path("/outbox/bob@x/a b.txt", 0, FS_OUT_FILE, FS_OUT_DIR,
		   "bob@x", "a b.txt");
	check_path("/inbox/bob@x/.h", 0, FS_IN_FILE, FS_IN_DIR, "bob@x", ".h");
	check_path("/outbox/bob@x/f/g", 0, FS_DEEP, FS_OUT_FILE, "bob@x", "f");
	check_path("/outbox/bob@x/f/g/h", 0, FS_DEEP, FS_DEEP, "bob@x", "f");
	check_path("/other", 0, FS_DEEP, FS_ROOT, "", "");
	check_path("/other/x", 0, FS_DEEP, FS_DEEP, "", "");
	check_path("/status/x", 0, FS_DEEP, FS_DEEP, "", "");
	check_path("/statusx", 0, FS_DEEP, FS_ROOT, "", "");
	check_path("/events", 0, FS_EVENTS, FS_ROOT, "", "");
	check_path("//events/", 0, FS_EVENTS, FS_ROOT, "", "");
	check_path("/events/x", 0, FS_DEEP, FS_DEEP, "", "");
	check_path("/Events", 0, FS_DEEP, FS_ROOT, "", "");
	check_path("/Outbox", 0, FS_DEEP, FS_ROOT, "", "");
}

static void test_lengths(void)
{
	char path[1024], name[300];

	memset(name, 'n', 255);
	name[255] = '\0';
	snprintf(path, sizeof(path), "/outbox/b@x/%s", name);
	check_path(path, 0, FS_OUT_FILE, FS_OUT_DIR, "b@x", name);
	snprintf(path, sizeof(path), "/outbox/b@x/%sn", name);
	check_path(path, -ENAMETOOLONG, FS_DEEP, FS_DEEP, "", "");
	snprintf(path, sizeof(path), "/outbox/%sn", name);
	check_path(path, -ENAMETOOLONG, FS_DEEP, FS_DEEP, "", "");
	snprintf(path, sizeof(path), "/%sn", name);
	check_path(path, -ENAMETOOLONG, FS_DEEP, FS_DEEP, "", "");
}

int main(void)
{
	test_parse();
	test_lengths();
	printf("test_fs: %d checks, %d failures\n", checks, failures);
	return failures ? 1 : 0;
}
