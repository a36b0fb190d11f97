"""The containers table's rows: the `cntrace ls` rows, and finding a container again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cntrace.model import Container, Snapshot
from cntrace.render.discovery_json import ls_doc

if TYPE_CHECKING:
    from rich.text import Text

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ContainerRow:
    """One row of the containers table."""

    key: str  # the container id: stable across refreshes
    name: str
    runtime: str
    ips: str
    host_veth: str
    bridge: str
    ports: str
    state: str
    pod: str = ""  # NAMESPACE/POD of a Kubernetes sandbox or container: rows are grouped by it

    @property
    def haystack(self) -> str:
        """What the incremental filter searches (a pod's name finds its containers too)."""
        return " ".join(
            (self.name, self.runtime, self.ips, self.host_veth, self.bridge, self.ports,
             self.state, self.pod)
        ).lower()  # fmt: skip

    def cells(self) -> tuple[str | Text, ...]:
        # Imported here: the console's prefetch child computes the rows without rich, whose
        # import was ~30 ms of the first frame's wait.
        from rich.text import Text

        state: str | Text = (
            self.state if self.state == "running" else Text(self.state, style="bold red")
        )
        return (self.name, self.runtime, self.ips, self.host_veth, self.bridge, self.ports, state)


CONTAINER_COLUMNS = ("NAME", "RUNTIME", "IPS", "HOST VETH", "BRIDGE", "PORTS", "STATE")


def container_rows(snapshot: Snapshot) -> list[ContainerRow]:
    """The ``cntrace ls`` rows (containers sorted by runtime, then name), Kubernetes pods grouped:
    the pod's sandbox (``pod NAMESPACE/POD``), then its containers (``└ NAME``)."""
    rows = []
    for r in ls_doc(snapshot)["containers"]:
        k8s = r.get("kubernetes") or {}
        pod = f"{k8s['namespace']}/{k8s['pod']}" if k8s.get("pod") else ""
        name = r["name"]
        if pod:
            name = f"pod {pod}" if not k8s.get("container") else f"  └ {k8s['container']}"
        veths = ", ".join(
            v["name"] if v["netns_label"] == "host" else f"{v['name']}@{v['netns_label']}"
            for v in r["host_veths"]
        )
        ports = ", ".join(port_text_doc(p) for p in r["ports"])
        rows.append(
            ContainerRow(
                key=r["id"],
                name=name,
                runtime=r["runtime"],
                ips=", ".join(r["ips"]) or "-",
                host_veth=veths or "-",
                bridge=", ".join(r["bridges"]) or "-",
                ports=ports or "-",
                state=r["state"],
                pod=pod,
            )
        )
    return _grouped(rows)


def _grouped(rows: list[ContainerRow]) -> list[ContainerRow]:
    """Each pod's rows together where its first row was: the sandbox, then its containers."""
    pods: dict[str, list[ContainerRow]] = {}
    for r in rows:
        if r.pod:
            pods.setdefault(r.pod, []).append(r)
    if not pods:
        return rows
    out: list[ContainerRow] = []
    for r in rows:
        if not r.pod:
            out.append(r)
        elif r.pod in pods:
            group = pods.pop(r.pod)
            out += sorted(group, key=lambda g: (not g.name.startswith("pod "), g.name))
    return out


def port_text_doc(p: Doc) -> str:
    host = f"[{p['host_ip']}]" if ":" in p["host_ip"] else p["host_ip"]
    return f"{host}:{p['host_port']}->{p['container_port']}/{p['proto']}"


def filter_rows(rows: Iterable[ContainerRow], text: str) -> list[ContainerRow]:
    """Rows matching every word of ``text`` (case-insensitive, anywhere in the row)."""
    words = text.lower().split()
    return [r for r in rows if all(w in r.haystack for w in words)]


def container_by_id(snapshot: Snapshot, key: str) -> Container | None:
    for c in snapshot.containers:
        if c.id == key:
            return c
    return None


def path_ref(snapshot: Snapshot, c: Container) -> str:
    """How to name ``c`` to the path predictor: its name when unambiguous, else its id."""
    same = [o for o in snapshot.containers if o.name == c.name]
    return c.name if len(same) == 1 else c.id
