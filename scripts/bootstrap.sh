#!/usr/bin/env bash
# Make this checkout ready to run and test: the system programs the tests drive
# (sipp, MariaDB, Redis, baresip, socat) and a .venv with sipline installed editable.
# Idempotent and quick when everything is already there; installing system
# packages needs root on Debian (apt).
set -euo pipefail

cd "$(dirname "$0")/.."

VENV=.venv
STAMP=$VENV/.bootstrap-stamp
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "bootstrap: $*" >&2; }
die() { say "error: $*"; exit 1; }

# Debian package -> the binary that shows it is installed.
PACKAGES=(
    "sip-tester:sipp"
    "mariadb-server:mariadbd"
    "redis-server:redis-server"
    "baresip-core:baresip"
    "rtpengine-daemon:rtpengine"
    # Debian's sipp has no TLS: the TLS tests carry its TCP over TLS with socat.
    "socat:socat"
    # the portal's browser tests (Playwright drives it; its own browser download is unreachable)
    "chromium:chromium"
)

apt_updated=0
apt_install() {
    [ "$(id -u)" -eq 0 ] || die "missing $*; run as root (apt-get install $*) or install them yourself"
    command -v apt-get >/dev/null || die "missing $*, and apt-get is not available (Debian or Ubuntu expected)"
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt_updated=1
    fi
    say "apt-get install $*"
    # Two checkouts bootstrapping at once wait for each other's apt lock.
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null
}

system_packages() {
    local missing=() entry
    for entry in "${PACKAGES[@]}"; do
        command -v "${entry#*:}" >/dev/null || missing+=("${entry%%:*}")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
        # rtpengine's package starts a daemon on the ng port 2223 where systemd
        # runs; the tests start their own rtpengine on free ports.
        if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
            systemctl disable --now rtpengine-daemon >/dev/null 2>&1 || true
        fi
    fi
}

python_ok() {
    command -v python3 >/dev/null &&
        python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

virtualenv() {
    if [ -x "$VENV/bin/python" ]; then
        return
    fi
    # Debian's python3 ships venv without ensurepip until python3-venv is installed.
    python_ok || apt_install python3 python3-venv
    python_ok || die "python3 >= 3.11 with the venv module is needed (found: $(python3 --version 2>&1))"
    say "creating $VENV"
    python3 -m venv "$VENV"
}

python_packages() {
    if [ -f "$STAMP" ] && [ ! pyproject.toml -nt "$STAMP" ] && [ -x "$VENV/bin/sipline" ]; then
        return
    fi
    say "pip install -e '.[test]'"
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    touch "$STAMP"
}

system_packages
virtualenv
python_packages
