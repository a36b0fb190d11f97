"""Record a lab's Snapshot, healthy and under each fault, as unit-test fixtures.

Run as root, under the kernel lock, with the default lab down:

    flock /run/cntrace-dev.lock .venv/bin/python scripts/record_lab_snapshots.py
    flock /run/cntrace-dev.lock .venv/bin/python scripts/record_lab_snapshots.py --topology router

It brings up the lab under the default name (so containers get their short names: web,
client...), reads the live snapshot in each state, keeps only the lab's namespaces and
containers, and writes fixtures/snapshots/lab/<state>.json for the default topology, or
fixtures/snapshots/<topology>/<state>.json (a back end other than iptables-nft goes to a
sub-directory named after it). See the README in each directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from cntrace.lab import spec, state, topologies
from cntrace.model import Snapshot
from cntrace.sources import live, recorded

LAB = spec.DEFAULT_NAME
SNAPSHOTS = Path(__file__).resolve().parent.parent / "fixtures" / "snapshots"


def only_lab(snap: Snapshot) -> Snapshot:
    netns = tuple(ns for ns in snap.netns if (ns.name or "").startswith(f"{LAB}."))
    keep = {ns.inode for ns in netns}
    containers = tuple(c for c in snap.containers if c.netns in keep)
    return dataclasses.replace(snap, netns=netns, containers=containers, warnings=())


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "cntrace", "lab", *args, "--name", LAB], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topology", default=topologies.DEFAULT)
    ap.add_argument("--iptables", default="nft")
    args = ap.parse_args()
    kind = topologies.get(args.topology)
    out = SNAPSHOTS / ("lab" if kind.name == topologies.DEFAULT else kind.name)
    if args.iptables != "nft":
        out /= args.iptables
    out.mkdir(parents=True, exist_ok=True)
    if state.load(LAB) is not None:
        sys.exit(f"lab {LAB} is up; take it down first (`cntrace lab down`)")
    up = ["up", "--iptables", args.iptables]
    cli(*up, *(["--topology", kind.name] if kind.name != topologies.DEFAULT else []))
    try:
        recorded.save(only_lab(live.read_snapshot()), str(out / "healthy.json"))
        for name in kind.faults:
            cli("break", name)
            recorded.save(only_lab(live.read_snapshot()), str(out / f"{name}.json"))
            cli("fix", name)
    finally:
        cli("down")
    print(f"recorded {len(kind.faults) + 1} snapshots in {out}")


if __name__ == "__main__":
    main()
