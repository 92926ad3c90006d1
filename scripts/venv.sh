#!/usr/bin/env bash
# A fresh virtual environment in .venv with the package built and installed (not editable:
# the tests exercise what `pip install .` produces). Extra arguments name pip extras.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
if [ -n "$extras" ]; then
    .venv/bin/pip install -q ".[$extras]"
else
    .venv/bin/pip install -q .
fi
