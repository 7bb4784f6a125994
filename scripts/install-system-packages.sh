#!/usr/bin/env bash
# Installs, from Debian/Ubuntu packages, what brainstem and its tests use
# and the machine lacks: redis-server (the gateway's embedded Redis),
# python3-websockets, python3-pip and python3-setuptools (the Python
# client and the test that pip-installs it), python3-venv (the venvs of
# scripts/python-venv.sh) and chromium (the browser tests). Does nothing
# when all are there.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
/usr/bin/python3 -c 'import websockets' >/dev/null 2>&1 || need+=(python3-websockets)
# Apart: importing pip first makes setuptools' distutils check fail, though both are there.
/usr/bin/python3 -c 'import pip' >/dev/null 2>&1 || need+=(python3-pip)
/usr/bin/python3 -c 'import setuptools' >/dev/null 2>&1 || need+=(python3-setuptools)
/usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing system packages: ${need[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
