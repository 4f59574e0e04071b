#!/usr/bin/env bash
# Install Debian's Chromium (and ChromeDriver) for the browser tests: idempotent, quiet.
# Playwright drives this system Chromium; nothing is downloaded outside the package manager.
#
# Exit status: 0 Chromium is there (already, or installed now); 3 it is missing and cannot be
# installed on this machine (no apt-get, not root and no password-less sudo, or apt-get failed),
# with the reason in one line on stdout (progress goes to stderr); `make test` then runs the other
# tests, and fails under CI=true.
set -uo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
cannot() {
    echo "install-browser: $*"
    exit 3
}

if [[ -x "$CHROMIUM" ]]; then
    exit 0
fi
command -v apt-get >/dev/null 2>&1 || cannot "no $CHROMIUM and no apt-get to install it (install Chromium by hand)."

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        cannot "no $CHROMIUM, and installing it needs root (run \`sudo bash scripts/install-browser.sh\` once)."
    fi
fi

echo "install-browser: installing chromium and chromium-driver from Debian packages..." >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq chromium chromium-driver; } >"$log" 2>&1; then
    tail -n 5 "$log" >&2
    cannot "apt-get could not install chromium (see the lines above)."
fi
[[ -x "$CHROMIUM" ]] || cannot "apt-get ran but $CHROMIUM is still missing."
"$CHROMIUM" --version >&2 || true
