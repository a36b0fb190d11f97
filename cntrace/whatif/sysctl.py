"""``sysctl -w KEY=VALUE`` (or ``echo VALUE > /proc/sys/...``) on a namespace's sysctls.

Writing a forwarding switch changes its siblings as the kernel does: ``net.ipv4.ip_forward`` and
``net.ipv4.conf.all.forwarding`` are one switch that also sets every interface's (and the
default's) forwarding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cntrace.errors import BadInput
from cntrace.model import Netns, Snapshot
from cntrace.whatif.change import with_netns

_FORWARD_V4 = ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding")
_FORWARD_V6 = ("net.ipv6.conf.all.forwarding",)


@dataclass(frozen=True)
class SysctlOp:
    """A `sysctl -w` change."""

    values: tuple[tuple[str, str], ...]
    kind: str = "sysctl"
    needs_netns: bool = True

    def apply(self, snap: Snapshot, ns: Netns | None) -> Snapshot:
        assert ns is not None
        sysctls = dict(ns.sysctls)
        for key, value in self.values:
            sysctls[key] = value
            if key in _FORWARD_V4:
                _all_forwarding(sysctls, "net.ipv4", value)
                sysctls["net.ipv4.ip_forward"] = value
            elif key in _FORWARD_V6:
                _all_forwarding(sysctls, "net.ipv6", value)
        return with_netns(snap, replace(ns, sysctls=sysctls))


def _all_forwarding(sysctls: dict[str, str], base: str, value: str) -> None:
    prefix = f"{base}.conf."
    for key in list(sysctls):
        if key.startswith(prefix) and key.endswith(".forwarding"):
            sysctls[key] = value
    sysctls[f"{prefix}all.forwarding"] = value
    sysctls[f"{prefix}default.forwarding"] = value


def _key(text: str) -> str:
    key = text.strip()
    if key.startswith("/proc/sys/"):
        key = key[len("/proc/sys/") :]
    if "/" in key:
        key = key.replace(".", "\0").replace("/", ".").replace("\0", "/")
    if not key.startswith("net."):
        raise BadInput(f"what-if: {key}: only net.* sysctls decide a packet's way")
    return key


def parse(words: list[str]) -> SysctlOp:
    if words[0].rsplit("/", 1)[-1] == "echo":
        # echo VALUE > /proc/sys/net/...
        if ">" not in words or words.index(">") + 1 >= len(words):
            raise BadInput("what-if: echo VALUE > /proc/sys/KEY")
        at = words.index(">")
        value = " ".join(w for w in words[1:at] if w not in ("-n", "-e"))
        return SysctlOp(((_key(words[at + 1]), value),))
    values = []
    for w in words[1:]:
        if w.startswith("-"):
            if w in ("-w", "--write", "-q", "--quiet"):
                continue
            raise BadInput(f"what-if: sysctl {w} is not a change")
        key, eq, value = w.partition("=")
        if not eq:
            raise BadInput(f"what-if: sysctl {w}: write KEY=VALUE")
        values.append((_key(key), value.strip()))
    if not values:
        raise BadInput("what-if: sysctl -w KEY=VALUE")
    return SysctlOp(tuple(values))
