#!/usr/bin/env bash
# Install Debian's Chromium and ChromeDriver for the browser tests (idempotent, quiet).
# Playwright drives this system Chromium; nothing is downloaded outside the package manager.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: apt-get not found; install Chromium (/usr/bin/chromium) by hand." >&2
    exit 1
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-browser: need root (or sudo) to apt-get install chromium." >&2
        exit 1
    fi
fi

echo "install-browser: installing chromium and chromium-driver from Debian packages..."
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-browser: apt-get failed." >&2
    exit 1
fi
/usr/bin/chromium --version
