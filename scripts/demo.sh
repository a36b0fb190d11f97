#!/usr/bin/env bash
# Brings up the built-in lab (if it is not up) and runs cntrace's main job on it.
set -euo pipefail
cd "$(dirname "$0")/.."
C=.venv/bin/cntrace
$C lab status >/dev/null 2>&1 || $C lab up
$C lab status
echo
echo "The lab stays up for you to explore; remove it with: $C lab down"
