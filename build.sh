#!/usr/bin/env bash
# Build and task entry point. Needs only Python 3.11+ on the machine.
#   ./build.sh up      build everything, publish rules/, run control plane + edge host
#   ./build.sh test    build everything, run the whole test suite
#   ./build.sh bench   decide latency and instructions (native, component), hostile
#                      batches, propagation, simulate rate, browser
#   ./build.sh loadtest [USERS] [SECONDS]   Locust against an edge host; reports + summary
#   ./build.sh build   the .venv, the Wasm component and its precompiled cache
#   ./build.sh setup   the .venv only (what build starts with)
#   ./build.sh edge-function [--serve]   the wasi:http edge function (and jco serve)
#   ./build.sh clean   remove build outputs and local state
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
export CONTROL_HOST=${CONTROL_HOST:-127.0.0.1} CONTROL_PORT=${CONTROL_PORT:-8600}
export EDGE_HOST=${EDGE_HOST:-127.0.0.1} EDGE_PORT=${EDGE_PORT:-8700}
export DEMO_HOST=${DEMO_HOST:-127.0.0.1} DEMO_PORT=${DEMO_PORT:-8800}
export CONTROL_DATA_DIR=${CONTROL_DATA_DIR:-.var/control}
# TRIGGERS_* (shared by control plane and edge) default in edge_module/host/config.py.

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

setup() {
  local python=${PYTHON:-python3}
  if [ ! -x "$PY" ]; then
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
      echo "error: Python 3.11 or newer is required (found: $("$python" --version 2>&1))" >&2
      exit 2
    }
    say "creating $VENV"
    "$python" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed" want
  want=$(cat pyproject.toml | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing dependencies (pinned in pyproject.toml)"
    "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$PY" -m pip install --quiet --disable-pip-version-check -e ".[test,load]"
    echo "$want" > "$stamp"
  fi
}

build() {
  setup
  say "building the Wasm component"
  "$PY" -m edge_module.build --out build
  say "building the browser SDK"
  "$PY" -m sdk.build --out build/sdk
}

# ensure_tool COMMAND PACKAGE WHY: the Debian package providing COMMAND, installed with
# apt-get when missing (as root, as on CI's fresh machine); otherwise a clear error.
ensure_tool() {
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $2 with apt-get ($3)"
    local log
    log=$(apt-get update -qq 2>&1 && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq "$2" 2>&1) || {
      printf '%s\nerror: installing %s failed (output above)\n' "$log" "$2" >&2
      exit 2
    }
  else
    echo "error: $1 is required ($3); install it (Debian/Ubuntu: sudo apt-get install" \
      "$2, macOS: brew install $2) and run this again" >&2
    exit 2
  fi
}

# The tests start throwaway redis-server instances on free ports (a system service the
# package may start on 6379 is never used); `up` needs it only for EDGE_SESSION_STORE=redis://.
ensure_redis() {
  ensure_tool redis-server redis-server "shared session state; tests start their own"
}

ensure_wrk() {
  ensure_tool wrk wrk "the load generator in C of the throughput scenario"
}

# Instructions per decision are counted under valgrind (loadtest/bench_instructions.py).
ensure_valgrind() {
  ensure_tool valgrind valgrind "counting instructions per decision"
}

# The browser tests drive Debian's Chromium with Playwright (its own browser download needs
# hosts these machines cannot reach).
ensure_chromium() {
  ensure_tool chromium chromium "the browser tests (tests/browser) run the SDK in it"
}

