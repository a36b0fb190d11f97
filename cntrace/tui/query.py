"""What the path panel was asked: the source container and the typed destination.

The destination box takes the CLI's DEST (a container, IP, IP:PORT, hostname, host:PORT) and an
optional protocol word, e.g. ``web:9000 udp``; the same query replays as ``cntrace path`` argv.
"""

from __future__ import annotations

from dataclasses import dataclass

from cntrace.errors import BadInput

PROTOCOLS = ("tcp", "udp", "icmp")


@dataclass(frozen=True, slots=True)
class PathQuery:
    """One path question, as the user put it."""

    source: str
    destination: str
    proto: str | None = None

    def argv(self, snapshot_file: str | None = None) -> list[str]:
        """The ``cntrace path`` command line that asks the same question."""
        out = ["cntrace", "path"]
        if snapshot_file is not None:
            out += ["--snapshot", snapshot_file]
        out += [self.source, self.destination]
        if self.proto is not None:
            out += ["--proto", self.proto]
        return out


def parse_destination(source: str, text: str) -> PathQuery:
    """``DEST [tcp|udp|icmp]`` -> PathQuery; BadInput with a one-line message otherwise."""
    words = text.split()
    if not words:
        raise BadInput("type a destination: a container, IP, IP:PORT or host:PORT")
    dest, rest = words[0], words[1:]
    proto = None
    for word in rest:
        low = word.lower()
        if low in PROTOCOLS and proto is None:
            proto = low
        else:
            raise BadInput(f"unexpected {word!r}: write DEST [tcp|udp|icmp], e.g. web:9000 udp")
    return PathQuery(source, dest, proto)
