#!/usr/bin/env bash
# The README's first command: install everything, then run ferry's demo on the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/ferry demo "$@"