up() {
  build
  case "${EDGE_SESSION_STORE:-}" in redis://*|rediss://*) ensure_redis ;; esac
  # Embedded defaults: a signing key, and publisher/edge tokens, made once in .var/.
  "$VENV/bin/trigger-engine" keys generate >/dev/null
  "$VENV/bin/trigger-engine" tokens >/dev/null
  export EDGE_TOKEN=${EDGE_TOKEN:-$(cat "$CONTROL_DATA_DIR/edge.token")}
  export EDGE_CONTROL_URL=${EDGE_CONTROL_URL:-http://$CONTROL_HOST:$CONTROL_PORT}
  # The demo store is another origin: the edge host must let its pages call /v1/decide.
  export EDGE_ALLOWED_ORIGINS=${EDGE_ALLOWED_ORIGINS:-http://$DEMO_HOST:$DEMO_PORT}
  # The store signs its signed-in customers' ids for push and email (docs/channels.md).
  export EDGE_CRM_ID_KEY=${EDGE_CRM_ID_KEY:-$("$PY" -c 'import secrets; print(secrets.token_hex(32))')}
  say "publishing rules/ to the edge store"
  # not over packs published since through the API or the console: those stay live
  "$VENV/bin/trigger-engine" publish rules/ --skip-if-dropping
  local pids=()
  stop() {
    trap - INT TERM EXIT
    say "stopping"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  }
  trap stop INT TERM EXIT
  "$VENV/bin/trigger-engine" serve & pids+=($!)
  "$VENV/bin/edge-host" & pids+=($!)
  "$PY" -m demo.store --host "$DEMO_HOST" --port "$DEMO_PORT" \
    --edge "http://$EDGE_HOST:$EDGE_PORT" & pids+=($!)
  "$PY" - <<PYEOF
import json, time, urllib.request
for url in ("http://$CONTROL_HOST:$CONTROL_PORT/healthz", "http://$EDGE_HOST:$EDGE_PORT/healthz",
            "http://$DEMO_HOST:$DEMO_PORT/healthz"):
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1).read(); break
        except Exception:
            time.sleep(0.1)
    else:
        raise SystemExit(f"{url} did not come up")
PYEOF
  cat <<TXT

  control plane  http://$CONTROL_HOST:$CONTROL_PORT   (GET /v1/snapshots, /v1/fleet, /openapi.json)
  edge host      http://$EDGE_HOST:$EDGE_PORT   (POST /v1/decide, GET /healthz)
  demo store     http://$DEMO_HOST:$DEMO_PORT   (the SDK in a real page)
  publisher token: $CONTROL_DATA_DIR/publisher.token (needed to submit, publish, roll back)

  Try it in a browser: open http://$DEMO_HOST:$DEMO_PORT/pricing, scroll to the bottom and
  stay 3 s: the discount nudge appears. Or with curl (a visitor reads the pricing page for
  3.2 s after scrolling to 80 %):

  curl -s http://$EDGE_HOST:$EDGE_PORT/v1/decide -H 'Content-Type: application/json' -d '{
    "session_id": "demo-1", "now_ms": 1764201603200, "context": {"url": "/pricing", "device": "desktop"},
    "events": [{"type": "page_view", "ts_ms": 1764201600000, "url": "/pricing"},
               {"type": "scroll", "ts_ms": 1764201601000, "depth": 0.8, "y": 1400}]}'

  Publish a changed pack (edges pick it up within a second):

  curl -s -X PUT http://$CONTROL_HOST:$CONTROL_PORT/v1/packs/pricing-discount \\
    -H "Authorization: Bearer \$(cat $CONTROL_DATA_DIR/publisher.token)" --data-binary @rules/pricing-discount.yaml
  curl -s -X POST http://$CONTROL_HOST:$CONTROL_PORT/v1/snapshots \\
    -H "Authorization: Bearer \$(cat $CONTROL_DATA_DIR/publisher.token)"

  Ctrl-C stops all three.
TXT
  wait "${pids[@]}"
}

case "${1:-}" in
  setup) setup ;;
  build) build ;;
  up) up ;;
  test)
    build
    ensure_redis
    ensure_wrk
    ensure_chromium
    ensure_valgrind
    shift
    say "running the test suite"
    # on every core, at most 4 (pytest-xdist; TEST_WORKERS=0 runs it in this one process)
    "$PY" -m pytest -n "${TEST_WORKERS:-auto}" --maxprocesses=4 "$@"
    ;;
  bench)
    build
    shift
    say "decide latency, natively and in the component"
    "$PY" -m loadtest.bench "$@"
    say "the costliest batches a visitor can send (natively, in the component, deadline stops)"
    "$PY" -m loadtest.bench_hostile
    ensure_valgrind
    say "instructions per decision (valgrind; the first run compiles the component under it)"
    "$PY" -m loadtest.bench_instructions
    say "publish-to-served propagation"
    "$PY" -m loadtest.bench_propagation
    say "simulate (backtest) throughput"
    "$PY" -m loadtest.bench_simulate
    ensure_chromium
    say "how late nudges appear in a real browser (Chromium)"
    "$PY" -m loadtest.bench_browser --runs 10
    ;;
  loadtest)
    build
    shift
    case " $* " in *" --generator wrk "*|*" --generator=wrk "*) ensure_wrk ;; esac
    say "load test: an edge host on a free port, Locust or wrk (loadtest/reports/)"
    "$PY" -m loadtest.run "$@"
    ;;
  edge-function)
    shift
    say "edge function: build/edge-function.wasm (wasi:http/proxy@0.2.0, snapshot baked in)"
    "$PY" -m edge_module.edge_function.build
    if [ "${1:-}" = "--serve" ]; then
      # jco, pinned, in build/jco (Node is needed here only, never by up or test's main path)
      [ -x build/jco/node_modules/.bin/jco ] ||
        npm install --no-audit --no-fund --prefix build/jco @bytecodealliance/jco@1.35.0
      if [ -z "${EDGE_STATE_TOKEN_KEYS:-}" ]; then
        EDGE_STATE_TOKEN_KEYS="dev:$("$PY" -c 'import secrets; print(secrets.token_hex(32))')"
        say "EDGE_STATE_TOKEN_KEYS unset: a throwaway key for this run (tokens die with it)"
      fi
      export EDGE_STATE_TOKEN_KEYS
      say "serving it under jco serve on http://127.0.0.1:${EDGE_FUNCTION_PORT:-8090}"
      # Node 20 needs this flag for jco's output, and NODE_OPTIONS refuses it
      JCO_RUN_ARGS=--experimental-wasm-extended-const exec build/jco/node_modules/.bin/jco \
        serve --host 127.0.0.1 --port "${EDGE_FUNCTION_PORT:-8090}" \
        --jco-dir build/jco/edge-function build/edge-function.wasm
    fi
    ;;
  clean) rm -rf build .var ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
