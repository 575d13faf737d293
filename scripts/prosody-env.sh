#!/bin/sh
# Run a private Prosody for xmppfs tests/benchmarks/demos in the foreground.
# Prints one JSON line (port, cafile, proxy_port, accounts, ...) and runs
# until SIGTERM/SIGINT. Binds 127.0.0.1 only; never touches system Prosody.
#   scripts/prosody-env.sh --dir DIR [--limits] [--nagle] [--log-level L]
exec /usr/bin/python3 "$(dirname "$0")/../tests/integration/xfsutil.py" prosody "$@"
