#!/usr/bin/env bash
# Run corral's test suites on Windows CPython 3.13 under Wine (issue 6): the
# IOCP backend and the \Device\Afd poller against the same tests Linux runs.
#
#   scripts/test-windows.sh [OPTIONS]        the Windows suite list below
#   scripts/test-windows.sh [OPTIONS] PATHS  other test paths instead
#
# OPTIONS are pytest's (-x, -k EXPR, -v ...).
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
        tests/_core \
        tests/test_sync.py \
        tests/test_channel.py \
        tests/test_threads.py \
        tests/test_timeouts.py \
        tests/test_socket.py \
        tests/test_highlevel_generic.py \
        tests/test_file_io.py \
        tests/testing
fi

# Wine's own chatter goes to the terminal; pytest's verdict is the status.
PYTHONPATH="$PWD" exec "$WINE_PYTHON" -m pytest -q -p no:cacheprovider "$@"
