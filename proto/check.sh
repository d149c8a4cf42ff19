#!/usr/bin/env bash
# Contract checks: generated bindings are current, buf lint, and no breaking change against
# the previous commit (wire and JSON compatibility: fields may be added, never renumbered,
# retyped or removed). Set VAFA_PROTO_BASE to compare against another revision.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
buf="$root/node_modules/.bin/buf"
bash proto/gen.sh --check
(cd proto && "$buf" lint)
echo "proto: buf lint passed"
base="${VAFA_PROTO_BASE:-HEAD~1}"
if git rev-parse -q --verify "$base:proto/vafa" >/dev/null 2>&1; then
  "$buf" breaking proto --against ".git#ref=$base,subdir=proto"
  echo "proto: no breaking change against $base"
else
  echo "proto: $base has no contracts to compare against; breaking check has nothing to do"
fi
