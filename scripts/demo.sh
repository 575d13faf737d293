#!/usr/bin/env bash
# The xmppfs demo: installs what it needs, builds, starts a private Prosody
# on 127.0.0.1 with two accounts (alice, bob), mounts both side by side and
# sends one file to show it works. Then it waits so you can try it yourself;
# Ctrl-C unmounts everything and stops the server.
#
#   scripts/demo.sh            (as root, or with sudo for apt and FUSE)
#   scripts/demo.sh --check    (the same, but exit after the first file)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1

./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
BIN=$ROOT/build/xmppfs

DEMO=${XMPPFS_DEMO_DIR:-/tmp/xmppfs-demo}
for m in "$DEMO/alice" "$DEMO/bob"; do
	mountpoint -q "$m" 2>/dev/null && fusermount3 -u "$m"
done
rm -rf "$DEMO"
mkdir -p "$DEMO/alice" "$DEMO/bob"

PROSODY_PID=
MOUNT_PIDS=()
cleanup() {
	for m in "$DEMO/alice" "$DEMO/bob"; do
		mountpoint -q "$m" 2>/dev/null && fusermount3 -u "$m" || true
	done
	for p in "${MOUNT_PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	done
	[ -n "$PROSODY_PID" ] && kill "$PROSODY_PID" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "demo: starting a private Prosody on 127.0.0.1 ..."
/usr/bin/python3 tests/integration/xfsutil.py prosody --dir "$DEMO/server" \
	>"$DEMO/server.json" 2>"$DEMO/server.err" &
PROSODY_PID=$!
for _ in $(seq 150); do
	[ -s "$DEMO/server.json" ] && break
	kill -0 "$PROSODY_PID" 2>/dev/null || { cat "$DEMO/server.err"; exit 1; }
	sleep 0.1
done
[ -s "$DEMO/server.json" ] || { echo "demo: Prosody did not start"; exit 1; }
read -r PORT CAFILE < <(/usr/bin/python3 -c 'import json,sys
d = json.load(open(sys.argv[1])); print(d["port"], d["cafile"])' "$DEMO/server.json")

mount_one() { # name
	local name=$1
	echo "$name-pw" >"$DEMO/$name.password"
	chmod 600 "$DEMO/$name.password"
	"$BIN" -f -o "server=127.0.0.1:$PORT,cafile=$CAFILE,password_file=$DEMO/$name.password,data_dir=$DEMO/$name-data,settle_ms=500" \
		"$name@localhost" "$DEMO/$name" >"$DEMO/$name.log" 2>&1 &
	MOUNT_PIDS+=($!)
	for _ in $(seq 100); do
		mountpoint -q "$DEMO/$name" && \
			[ "$(getfattr --absolute-names --only-values -n user.xmppfs.link "$DEMO/$name" 2>/dev/null)" = online ] && return 0
		sleep 0.1
	done
	echo "demo: mounting $name failed:"; cat "$DEMO/$name.log"; exit 1
}
mount_one alice
mount_one bob
echo "demo: mounted alice@localhost at $DEMO/alice and bob@localhost at $DEMO/bob"

echo "Hello from alice, $(date)" >"$DEMO/hello.txt"
echo "demo: cp $DEMO/hello.txt $DEMO/alice/outbox/bob@localhost/"
cp "$DEMO/hello.txt" "$DEMO/alice/outbox/bob@localhost/"
for _ in $(seq 300); do
	[ -e "$DEMO/bob/inbox/alice@localhost/hello.txt" ] && break
	sleep 0.1
done
if ! cmp -s "$DEMO/hello.txt" "$DEMO/bob/inbox/alice@localhost/hello.txt"; then
	echo "demo: the file did not arrive; logs:"; tail -n 20 "$DEMO"/*.log
	exit 1
fi
echo "demo: arrived: $DEMO/bob/inbox/alice@localhost/hello.txt"
echo "demo: state on alice's side: $(getfattr --absolute-names --only-values -n user.xmppfs.state "$DEMO/alice/outbox/bob@localhost/hello.txt") via $(getfattr --absolute-names --only-values -n user.xmppfs.method "$DEMO/alice/outbox/bob@localhost/hello.txt")"
echo
cat "$DEMO/alice/status"
[ "$CHECK" = 1 ] && exit 0

cat <<EOF

Try it yourself, in another terminal:
  cp some-file $DEMO/alice/outbox/bob@localhost/
  ls -l $DEMO/bob/inbox/alice@localhost/
  $BIN status $DEMO/alice
  getfattr -d $DEMO/alice/outbox/bob@localhost/some-file
Press Ctrl-C here to unmount both and stop the server.
EOF
while :; do sleep 3600; done
