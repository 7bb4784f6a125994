#!/usr/bin/env bash
# Builds FerretDB v1 (the MongoDB wire protocol on SQLite), which the
# MongoDB heartbeat-store tests run against, into var/tools/ferretdb from
# the Go module proxy. Does nothing when that version is already built.
# test/helpers/mongo-server.ts starts it; MONGO_URL (a real mongod) wins.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=v1.24.2
BIN="$PWD/var/tools/ferretdb"

if [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null | sed -n 1p)" = "version: $VERSION" ]; then
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "ferretdb.sh: go is not installed" >&2; exit 1; }

echo "building FerretDB $VERSION into var/tools"
src="$(go mod download -json "github.com/FerretDB/FerretDB@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$src" ] || { echo "ferretdb.sh: the module did not download" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$src/." "$work"
chmod -R u+w "$work"
# The module lacks the version file FerretDB's own build generates, and a
# binary built without it (`go install ...@version` too) panics at start.
echo "$VERSION" > "$work/build/version/version.txt"
mkdir -p "$(dirname "$BIN")"
# Only the SQLite backend is used: the PostgreSQL one stays out of the build.
(cd "$work" && go build -buildvcs=false -trimpath -tags ferretdb_no_postgresql -o "$BIN.partial" ./cmd/ferretdb)
mv "$BIN.partial" "$BIN"
"$BIN" --version | sed -n 1p
