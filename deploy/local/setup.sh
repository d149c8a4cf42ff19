#!/usr/bin/env bash
# Installs what the project needs from its registries, on a fresh machine or an old one:
# uv (PyPI), the Python workspace (uv.lock), and with --dev the Node tools (buf, package-lock).
# PostgreSQL, Java and Maven are deploy/local/infra.sh's business.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v uv >/dev/null 2>&1; then
  echo "setup: installing uv from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
uv sync --frozen --quiet

if [[ "${1:-}" == "--dev" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing npm from apt"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  if [[ ! -x node_modules/.bin/buf ]] || [[ package-lock.json -nt node_modules/.bin/buf ]]; then
    npm ci --silent --no-audit --no-fund
  fi
fi
