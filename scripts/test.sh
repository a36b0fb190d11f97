#!/usr/bin/env bash
# The whole suite: static checks, then each pytest tier with its own count in the log.
# In CI (CI=true) tiers that need root, Docker or Podman fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
V=.venv/bin

echo "== ruff"; $V/ruff check cntrace tests bench; $V/ruff format --check cntrace tests bench
echo "== mypy"; $V/mypy
status=0
for tier in unit tui integration runtimes; do
  [ -d tests/$tier ] || continue
  echo "== tier $tier"
  $V/python -m pytest -q -p no:cacheprovider tests/$tier "$@" || status=1
done
exit $status
