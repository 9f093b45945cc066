#!/usr/bin/env bash
# Builds dist/tmp-monitor-x86_64.zip and dist/tmp-monitor-arm64.zip (./build.sh layer calls this).
# The work is in build_layer.py; run with --help for the options.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export TZ=UTC LC_ALL=C PYTHONDONTWRITEBYTECODE=1
exec "$ROOT/.venv/bin/python" "$ROOT/layer/build_layer.py" "$@"
