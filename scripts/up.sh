#!/usr/bin/env bash
# One command from a fresh clone to a running gateway: system packages,
# npm dependencies, build, start.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-packages.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
exec npm start
