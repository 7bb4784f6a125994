#!/usr/bin/env bash
# What `npm test` needs besides node_modules, each step cached and quick
# once done: FerretDB for the MongoDB store tests, and the Python virtualenvs
# (current websockets from PyPI; Debian's 10.4) for the Python client tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ferretdb.sh
bash scripts/python-venv.sh
