#!/usr/bin/env bash
# Install the Debian packages that building, running and testing xmppfs need.
# Skips what is present; safe to run again. Needs root (or sudo).
set -euo pipefail

PKGS=(
	build-essential cmake pkg-config
	libfuse3-dev fuse3 libstrophe-dev libssl-dev libsqlite3-dev
	prosody lua-unbound
	python3-slixmpp python3-pytest libpurple-dev libglib2.0-dev
	attr rsync socat tmux libglib2.0-bin openssl
	clang libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all packages present"
	exit 0
fi

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps the packaged prosody service from starting system-wide:
# tests and the demo run their own private servers on 127.0.0.1.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
