#!/usr/bin/env bash
# The operator page (GET /) in a real browser: serves a copy of
# examples/db-3.yaml with the already-built debug binary, drives the page in
# headless Chromium with Playwright (.ci/browser/test.mjs), changes the file
# and sees the page follow without a reload, and saves docs/operator-page.png.
#
# Installs what it needs when missing: Debian's chromium (apt) and
# playwright-core (npm ci from the committed package-lock.json; the browser
# is the system one, `npx playwright install` is not used). Bounded in time,
# stops everything it started, exits non-zero on any failed check.
#
#   RINGLEADER_BIN  the binary (default target/debug/ringleader; build it
#                   first: cargo build -p ringleader)
#   CHROMIUM        the browser (default /usr/bin/chromium)
#   SCREENSHOT      where the screenshot goes (default docs/operator-page.png)
#   SCALE           e.g. 1000x256: also time the page on that many members and
#                   tokens per member (docs/operations.md has the figures)
set -euo pipefail
cd "$(dirname "$0")/.."

export RINGLEADER_BIN="${RINGLEADER_BIN:-target/debug/ringleader}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
LIMIT=${BROWSER_TEST_LIMIT:-170}

if [ ! -x "$RINGLEADER_BIN" ]; then
    echo "browser test: no binary at $RINGLEADER_BIN; run cargo build -p ringleader first (or set RINGLEADER_BIN)" >&2
    exit 1
fi

if [ ! -x "$CHROMIUM" ]; then
    echo "browser test: installing chromium"
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo -n); fi
    timeout 600 "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
fi
"$CHROMIUM" --version

if ! command -v node >/dev/null; then
    echo "browser test: node (>= 20) is needed: apt-get install nodejs npm" >&2
    exit 1
fi
installed() {
    (cd .ci/browser && node -e '
        const want = require("./package-lock.json").packages["node_modules/playwright-core"].version;
        const have = require("./node_modules/playwright-core/package.json").version;
        process.exit(want === have ? 0 : 1);' 2>/dev/null)
}
if ! installed; then
    echo "browser test: npm ci"
    (cd .ci/browser && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
fi

work=$(mktemp -d)
export PID_FILE="$work/pids"
: >"$PID_FILE"
test_pid=
cleanup() {
    # Whatever the test started and did not stop (it stops them itself; this
    # is for a kill from outside or a hang).
    if [ -n "$test_pid" ]; then kill "$test_pid" 2>/dev/null || true; fi
    while read -r pid; do
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done <"$PID_FILE"
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

export TEST_TIMEOUT_MS=$(((LIMIT - 10) * 1000))
timeout --kill-after=5 "$LIMIT" node .ci/browser/test.mjs &
test_pid=$!
wait "$test_pid"
