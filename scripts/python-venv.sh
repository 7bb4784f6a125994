#!/usr/bin/env bash
# The two Python environments the tests run the client in, besides Debian's
# bare /usr/bin/python3:
#
# - var/venv: the client as a pip user gets it. ./clients/python installed
#   (editable: it is the working tree) with the current websockets from
#   PyPI, from the machine's python3 (pyenv's, else Debian's).
# - var/venv-debian: Debian's /usr/bin/python3 and its python3-websockets
#   (--system-site-packages), with nothing added but the test tools.
#
# Both get clients/python/tests/requirements.txt (pytest, hypothesis).
# Done once: a second run only checks that nothing they were built from
# changed. Runs that overlap (test files in parallel) wait for the first.
# Prints each interpreter's path and versions.
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=clients/python/tests/requirements.txt
mkdir -p var
exec 9>var/venv.lock
flock 9

usable() {
  "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

# build DIR BASE VENV-OPTION PIP-ARGS...: (re)builds DIR from BASE when what it is built from changed.
build() {
  local dir=$1 base=$2 option=$3
  shift 3
  local stamp
  stamp=$({
    "$base" -c 'import sys; print(sys.executable, sys.version)'
    echo "$option $*"
    cat scripts/python-venv.sh clients/python/pyproject.toml "$requirements"
  } | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$dir/.built-from" 2>/dev/null || true)" = "$stamp" ] && "$dir/bin/python" -c 'import websockets, pytest, hypothesis' >/dev/null 2>&1; then
    return
  fi
  echo "python-venv: building $dir from $base" >&2
  rm -rf "$dir"
  "$base" -m venv $option "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@" -r "$requirements"
  echo "$stamp" > "$dir/.built-from"
}

base=""
for candidate in "$(command -v python3 || true)" /usr/bin/python3; do
  if [ -n "$candidate" ] && usable "$candidate"; then
    base=$candidate
    break
  fi
done
if [ -z "$base" ] || ! usable /usr/bin/python3; then
  echo "python-venv: needs /usr/bin/python3 (3.10 or newer) with venv and ensurepip; on Debian: apt-get install python3-venv" >&2
  exit 1
fi

build var/venv "$base" "" -e ./clients/python
build var/venv-debian /usr/bin/python3 --system-site-packages

for dir in var/venv var/venv-debian; do
  "$dir/bin/python" -c 'import sys, websockets, pytest, hypothesis
print(f"{sys.executable}: Python {sys.version.split()[0]}, websockets {websockets.__version__}, pytest {pytest.__version__}, hypothesis {hypothesis.__version__}")'
done
