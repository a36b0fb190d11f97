"""The kernel knobs topology faults turn: firewall rules in any back end, routes, sysctls.

A fault adds or removes one rule the way a person would: with `iptables -I/-D` on the iptables
back ends, or `nft insert` on native nftables (where removal goes by the rule's handle, found by
its text in `nft -a list chain`).
"""

from __future__ import annotations

from cntrace.lab import build
from cntrace.lab.state import LabState
from cntrace.lab.topo import iptables_cmd


def backend(lab: LabState) -> str:
    return lab.notes.get("iptables", "nft")


def iptables(lab: LabState, netns: str, *args: str) -> None:
    build.run_in(netns, [iptables_cmd(backend(lab)), *args])


def nft_insert(netns: str, family: str, table: str, chain: str, rule: str) -> None:
    build.run_in(netns, ["nft", f"insert rule {family} {table} {chain} {rule}"])


def nft_delete(netns: str, family: str, table: str, chain: str, rule: str) -> None:
    """Delete the first rule of ``chain`` whose listed text is ``rule``."""
    listing = build.run_in(netns, ["nft", "-a", "list", "chain", family, table, chain])
    for line in listing.splitlines():
        text, sep, handle = line.strip().rpartition(" # handle ")
        if sep and text == rule:
            build.run_in(netns, ["nft", "delete", "rule", family, table, chain, "handle", handle])
            return
    raise build.LabError(f"no rule {rule!r} in {family} {table} {chain} of {netns}")


def ip(netns: str, *lines: str) -> None:
    build.ip_batch("".join(f"{line}\n" for line in lines), netns)


def bridge(netns: str, *lines: str) -> None:
    """`bridge -batch` lines (FDB entries of VXLAN devices)."""
    build.ip_batch("".join(f"{line}\n" for line in lines), netns, "bridge")


def sysctl(netns: str, key: str, value: str) -> None:
    build.write_sysctl(netns, key, value)
