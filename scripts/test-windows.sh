#!/usr/bin/env bash
# Run corral's test suites on Windows CPython 3.13 under Wine (issue 6): the
# IOCP backend and the \Device\Afd poller against the same tests Linux runs.
#
#   scripts/test-windows.sh [OPTIONS]        the Windows suite list below
#   scripts/test-windows.sh [OPTIONS] PATHS  other test paths instead
#
# OPTIONS are pytest's (-x, -k EXPR, -v ...).
#
# The list is every suite Linux runs except the Linux-only ones:
# tests/_io/test_ring.py (io_uring), test_epoll.py and test_epoll_ops.py
# (the epoll adapter). Windows-specific skips inside the list name what
# Windows (or Wine) lacks; tests/_io/test_iocp.py and test_afd.py show
# through statistics which Windows path ran.
#
# Uses ../shared/tools/wine-python (override with WINE_PYTHON): its setup
# installs Wine and a Windows CPython with cffi, outcome, sniffio, attrs and
# pytest, and nothing else is installed here. corral runs from this checkout
# (PYTHONPATH; the checkout's corral.egg-info registers the pytest plugin).
# The exit status is pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."
WINE_PYTHON=${WINE_PYTHON:-../shared/tools/wine-python}

"$WINE_PYTHON" setup

# The test extras wine-python does not install (pyproject's [test] list, at
# the versions the Linux venv has): pytest-timeout (the suite's 120 s limit),
# trustme and cryptography (the TLS suites), idna (IDNA 2008 host names) and
# trio (the compatibility tests). Windows wheels, unpacked once into their
# own directory and put on PYTHONPATH; the Windows python is left as set up.
# cryptography stays at 42: the Rust extension of later wheels imports a DLL
# Wine 8 does not provide ("DLL load failed while importing _rust").
TEST_DEPS=${WINE_TEST_DEPS:-/opt/wine-python/test-deps-1}
if [ ! -f "$TEST_DEPS/.ready" ]; then
    work=$(mktemp -d)
    pip download -q --no-deps --only-binary=:all: --platform win_amd64 \
        --python-version 3.13 --implementation cp -d "$work" \
        pytest-timeout==2.4.0 trustme==1.2.1 cryptography==42.0.8 idna==3.20 \
        trio==0.35.0 sortedcontainers==2.4.0
    rm -rf "$TEST_DEPS"; mkdir -p "$TEST_DEPS"
    for w in "$work"/*.whl; do unzip -q -o "$w" -d "$TEST_DEPS"; done
    rm -rf "$work"
    touch "$TEST_DEPS/.ready"
fi

paths=no
for arg in "$@"; do
    case "$arg" in
        tests*|*.py|*::*) paths=yes ;;
    esac
done
if [ "$paths" = no ]; then
    set -- "$@" \
        tests/_io/test_contract.py \
        tests/_io/test_iocp.py \
        tests/_io/test_afd.py \
        tests/_io/test_readiness.py \
        tests/_io/test_ops.py \
        tests/_io/test_fake.py \
        tests/_io/test_fast_paths.py \
        tests/_io/test_pool.py \
        tests/_io/test_diagnostics.py \
        tests/_core \
        tests/test_sync.py \
        tests/test_channel.py \
        tests/test_threads.py \
        tests/test_timeouts.py \
        tests/test_socket.py \
        tests/test_socket_races.py \
        tests/test_socket_resolve.py \
        tests/test_ssl.py \
        tests/test_exports.py \
        tests/test_highlevel_generic.py \
        tests/test_highlevel_socket.py \
        tests/test_highlevel_open_tcp_stream.py \
        tests/test_highlevel_open_tcp_listeners.py \
        tests/test_highlevel_ssl_helpers.py \
        tests/test_demo.py \
        tests/test_trio_compat.py \
        tests/test_file_io.py \
        tests/test_path.py \
        tests/test_sendfile.py \
        tests/testing
fi

# Wine's own chatter goes to the terminal; pytest's verdict is the status.
PYTHONPATH="$PWD:$TEST_DEPS" exec "$WINE_PYTHON" -m pytest -q -p no:cacheprovider "$@"
