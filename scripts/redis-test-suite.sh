#!/usr/bin/env bash
# Runs units of Redis's own test suite (from Debian's redis source package) against a strata server, in the
# suite's external-server mode, and prints one summary line per unit. Not part of `cargo test`: it needs the
# Debian package registry and Tcl. Usage:
#
#   scripts/redis-test-suite.sh [unit ...]        # default: the units of the implemented command families
#
# Environment: STRATA_BIN (default target/release/strata, built if missing), REDIS_SRC (where to unpack the
# source, default /tmp/strata-redis-src), PORT (default 6390), KEEP_LOGS=1 to keep each unit's full output,
# SPAWN=1 to let the suite start its own servers through scripts/redis-server-shim (runs the tests marked
# external:skip too, with their config overrides applied by CONFIG SET), RUNTEST_ARGS for more arguments
# to runtest (e.g. RUNTEST_ARGS="--skiptest /ACL" to run past tests that stop a unit; split on spaces).
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_SRC=${REDIS_SRC:-/tmp/strata-redis-src}
PORT=${PORT:-6390}
STRATA_BIN=${STRATA_BIN:-target/release/strata}
units=("$@")
if [ ${#units[@]} -eq 0 ]; then
    units=(unit/type/incr unit/type/string unit/keyspace unit/type/hash unit/type/set unit/type/list
        unit/type/zset unit/multi unit/expire unit/protocol unit/info unit/scan unit/auth unit/quit
        unit/pubsub unit/bitops unit/sort unit/introspection unit/slowlog)
fi

if ! command -v tclsh >/dev/null; then apt-get install -y tcl; fi
suite=$(ls -d "$REDIS_SRC"/redis-*/ 2>/dev/null | head -1 || true)
if [ -z "$suite" ]; then
    mkdir -p "$REDIS_SRC"
    if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/; then
        sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
            > /etc/apt/sources.list.d/strata-deb-src.sources
        apt-get update -qq
    fi
    (cd "$REDIS_SRC" && apt-get source --download-only redis && tar xzf redis_*.orig.tar.gz)
    suite=$(ls -d "$REDIS_SRC"/redis-*/ | head -1)
fi
[ -x "$STRATA_BIN" ] || cargo build --release -p strata

if [ -n "${SPAWN:-}" ]; then
    # The suite starts its own servers (so the tests it skips against an external server run too):
    # a copy of the suite whose src/redis-server is scripts/redis-server-shim, which starts strata.
    copy=$(mktemp -d)
    trap 'rm -rf "$copy"' EXIT
    cp -r "$suite" "$copy/suite"
    install -m 755 scripts/redis-server-shim "$copy/suite/src/redis-server"
    for tool in redis-cli redis-benchmark; do ln -sf "$(command -v $tool)" "$copy/suite/src/$tool"; done
    bin=$(realpath "$STRATA_BIN")
    for unit in "${units[@]}"; do
        log="$copy/$(basename "$unit").out"
        (cd "$copy/suite" && STRATA_SHIM_BIN="$bin" timeout 900 ./runtest --single "$unit" \
            --ignore-encoding --ignore-digest --tags "-needs:debug -needs:repl -needs:save" --clients 1 ${RUNTEST_ARGS:-}) >"$log" 2>&1 || true
        ok=$(grep -c '^\[ok\]' <(sed 's/\x1b\[[0-9;]*m//g' "$log") || true)
        err=$(grep -c '^\[err\]' <(sed 's/\x1b\[[0-9;]*m//g' "$log") || true)
        exc=$(grep -c '^\[exception\]' <(sed 's/\x1b\[[0-9;]*m//g' "$log") || true)
        printf '%-24s ok=%-4s err=%-4s exception=%s\n' "$unit" "$ok" "$err" "$exc"
        if [ -n "${KEEP_LOGS:-}" ]; then cp "$log" "/tmp/strata-suite-$(basename "$unit").out"; fi
    done
    exit 0
fi

data=$(mktemp -d)
env -u STRATA_BIN "$STRATA_BIN" serve --data-dir "$data" --resp-port "$PORT" --http-port 0 --amqp-port 0 --fsync everysec \
    >"$data/strata.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done

for unit in "${units[@]}"; do
    log="$data/$(basename "$unit").out"
    (cd "$suite" && timeout 600 ./runtest --host 127.0.0.1 --port "$PORT" --single "$unit" \
        --ignore-encoding --ignore-digest --tags "-needs:debug -needs:repl -needs:save" --clients 1 --durable --baseport $((PORT + 20000)) ${RUNTEST_ARGS:-}) >"$log" 2>&1 || true
    ok=$(grep -c '\[ok\]' <(sed 's/\x1b\[[0-9;]*m//g' "$log") || true)
    err=$(grep -c '\[err\]' <(sed 's/\x1b\[[0-9;]*m//g' "$log") || true)
    exc=$(grep -c '\[exception\]' <(sed 's/\x1b\[[0-9;]*m//g' "$log") || true)
    printf '%-24s ok=%-4s err=%-4s exception=%s\n' "$unit" "$ok" "$err" "$exc"
    if [ -n "${KEEP_LOGS:-}" ]; then cp "$log" "/tmp/strata-suite-$(basename "$unit").out"; fi
    if ! kill -0 $server 2>/dev/null; then echo "strata exited; log:"; tail -20 "$data/strata.log"; exit 1; fi
done
