#!/usr/bin/env bash
# The benchmarks: our agent against containerd + runc on this machine (as root). Installs what
# they need, builds the native modules in place (the runner imports them from the source tree),
# and writes benchmarks/results/ and the table in benchmarks/README.md. Extra arguments go to
# the runner (`--quick` for a short run, `--only lifecycle,exec`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
bash scripts/venv.sh bench
.venv/bin/python setup.py -q build_ext --inplace
exec .venv/bin/python -m benchmarks.run --readme "$@"
