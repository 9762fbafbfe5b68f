#!/usr/bin/env bash
# Member change → new epoch readable over HTTP, from the outside (DESIGN §8:
# ≤ 50 ms at 1,000 × 256, settle excluded), with the file source.
#
#   bash benches/event-to-plan.sh [MEMBERS] [TOKENS] [RF] [CHANGES]
#
# Builds the release binary (or uses RINGLEADER_BIN), writes an EndpointSlice
# file of MEMBERS ready pods over three zones, starts `ringleader serve`
# (`--mode auto --settle 0s --down-grace 0s`, rf RF, zone-aware when RF > 1)
# and waits for the first epoch. Then CHANGES times: renames a file with one
# member more (or, the next time, fewer) over the watched one and polls
# `GET /v1/ring` with `If-None-Match` (a 304 costs the server nothing) on one
# keep-alive connection every 2 ms until the next epoch shows; the time from
# just before the rename to that answer's arrival is one sample (decoding its
# JSON is the client's time: 2-4 ms of Python at 1,000 members). Prints every
# sample and the median, min and max. Everything talks to 127.0.0.1 only and
# stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
members=${1:-1000}
tokens=${2:-256}
rf=${3:-1}
changes=${4:-9}
if [[ -z ${RINGLEADER_BIN:-} ]]; then
    cargo build --release -q -p ringleader
    RINGLEADER_BIN=${CARGO_TARGET_DIR:-target}/release/ringleader
fi
work=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
python3 benches/slices.py "$members" > "$work/base.yaml"
python3 benches/slices.py "$((members + 1))" > "$work/more.yaml"
cp "$work/base.yaml" "$work/slices.yaml"
zone_flag=()
[[ $rf -gt 1 ]] && zone_flag=(--zone-aware)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$RINGLEADER_BIN" serve --source "file:$work/slices.yaml" --state "file:$work/state" \
    --tokens-per-member "$tokens" --rf "$rf" "${zone_flag[@]}" --mode auto --settle 0s \
    --settle-max 0s --down-grace 0s --auth none --listen "127.0.0.1:$port" 2> "$work/log" &
pid=$!
python3 - "$port" "$work" "$changes" <<'PY'
import http.client, json, os, shutil, statistics, sys, time
port, work, changes = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

arrived = 0.0

def ring(etag=None):
    """The epoch and ETag of GET /v1/ring; `arrived` is when the answer was
    in (decoding its JSON is the client's time, not the server's)."""
    global conn, arrived
    headers = {"If-None-Match": etag} if etag else {}
    try:
        conn.request("GET", "/v1/ring", headers=headers)
        r = conn.getresponse()
        body = r.read()
        arrived = time.perf_counter()
    except (ConnectionError, http.client.HTTPException, OSError):
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        return None, None
    if r.status == 304:
        return None, etag
    if r.status != 200:
        return None, None
    return json.loads(body)["epoch"], r.getheader("ETag")

deadline = time.time() + 300
epoch, etag = None, None
while time.time() < deadline:
    epoch, etag = ring()
    if epoch and epoch >= 1:
        break
    time.sleep(0.2)
else:
    sys.exit("no first epoch within 300 s")
samples = []
for k in range(changes):
    src = os.path.join(work, "more.yaml" if k % 2 == 0 else "base.yaml")
    tmp = os.path.join(work, "next.yaml")
    shutil.copyfile(src, tmp)
    want = epoch + 1
    started = time.perf_counter()
    os.rename(tmp, os.path.join(work, "slices.yaml"))
    while True:
        e, tag = ring(etag)
        if tag:
            etag = tag
        if e is not None and e >= want:
            samples.append((arrived - started) * 1000)
            epoch = e
            break
        if time.perf_counter() - started > 60:
            sys.exit("no new epoch within 60 s")
        time.sleep(0.002)
    time.sleep(0.5)
print("samples (ms):", " ".join(f"{s:.1f}" for s in samples))
print(f"median {statistics.median(samples):.1f} ms, min {min(samples):.1f}, max {max(samples):.1f}")
PY
