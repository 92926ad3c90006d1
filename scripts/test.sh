#!/usr/bin/env bash
# The test command: host packages, a fresh venv with the package installed, the whole suite.
# Needs root (the agent makes namespaces, cgroups and mounts). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
bash scripts/venv.sh test
exec .venv/bin/pytest -q -rs "$@"
