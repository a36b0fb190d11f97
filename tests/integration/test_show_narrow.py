"""`cntrace show C` lists only the namespaces around C, and shows exactly what the wide read did.

The wide read (`read_snapshot(only=[C])`: every namespace's links and addresses, detail for C's)
is the reference; the narrow one (sources.targeted) must give the same show document for every
lab container, healthy and under every fault, while listing fewer namespaces than the host has.
Refs that are not a runtime's container (a named namespace, the host) take the wide read.
"""

from __future__ import annotations

import json

import pytest
from clirun import run_json
from labkit import Lab

from cntrace.lab.faults import FAULTS
from cntrace.render.discovery_json import show_doc
from cntrace.sources import live
from cntrace.topology import resolve_ref

CONTAINERS = ("web", "client", "api", "db", "upstream")


def _doc(ref: str, narrow: bool) -> tuple[str, int]:
    snap = live.read_snapshot(only=[ref], narrow=narrow)
    doc = show_doc(snap, resolve_ref(snap, ref))
    doc["host"]["taken_at"] = ""
    return json.dumps(doc, indent=1, sort_keys=True), len(snap.netns)


@pytest.mark.parametrize("fault", [None, *FAULTS], ids=lambda f: f or "healthy")
def test_narrow_show_is_the_wide_show(lab: Lab, fault: str | None) -> None:
    if fault:
        assert lab.run("lab", "break", fault).returncode == 0
    try:
        for name in CONTAINERS:
            ref = f"{lab.name}.{name}"
            wide, listed_wide = _doc(ref, narrow=False)
            narrow, listed_narrow = _doc(ref, narrow=True)
            assert narrow == wide, f"{fault}: {ref}"
            assert listed_narrow < listed_wide, (ref, listed_narrow, listed_wide)
    finally:
        if fault:
            assert lab.run("lab", "fix", fault).returncode == 0


def test_other_refs_take_the_wide_read(lab: Lab) -> None:
    for ref in (f"netns:{lab.name}.host", "host"):
        wide, listed_wide = _doc(ref, narrow=False)
        narrow, listed_narrow = _doc(ref, narrow=True)
        assert (narrow, listed_narrow) == (wide, listed_wide), ref


def test_show_command(lab: Lab) -> None:
    doc = run_json("show", f"{lab.name}.client", "--json")
    assert doc["container"]["name"] == f"{lab.name}.client"
    (iface,) = doc["container"]["interfaces"]
    assert iface["host_side"]["bridge"] is not None
