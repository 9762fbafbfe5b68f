#!/usr/bin/env bash
# Load test of GET /v1/lookup on loopback with wrk (Debian package `wrk`).
#
#   bash benches/lookup-load.sh [MEMBERS] [TOKENS] [SECONDS] [CONNECTIONS]
#
# Builds the release binary, writes an EndpointSlice file of MEMBERS ready
# pods (100 per slice, as the EndpointSlice controller packs them), starts
# `ringleader serve` on it with TOKENS tokens per member, waits for the
# first epoch, then runs wrk with 2 threads, CONNECTIONS connections and a
# different key on every request, and prints wrk's latency distribution and
# the coordinator's resident memory. Everything talks to 127.0.0.1 only and
# stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
members=${1:-1000}
tokens=${2:-256}
seconds=${3:-20}
connections=${4:-64}
port=${PORT:-18080}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p ringleader
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 benches/slices.py "$members" > "$work/slices.yaml"
./target/release/ringleader serve --source "file:$work/slices.yaml" --state "file:$work/state.json" \
  --tokens-per-member "$tokens" --rf 3 --zone-aware --mode auto --settle 0s --auth none \
  --listen "127.0.0.1:$port" 2> "$work/log" &
pid=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && \
    curl -s "http://127.0.0.1:$port/v1/ring" | grep -q '"epoch":1' && break
  sleep 0.2
done
curl -s "http://127.0.0.1:$port/v1/ring" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("ring: epoch %d, %d members, balance %.4f" % (r["epoch"], len(r["members"]), r["balance"]))'
cat > "$work/keys.lua" <<'LUA'
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1/lookup?key=user:" .. counter)
end
LUA
wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$work/keys.lua" "http://127.0.0.1:$port"
echo "coordinator memory: $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr -s ' ' | tr '\n' ' ')"
