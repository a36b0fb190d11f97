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
import time
from pathlib import Path

from cntrace.lab import spec, state, topologies
from cntrace.model import Snapshot
from cntrace.sources import live, recorded
from cntrace.topology import Topology

LAB = spec.DEFAULT_NAME
SNAPSHOTS = Path(__file__).resolve().parent.parent / "fixtures" / "snapshots"


def only_lab(snap: Snapshot) -> Snapshot:
    netns = tuple(ns for ns in snap.netns if (ns.name or "").startswith(f"{LAB}."))
    keep = {ns.inode for ns in netns}
    containers = tuple(c for c in snap.containers if c.netns in keep)
    return dataclasses.replace(snap, netns=netns, containers=containers, warnings=())


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "cntrace", "lab", *args, "--name", LAB], check=True)


def settled() -> Snapshot:
    """The lab's snapshot once link states have settled: the kernel reports a veth's operstate
    through linkwatch up to a second after its carrier came up, and a snapshot taken in between
    says "down" for a link that carries traffic."""
    for _ in range(20):
        snap = only_lab(live.read_snapshot())
        topo = Topology(snap)
        pending = [
            lk
            for ns in snap.netns
            for lk in ns.links
            if lk.kind == "veth"
            and lk.admin_up
            and lk.oper_state == "down"
            and (peer := topo.peer(ns, lk)) is not None
            and peer.link.admin_up
        ]
        if not pending:
            return snap
        time.sleep(0.25)
    return snap


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
        recorded.save(settled(), str(out / "healthy.json"))
        for name in kind.faults:
            cli("break", name)
            recorded.save(settled(), str(out / f"{name}.json"))
            cli("fix", name)
    finally:
        cli("down")
    print(f"recorded {len(kind.faults) + 1} snapshots in {out}")


if __name__ == "__main__":
    main()
