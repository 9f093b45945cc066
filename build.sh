#!/usr/bin/env bash
# One entry point for everything: ./build.sh [layer|test|demo|bench] [args...]
#   layer (default)  build dist/tmp-monitor-x86_64.zip and dist/tmp-monitor-arm64.zip
#   test             set up from nothing, build the layer, run ruff, mypy and pytest
#   demo             set up from nothing, build the layer, run the example in lambda-sandbox
#   bench            set up from nothing, build the layer, measure the budgets of SPEC section 8
set -euo pipefail

ROOT=$(cd "$(dirname "$0")" && pwd)
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

# Debian packages the sandbox, the layer build and the tests need.
DEBS=(e2fsprogs util-linux mount zip unzip busybox-static qemu-user-static ca-certificates)

ensure_debs() {
    local missing=() pkg
    for pkg in "${DEBS[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    command -v node >/dev/null || missing+=(nodejs)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "Debian packages missing (${missing[*]}) and not root to install them"
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
    local stamp="$VENV/.installed" want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -x "$PY" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    command -v python3.11 >/dev/null || die "python3.11 is needed to create .venv"
    say "setting up .venv (Python dependencies from pyproject.toml)"
    [ -x "$PY" ] || python3.11 -m venv "$VENV"
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip
    "$PY" -m pip install -q --disable-pip-version-check -e '.[dev]'
    echo "$want" > "$stamp"
}

ensure_node_modules() {
    [ -f package.json ] || return 0
    [ -d node_modules ] && [ node_modules -nt package-lock.json ] && return 0
    say "installing Node modules"
    npm ci --silent --no-audit --no-fund
}

setup() {
    ensure_debs
    ensure_venv
    ensure_node_modules
}

build_layer() {
    [ -x layer/build-layer.sh ] || die "the layer build (layer/build-layer.sh) is not written yet"
    layer/build-layer.sh "$@"
}

cmd=${1:-layer}
[ $# -gt 0 ] && shift
case "$cmd" in
    layer)
        ensure_debs
        ensure_venv
        build_layer "$@"
        ;;
    test)
        setup
        build_layer
        say "ruff"
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        say "mypy (strict on extension/)"
        "$VENV/bin/mypy"
        say "pytest"
        # pytest's own summary line is the last line this prints.
        exec "$VENV/bin/pytest" "$@"
        ;;
    demo)
        setup
        build_layer
        [ -f examples/demo.py ] || die "the demo (examples/demo.py) is not written yet"
        exec "$PY" examples/demo.py "$@"
        ;;
    bench)
        setup
        build_layer
        [ -f bench/run.py ] || die "the benchmarks (bench/run.py) are not written yet"
        exec "$PY" bench/run.py "$@"
        ;;
    -h|--help|help)
        sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        die "unknown command '$cmd' (use layer, test, demo or bench)"
        ;;
esac
