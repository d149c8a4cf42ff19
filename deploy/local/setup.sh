#!/usr/bin/env bash
# Installs what the project needs from its registries, on a fresh machine or an old one:
# uv (PyPI), the Python workspace (uv.lock), and with --dev the Node tools (buf).
# PostgreSQL, Java and Maven are deploy/local/infra.sh's business.
set -euo pipefail
cd "$(dirname "$0")/../.."

# uv is used as `python3 -m uv` everywhere, so it needs no PATH entry (pyenv, --user installs).
if ! python3 -m uv --version >/dev/null 2>&1; then
  echo "setup: installing uv from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
python3 -m uv sync --frozen --quiet

if [[ "${1:-}" == "--dev" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing npm from apt"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  # package.json pins the exact version. No lockfile: npm records only the platform binaries
  # the registry served at lock time, and `npm ci` then refuses the lock on another machine.
  if [[ ! -x node_modules/.bin/buf ]] || [[ package.json -nt node_modules/.bin/buf ]]; then
    npm install --no-package-lock --no-audit --no-fund --loglevel=error
  fi
  node_modules/.bin/buf --version >/dev/null
fi
