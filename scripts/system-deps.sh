#!/bin/sh
# Install the Debian packages the tests and the demo need, only those missing.
# Needs root (or sudo); prints what it installs. Safe to run again.
# --demo: only what `make demo` needs (git and a Python venv; no compiler, no libsystemd).
set -eu

missing=""
want() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || missing="$missing $1"; }

want git
want bubblewrap  # the proof sandbox: the demo validates in it too
python3 -c 'import ensurepip, venv' 2>/dev/null || want python3-venv
if [ "${1:-}" != "--demo" ]; then
  for pkg in libsystemd-dev pkg-config chromium systemd dbus util-linux python3-setuptools python3-wheel; do want "$pkg"; done
  command -v npm >/dev/null 2>&1 || want npm
  command -v node >/dev/null 2>&1 || want nodejs
fi

[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "system-deps: need root to install:$missing" >&2; exit 1
fi
echo "system-deps: installing$missing" >&2
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
