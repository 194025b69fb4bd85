#!/usr/bin/env bash
# Installs Trainyard into .venv and runs the whole service on the embedded default:
# SQLite + embedded Redis in ./.trainyard, the API, a Celery worker and the dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e .
exec .venv/bin/trainyard serve "$@"
