#!/usr/bin/env bash
# The README's second command: install everything, lint, type-check, and run every
# test, the lab integration tests included (they need root, libvirtd and QEMU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
