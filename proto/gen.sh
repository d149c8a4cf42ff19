#!/usr/bin/env bash
# Generates libs/events from proto/ (python + mypy stubs). `--check` regenerates into a
# temporary folder and fails when the committed bindings differ, so stale code cannot land.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="libs/events/src"
if [[ "${1:-}" == "--check" ]]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out/vafa/events/v1"
python3 -m uv run --frozen python -m grpc_tools.protoc -Iproto \
  --python_out="$out" --mypy_out="$out" \
  proto/vafa/events/v1/*.proto 2>&1 | { grep -v '^Writing mypy to' || true; }
if [[ "${1:-}" == "--check" ]]; then
  for f in "$out"/vafa/events/v1/*_pb2.py "$out"/vafa/events/v1/*_pb2.pyi; do
    rel="libs/events/src/${f#"$out"/}"
    if ! cmp -s "$f" "$rel"; then
      echo "proto: $rel is stale or missing; run 'make proto' and commit the result" >&2
      exit 1
    fi
  done
  for f in libs/events/src/vafa/events/v1/*_pb2.py*; do
    [[ -e "$out/${f#libs/events/src/}" ]] || { echo "proto: $f has no .proto any more" >&2; exit 1; }
  done
  echo "proto: generated bindings are current"
fi
