"""Which kernel drops mean something for containers, and counts of them: no system access.

Every host drops multicast it did not join and frames meant for another machine, all the time:
on the lab with one real forward drop, 90 of 91 lines of `cntrace drops` were MLD/IGMP reports
freed with NOT_SPECIFIED. `cntrace drops` hides the (reason, function) pairs below by default and
says how many it hid; `--all` shows them. The list is documented in docs/tracing.md
("Benign drops"); a pair joins it only when the drop happens on idle hosts and never stands for a
container's traffic being lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

# (reason, freeing function, why it is noise)
BENIGN: tuple[tuple[str, str, str], ...] = (
    (
        "NOT_SPECIFIED",
        "ip6_mc_input",
        "IPv6 multicast (MLD reports, router solicitations) for a group not joined",
    ),
    (
        "NOT_SPECIFIED",
        "ip_rcv_finish_core",
        "IPv4 multicast or broadcast (IGMP reports) no local route takes",
    ),
    ("NOT_SPECIFIED", "igmp_rcv", "an IGMP message for a group not joined"),
    (
        "IPV6_NDISC_NS_OTHERHOST",
        "ndisc_recv_ns",
        "a neighbour solicitation for another host's address",
    ),
    ("OTHERHOST", "ip_rcv_core", "a frame for another MAC, seen by a promiscuous bridge or port"),
    (
        "OTHERHOST",
        "ipv6_rcv",
        "an IPv6 frame for another MAC, seen by a promiscuous bridge or port",
    ),
)
_PAIRS = frozenset((reason, where) for reason, where, _why in BENIGN)


def function(location: str | None) -> str:
    """``ip6_mc_input+0x1b2`` -> ``ip6_mc_input``."""
    return (location or "?").split("+", 1)[0]


class Dropped(Protocol):
    """A drop as the CLI (trace.events.Drop) and the console (tui.tracer.KernelDrop) hold it."""

    @property
    def reason(self) -> str: ...

    @property
    def location(self) -> str | None: ...


def is_benign(d: Dropped) -> bool:
    return (d.reason, function(d.location)) in _PAIRS


@dataclass
class DropTally:
    """Counts of drops by reason, function and place (container or namespace), with the number
    of benign drops hidden; what `cntrace drops --summary` and the console's drops tab show."""

    by_reason: Counter[str] = field(default_factory=Counter)
    by_location: Counter[str] = field(default_factory=Counter)
    by_place: Counter[str] = field(default_factory=Counter)
    total: int = 0
    hidden: int = 0

    def add(self, d: Dropped, place: str, show_all: bool = False) -> bool:
        """Count one drop; False when it is benign and hidden (counted in ``hidden`` only)."""
        if not show_all and is_benign(d):
            self.hidden += 1
            return False
        self.total += 1
        self.by_reason[d.reason] += 1
        self.by_location[function(d.location)] += 1
        self.by_place[place] += 1
        return True

    def rows(self, top: int = 10) -> list[tuple[str, str, int]]:
        """(column, key, count) rows, the ``top`` largest of each column."""
        out: list[tuple[str, str, int]] = []
        for column, counts in (
            ("reason", self.by_reason),
            ("location", self.by_location),
            ("where", self.by_place),
        ):
            out += [(column, key, n) for key, n in counts.most_common(top)]
        return out

    def document(self, top: int = 10) -> dict[str, object]:
        return {
            "total": self.total,
            "hidden_benign": self.hidden,
            "by_reason": dict(self.by_reason.most_common(top)),
            "by_location": dict(self.by_location.most_common(top)),
            "by_where": dict(self.by_place.most_common(top)),
        }
