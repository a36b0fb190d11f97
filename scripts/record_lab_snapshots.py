"""Record the lab's Snapshot, healthy and under each fault, as unit-test fixtures.

Run as root with the default lab down: `.venv/bin/python scripts/record_lab_snapshots.py`. It
brings up the default lab (so containers get their short names: web, client...), reads the live snapshot in each state, keeps only the lab's namespaces and
containers, and writes fixtures/snapshots/lab/<state>.json (see the README there).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from cntrace.lab import faults, spec, state
from cntrace.model import Snapshot
from cntrace.sources import live, recorded

LAB = spec.DEFAULT_NAME
OUT = Path(__file__).resolve().parent.parent / "fixtures" / "snapshots" / "lab"


def only_lab(snap: Snapshot) -> Snapshot:
    netns = tuple(ns for ns in snap.netns if (ns.name or "").startswith(f"{LAB}."))
    keep = {ns.inode for ns in netns}
    containers = tuple(c for c in snap.containers if c.netns in keep)
    return dataclasses.replace(snap, netns=netns, containers=containers, warnings=())


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "cntrace", "lab", *args, "--name", LAB], check=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if state.load(LAB) is not None:
        sys.exit(f"lab {LAB} is up; take it down first (`cntrace lab down`)")
    cli("up")
    try:
        recorded.save(only_lab(live.read_snapshot()), str(OUT / "healthy.json"))
        for name in faults.FAULTS:
            cli("break", name)
            recorded.save(only_lab(live.read_snapshot()), str(OUT / f"{name}.json"))
            cli("fix", name)
    finally:
        cli("down")
    print(f"recorded {len(faults.FAULTS) + 1} snapshots in {OUT}")


if __name__ == "__main__":
    main()
