#!/usr/bin/env bash
# Creates .venv with cntrace (editable) and its development tools, and bridges Debian's `bcc`
# package into it. Only bcc is exposed: the rest of dist-packages stays out of the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY=${PYTHON:-python3}
stamp=$VENV/.cntrace-installed
if [ ! -x $VENV/bin/python ]; then
  "$PY" -m venv $VENV
fi
if [ ! -f $stamp ] || [ pyproject.toml -nt $stamp ]; then
  # pip's warnings about this machine's extra package indexes are noise: keep only real errors
  $VENV/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  $VENV/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
  # installed? cntrace's dependencies, and pyroute2 (dev: the tests' reference netlink decoder)
  $VENV/bin/python -c "import cntrace, textual, scapy, rich, pyroute2"
  touch $stamp
fi

bridge=$PWD/$VENV/bcc-bridge
mkdir -p "$bridge"
if [ -d /usr/lib/python3/dist-packages/bcc ]; then
  ln -sfn /usr/lib/python3/dist-packages/bcc "$bridge/bcc"
fi
site=$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$bridge" > "$site/cntrace-bcc-bridge.pth"
