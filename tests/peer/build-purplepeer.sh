#!/bin/sh
# Build tests/peer/purplepeer (a headless libpurple XMPP peer for interop
# tests). Usage: build-purplepeer.sh [OUTPUT]  (default: next to this script)
# Needs libpurple-dev and libglib2.0-dev (scripts/install-deps.sh).
# --export-dynamic: the jabber prpl plugin must bind to the loopback-only
# overrides defined in purplepeer.c.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/purplepeer"}
pkg-config --exists purple glib-2.0 || {
	echo "build-purplepeer: pkg-config cannot find purple glib-2.0" \
	     "(apt-get install libpurple-dev libglib2.0-dev)" >&2
	exit 2
}
${CC:-cc} -std=gnu99 -O1 -g -Wall -Wextra -Wno-unused-parameter \
	-Wno-deprecated-declarations \
	$(pkg-config --cflags purple glib-2.0) \
	-o "$out.tmp.$$" "$here/purplepeer.c" \
	-Wl,--export-dynamic $(pkg-config --libs purple glib-2.0)
mv -f "$out.tmp.$$" "$out"
