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
  $VENV/bin/python -m pip install -q --upgrade pip >/dev/null
  $VENV/bin/python -m pip install -q -e '.[dev]'
  touch $stamp
fi

bridge=$PWD/$VENV/bcc-bridge
mkdir -p "$bridge"
if [ -d /usr/lib/python3/dist-packages/bcc ]; then
  ln -sfn /usr/lib/python3/dist-packages/bcc "$bridge/bcc"
fi
site=$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$bridge" > "$site/cntrace-bcc-bridge.pth"
