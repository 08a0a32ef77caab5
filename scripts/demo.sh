#!/usr/bin/env bash
# The main job: install what it needs, build, and run capture -> journal -> ship over ssh ->
# apply -> restore to a bookmark and to a time -> verify, on a generated sample volume.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh
[ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null
npm run --silent build
exec node scripts/demo.mjs "$@"
