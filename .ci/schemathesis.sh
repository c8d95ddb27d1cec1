#!/usr/bin/env bash
# API conformance: schemathesis (from PyPI, pinned) against the OpenAPI document of a live
# torc-server on 127.0.0.1 with a temporary SQLite database, with a fixed budget of examples.
# Checks: no 5xx, every error body {code, message} (.ci/schemathesis_hooks.py), status codes,
# content types and response bodies as the document says. Sourced or run from the repository
# root; the virtualenv is kept under target/ so that a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${TORC_SCHEMATHESIS_EXAMPLES:-100}"
target_dir="${CARGO_TARGET_DIR:-target}"
venv="$target_dir/schemathesis-venv"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  command -v python3 >/dev/null || { echo "schemathesis needs python3" >&2; exit 1; }
  if ! python3 -m venv "$venv" 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$venv/bin/schemathesis" --version

cargo build -q -p torc-server
work="$(mktemp -d /tmp/torc-schemathesis.XXXXXX)"
server_pid=
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$target_dir/debug/torc-server" --database "sqlite:$work/torc.db" --host 127.0.0.1 --port 0 \
  >"$work/stdout" 2>"$work/server.log" &
server_pid=$!
url=
for _ in $(seq 1 600); do
  url="$(sed -n 's/^torc-server listening on //p' "$work/stdout")"
  [[ -n "$url" ]] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$url" ]] || { echo "torc-server did not start" >&2; cat "$work/server.log" >&2; exit 1; }
echo "torc-server at $url"

# Run from the temporary directory: schemathesis keeps its files (.schemathesis/) where it runs.
repo="$PWD"
schemathesis="$(cd "$venv/bin" && pwd)/schemathesis"
status=0
cd "$work"
SCHEMATHESIS_HOOKS="$repo/.ci/schemathesis_hooks.py" "$schemathesis" run \
  "$url/torc-service/v1/openapi.json" \
  --url "$url" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,error_body_is_code_and_message \
  --max-examples "$MAX_EXAMPLES" \
  --seed 13 \
  --generation-database none \
  --workers 2 \
  --request-timeout 60 \
  --no-color || status=$?
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "torc-server died during the run" >&2
  cat "$work/server.log" >&2
  exit 1
fi
exit "$status"
