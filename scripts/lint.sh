#!/usr/bin/env bash
# Lints the whole tree with the project's ruff rule set (pyproject.toml [tool.ruff.lint]).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
[ -x .venv/bin/ruff ] || .venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/ruff check "$@" .
