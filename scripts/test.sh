#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: makes .venv, installs the project with its
# test extras, installs Debian's chromium for the browser tests if missing, runs pytest.
# Without PostgreSQL the PostgreSQL variants are skipped (CI=true makes that an error);
# Redis falls back to the embedded redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "note: no chromium on PATH; browser tests will be skipped (install Debian's chromium)" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
