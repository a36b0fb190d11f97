"""What the kernel itself says (through iproute2, not through cntrace) about a namespace's links:
the independent truth the runtime tests compare discovery with."""

from __future__ import annotations

import json
import subprocess
from typing import Any


def ip_json(nspath: str, *args: str) -> list[dict[str, Any]]:
    res = subprocess.run(
        ["nsenter", f"--net={nspath}", "ip", "-j", "-d", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    data: list[dict[str, Any]] = json.loads(res.stdout or "[]")
    return data


def links(nspath: str) -> dict[str, dict[str, Any]]:
    """ifname -> `ip -j -d link` entry (link_index is the veth peer's ifindex)."""
    return {lk["ifname"]: lk for lk in ip_json(nspath, "link")}


def link_by_mac(nspath: str, mac: str) -> dict[str, Any]:
    for lk in ip_json(nspath, "link"):
        if lk.get("address") == mac:
            return lk
    raise AssertionError(f"no link with MAC {mac} in {nspath}")


def link_by_index(nspath: str, ifindex: int) -> dict[str, Any]:
    for lk in ip_json(nspath, "link"):
        if lk["ifindex"] == ifindex:
            return lk
    raise AssertionError(f"no link with ifindex {ifindex} in {nspath}")


def global_cidrs(nspath: str) -> set[str]:
    out = set()
    for lk in ip_json(nspath, "addr"):
        for a in lk.get("addr_info", []):
            if a.get("scope") == "global":
                out.add(f"{a['local']}/{a['prefixlen']}")
    return out
