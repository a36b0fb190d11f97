#!/usr/bin/env bash
# Brings up the built-in lab (if it is not up) and runs cntrace's main job on it: where each
# container is plugged in, then one packet's way out to "the internet": healthy, broken
# (predicted from kernel state), and broken again, traced live with eBPF.
set -euo pipefail
cd "$(dirname "$0")/.."
C=.venv/bin/cntrace
step() { printf '\n\033[1m$ cntrace %s\033[0m\n' "$*"; }

# Reuse a healthy lab; rebuild one that is missing or broken (e.g. after a reboot).
$C lab status >/dev/null 2>&1 || { $C lab down >/dev/null 2>&1 || true; $C lab up; }
step lab status;  $C lab status
step ls --runtime lab;  $C ls --runtime lab
step path client 203.0.113.10:80;  $C path client 203.0.113.10:80
$C lab break no-masquerade >/dev/null
step "path client 203.0.113.10:80   # after: cntrace lab break no-masquerade"
$C path client 203.0.113.10:80 || true
$C lab fix no-masquerade >/dev/null
$C lab break forward-drop >/dev/null
step "path client 203.0.113.10:80 --live   # after: cntrace lab break forward-drop"
$C path client 203.0.113.10:80 --live || true
$C lab fix forward-drop >/dev/null
echo
echo "The lab stays up for you to explore (cntrace lab faults lists what can break);"
echo "remove it with: $C lab down"
