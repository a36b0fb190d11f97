"""The lab's faults and what `cntrace path` must say about each: one table for two tiers.

tests/unit/test_path_lab.py predicts every case on the snapshot recorded from the lab in that
state (fixtures/snapshots/lab/STATE.json); tests/integration/test_path_live_lab.py breaks a live lab
the same way, predicts, and checks the answer against a real connection attempt. A new fault (or a
new question about one) is one row here.
"""

from __future__ import annotations

from dataclasses import dataclass

from cntrace.lab import spec

# What a real probe meets, for each predicted verdict.
REAL = {"delivered": "ok", "refused": "refused", "dropped": "timeout", "timeout": "timeout"}


@dataclass(frozen=True)
class LabCase:
    fault: str | None  # a cntrace.lab.faults name; None: the healthy lab
    src: str  # a lab container
    dst: str  # NAME[:PORT]: a lab container, "internet" (upstream's public address) or "host"
    status: str  # the predicted verdict
    hop: str  # the kind of the hop the verdict points at
    code: str | None  # the first error finding; None: no error at all
    proto: str | None = None
    size: int | None = None

    @property
    def state(self) -> str:
        """The recorded snapshot of this case's lab."""
        return self.fault or "healthy"

    @property
    def name(self) -> str:
        return self.dst.split(":")[0]

    @property
    def port(self) -> int | None:
        _, _, port = self.dst.partition(":")
        return int(port) if port else None

    @property
    def recorded_dst(self) -> str:
        """The destination as asked of a recorded snapshot (whose lab is always the same)."""
        return self.dst.replace("internet", spec.INTERNET_IP, 1)

    @property
    def options(self) -> dict[str, object]:
        """``predict`` keyword arguments."""
        opts: dict[str, object] = {}
        if self.proto:
            opts["proto"] = self.proto
        if self.size:
            opts["size"] = self.size
        return opts

    @property
    def argv(self) -> tuple[str, ...]:
        """The same options on the command line."""
        args: tuple[str, ...] = ("--proto", self.proto) if self.proto else ()
        return args + (("--size", str(self.size)) if self.size else ())

    @property
    def real(self) -> str:
        """What a real connection attempt meets right after the prediction."""
        return REAL[self.status]

    @property
    def id(self) -> str:
        return f"{self.state}:{self.src}->{self.dst}" + (f"/{self.proto}" if self.proto else "")


CASES = (
    LabCase(None, "client", "web:80", "delivered", "socket", None),
    LabCase(None, "client", "internet:80", "delivered", "socket", None),
    LabCase(None, "upstream", "host:8080", "delivered", "socket", None),
    LabCase(None, "api", "db:80", "delivered", "socket", None),
    LabCase(None, "client", "api:80", "dropped", "netfilter", "isolated-networks"),
    LabCase(None, "client", "web", "delivered", "socket", None),  # ICMP echo
    LabCase(None, "client", "web:9000", "delivered", "socket", None, proto="udp"),
    LabCase("loopback-bind", "client", "web:80", "refused", "socket", "loopback-bind"),
    LabCase("loopback-bind", "upstream", "host:8080", "refused", "socket", "loopback-bind"),
    LabCase("no-listener", "client", "web:80", "refused", "socket", "no-listener"),
    LabCase("no-listener", "upstream", "host:8080", "refused", "socket", "no-listener"),
    LabCase("isolated-networks", "api", "db:80", "dropped", "netfilter", "isolated-networks"),
    LabCase(
        "ip-forward-disabled", "client", "internet:80", "dropped", "route", "ip-forward-disabled"
    ),
    LabCase(
        "ip-forward-disabled", "upstream", "host:8080", "dropped", "route", "ip-forward-disabled"
    ),
    LabCase("forward-drop", "client", "internet:80", "dropped", "netfilter", "forward-drop"),
    LabCase("no-masquerade", "client", "internet:80", "timeout", "route", "no-masquerade"),
    LabCase("interface-down", "client", "web:80", "dropped", "bridge", "interface-down"),
    LabCase("interface-down", "upstream", "host:8080", "dropped", "bridge", "interface-down"),
    LabCase(
        "mtu-mismatch",
        "client",
        "web:9000",
        "dropped",
        "bridge",
        "mtu-mismatch",
        proto="udp",
        size=1400,
    ),
)
IDS = [c.id for c in CASES]
