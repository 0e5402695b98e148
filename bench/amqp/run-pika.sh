#!/usr/bin/env bash
# Runs pika_roundtrip.py with pika from PyPI in a throwaway virtualenv.
#
#   bench/amqp/run-pika.sh [--host H] [--port P] [--user U] [--password P] [--vhost V] [--messages N]
#
# The broker's address can also come from AMQP_HOST / AMQP_PORT (see pika_roundtrip.py). PIKA_VERSION pins
# the pika release (default: the newest). Exit status is the script's: 0 on success.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/strata-pika.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --disable-pip-version-check "pika${PIKA_VERSION:+==$PIKA_VERSION}"
"$tmp/venv/bin/python" "$here/pika_roundtrip.py" "$@"
