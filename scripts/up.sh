#!/usr/bin/env bash
# One command from a fresh clone to a running gateway: system packages,
# Node 26 and the npm dependencies, build, start.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-packages.sh
bash scripts/setup.sh
exec npm start
