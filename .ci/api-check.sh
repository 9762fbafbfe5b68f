#!/usr/bin/env bash
# API conformance of the real binary: the served OpenAPI document must be
# valid (openapi-spec-validator), and a property-based tester (schemathesis,
# every check) must find nothing when it drives the API from that document.
#
#   .ci/api-check.sh                 # after `cargo build` / `cargo test --workspace`
#   RINGLEADER_BIN=path/to/ringleader .ci/api-check.sh
#
# Environment:
#   RINGLEADER_BIN      the binary (default: ${CARGO_TARGET_DIR:-target}/debug/ringleader)
#   API_CHECK_VENV      where the Python tools live (default: ~/.cache/ringleader-api-check-<versions>)
#   API_CHECK_EXAMPLES  schemathesis examples per operation (default 40)
#   API_CHECK_MAX_TIME  schemathesis time budget in seconds (default 100)
#   API_CHECK_SEED      schemathesis seed (default 1; fixed so CI is reproducible)
#
# The Python tools are pinned and installed from PyPI into their own venv the
# first time (about 30 s). The server always stops, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VALIDATOR_VERSION=0.9.0

bin=${RINGLEADER_BIN:-${CARGO_TARGET_DIR:-target}/debug/ringleader}
venv=${API_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ringleader-api-check-st${SCHEMATHESIS_VERSION}-osv${VALIDATOR_VERSION}}
examples=${API_CHECK_EXAMPLES:-40}
max_time=${API_CHECK_MAX_TIME:-100}
seed=${API_CHECK_SEED:-1}

if [[ ! -x $bin ]]; then
    echo "api-check: no binary at $bin: build it first (cargo build -p ringleader), or set RINGLEADER_BIN" >&2
    exit 1
fi

# ---- tools ------------------------------------------------------------------
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION" ||
    ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('openapi-spec-validator') == '$VALIDATOR_VERSION'" 2>/dev/null; then
    echo "api-check: installing schemathesis $SCHEMATHESIS_VERSION and openapi-spec-validator $VALIDATOR_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$VALIDATOR_VERSION"
fi

# ---- the server -------------------------------------------------------------
work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s' "$token" >"$work/token"
cp examples/db-3.yaml "$work/members.yaml"

"$bin" serve \
    --source "file:$work/members.yaml" \
    --state "file:$work/state.json" \
    --listen "127.0.0.1:$port" \
    --auth-token-file "$work/token" \
    --settle 0s --settle-max 0s \
    --log-format json \
    >"$work/server.log" 2>&1 &
server_pid=$!

# Ready means lookups answer (the first plan has committed).
ready=
for _ in $(seq 300); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "api-check: the server exited early:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    if curl -fsS "$base/v1/lookup?key=probe" >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.1
done
if [[ -z $ready ]]; then
    echo "api-check: the server at $base did not answer lookups within 30 s:" >&2
    cat "$work/server.log" >&2
    exit 1
fi

# ---- the document -----------------------------------------------------------
curl -fsS "$base/openapi.json" -o "$work/openapi.json"
echo "api-check: validating $base/openapi.json"
"$venv/bin/openapi-spec-validator" "$work/openapi.json"

# ---- schemathesis -----------------------------------------------------------
# .ci/schemathesis.toml says where (and why) a check is configured.
# /v1/watch is a never-ending event stream, which a request/response tester
# cannot judge: its behaviour is covered in-process (crates/server/tests/api.rs).
echo "api-check: schemathesis, every check, $examples examples per operation, at most ${max_time}s"
status=0
(
    cd "$work"
    "$venv/bin/st" --config-file "$OLDPWD/.ci/schemathesis.toml" run "$base/openapi.json" \
        --checks all \
        --header "Authorization: Bearer $token" \
        --exclude-path /v1/watch \
        --max-examples "$examples" \
        --max-time "$max_time" \
        --seed "$seed" \
        --request-timeout 10 \
        --workers 2 \
        --no-color
) || status=$?
if [[ $status -ne 0 ]]; then
    echo "api-check: schemathesis found problems (exit $status); the server's log:" >&2
    tail -n 50 "$work/server.log" >&2
    exit "$status"
fi
echo "api-check: OpenAPI document valid; schemathesis found nothing"
