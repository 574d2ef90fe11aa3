#!/usr/bin/env bash
# Install corral into .venv and run the demo program.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -U pip
.venv/bin/python -m pip install -q .
.venv/bin/python examples/demo.py
