#!/usr/bin/env bash
# Memory of the coordinator while slow clients read the token list
# (DESIGN §8: `GET /v1/ring?tokens=true` at 1,000 × 256 with 32 slow readers
# at once, ≤ 128 MiB RSS).
#
#   bash benches/ring-readers.sh [MEMBERS] [TOKENS] [READERS] [FORM]
#
# FORM is `true` (the decimal list, 13 MB at 1,000 × 256) or `compact`.
# Builds the release binary (or uses RINGLEADER_BIN), writes an EndpointSlice
# file of MEMBERS ready pods, starts `ringleader serve` with TOKENS tokens
# per member, waits for the first epoch, then opens READERS connections that
# each ask for `/v1/ring?tokens=FORM` and read it slowly (64 KiB every
# 100 ms, about 640 KiB/s each, so every answer is in flight at once for
# seconds), twice in a row, while the coordinator's RSS is sampled every
# 50 ms. Prints the RSS before, the peak during, and the peak (VmHWM) of the
# whole run. Everything talks to 127.0.0.1 only and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
members=${1:-1000}
tokens=${2:-256}
readers=${3:-32}
form=${4:-true}
if [[ -z ${RINGLEADER_BIN:-} ]]; then
    cargo build --release -q -p ringleader
    RINGLEADER_BIN=${CARGO_TARGET_DIR:-target}/release/ringleader
fi
work=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
python3 benches/slices.py "$members" > "$work/slices.yaml"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$RINGLEADER_BIN" serve --source "file:$work/slices.yaml" --state "file:$work/state.json" \
    --tokens-per-member "$tokens" --mode auto --settle 0s --settle-max 0s --auth none \
    --listen "127.0.0.1:$port" 2> "$work/log" &
pid=$!
for _ in $(seq 1 600); do
    curl -s "http://127.0.0.1:$port/v1/ring" 2>/dev/null | grep -q '"epoch":1' && break
    sleep 0.2
done
curl -s "http://127.0.0.1:$port/v1/ring" | grep -q '"epoch":1' || { cat "$work/log" >&2; exit 1; }
python3 - "$pid" "$port" "$readers" "$form" <<'PY'
import socket, sys, threading, time
pid, port, readers, form = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def status(field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0

sizes = []
def reader():
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(f"GET /v1/ring?tokens={form} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        total = 0
        while True:
            chunk = s.recv(64 * 1024)
            if not chunk:
                break
            total += len(chunk)
            time.sleep(0.1)
        s.close()
        sizes.append(total)

before = status("VmRSS")
threads = [threading.Thread(target=reader) for _ in range(readers)]
start = time.time()
for t in threads:
    t.start()
peak = before
while any(t.is_alive() for t in threads):
    peak = max(peak, status("VmRSS"))
    time.sleep(0.05)
elapsed = time.time() - start
print(f"form={form} readers={readers} answers={len(sizes)} "
      f"bytes_each={max(sizes) if sizes else 0} seconds={elapsed:.1f}")
print(f"RSS before {before:.1f} MiB, peak while reading {peak:.1f} MiB, VmHWM {status('VmHWM'):.1f} MiB")
PY
