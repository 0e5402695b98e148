#!/usr/bin/env bash
# Runs BullMQ (the Node.js job queue built on Redis Lua scripts and streams) against a fresh strata: the
# scripting compatibility check the issue tracker names. Not part of `cargo test`: it needs Node.js and the
# npm registry. Usage: scripts/bullmq-smoke.sh   (STRATA_BIN, default target/release/strata; PORT, default 6391)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-6391}
STRATA_BIN=${STRATA_BIN:-target/release/strata}
command -v node >/dev/null || { echo "needs Node.js (apt-get install nodejs npm)" >&2; exit 1; }
[ -x "$STRATA_BIN" ] || cargo build --release -p strata
work=$(mktemp -d)
pid=
cleanup() {
    status=$?
    if [ "$status" != 0 ] && [ -f "$work/strata.log" ]; then tail -20 "$work/strata.log" >&2; fi
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
cp scripts/bullmq/smoke.mjs "$work/"
(cd "$work" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent bullmq@5 >/dev/null)
# strata reads STRATA_* variables as configuration and refuses unknown ones.
env -u STRATA_BIN "$STRATA_BIN" serve --data-dir "$work/data" --resp-port "$PORT" --http-port 0 --amqp-port 0 \
    --log-level warn >"$work/strata.log" 2>&1 &
pid=$!
up=
for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
[ -n "$up" ] || { echo "strata did not start" >&2; exit 1; }
(cd "$work" && PORT=$PORT timeout 60 node smoke.mjs)
