"""containerd containers and Kubernetes pods, from containerd's task state on disk.

Every containerd is found by its process (cntrace.sources.runtimes.containerd_find): the lab's,
a kind node's inside a container, k3s', microk8s', and the system's, each with its own state.

Every running containerd task has a directory ``<state>/io.containerd.runtime.v2.task/<ns>/<id>``
holding ``init.pid`` and the OCI ``config.json``; the spec's annotations are where CRI writes a
pod's identity (``io.kubernetes.cri.container-type`` sandbox|container, ``...sandbox-name``,
``...sandbox-namespace``, ``...container-name``) and its ``linux.namespaces`` say which network
namespace a container joined. Reading these files needs neither containerd's gRPC API nor a process
per container. Docker's own containerd namespace (``moby``) is skipped: the Docker source owns it.

A pod is reported once as its sandbox (the pause container, whose namespace is the pod's), and
each app container as ``container:<pod>`` sharing it, the way Docker reports ``container:<name>``.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

from cntrace.model import Container
from cntrace.sources.procs import ProcTable, read_text
from cntrace.sources.runtimes.containerd_find import Instance, PidMapper, instances

SKIP_NAMESPACES = ("moby",)

CRI_TYPE = "io.kubernetes.cri.container-type"
CRI_POD = "io.kubernetes.cri.sandbox-name"
CRI_POD_NS = "io.kubernetes.cri.sandbox-namespace"
CRI_NAME = "io.kubernetes.cri.container-name"
POD_LABEL = "io.kubernetes.pod.name"
POD_NS_LABEL = "io.kubernetes.pod.namespace"


def _netns_path(spec: dict[str, Any]) -> tuple[bool, str | None]:
    """(has its own or a joined network namespace, the joined path if any)."""
    for ns in (spec.get("linux") or {}).get("namespaces") or ():
        if ns.get("type") == "network":
            return True, ns.get("path") or None
    return False, None


def task_to_container(namespace: str, cid: str, spec: dict[str, Any], pid: int | None) -> Container:
    """One containerd task (its OCI spec and init pid) as a Container."""
    ann: dict[str, str] = {str(k): str(v) for k, v in (spec.get("annotations") or {}).items()}
    own, joined = _netns_path(spec)
    kind = ann.get(CRI_TYPE)
    pod = ann.get(CRI_POD) or ann.get(POD_LABEL)
    pod_ns = ann.get(CRI_POD_NS) or ann.get(POD_NS_LABEL) or "default"
    labels = {k: v for k, v in ann.items() if k.startswith("io.kubernetes.")}
    labels["containerd.namespace"] = namespace
    if kind and pod:
        labels.setdefault(POD_LABEL, pod)
        labels.setdefault(POD_NS_LABEL, pod_ns)
        pod_name = f"{pod_ns}/{pod}"
        if kind == "sandbox":
            return Container(
                id=cid,
                name=pod_name,
                runtime="kubernetes",
                pid=pid,
                netns_path=joined,
                network_mode="cni" if own else "host",
                labels=labels,
                image=ann.get("io.kubernetes.cri.image-name"),
            )
        return Container(
            id=cid,
            name=f"{pod_name}/{ann.get(CRI_NAME, cid[:12])}",
            runtime="kubernetes",
            pid=pid,
            netns_path=joined,
            network_mode=f"container:{pod_name}" if own else "host",
            labels=labels,
            image=ann.get("io.kubernetes.cri.image-name"),
        )
    return Container(
        id=cid,
        name=cid if len(cid) < 40 else cid[:12],
        runtime="containerd",
        pid=pid,
        netns_path=joined,
        network_mode="netns" if joined else ("none" if own else "host"),
        labels=labels,
    )


class ContainerdSource:
    """Running containerd tasks (all namespaces but Docker's) and the Kubernetes pods among them.

    ``roots`` names task directories outright (tests, recordings); without it every containerd
    found by its process, and the known places, are read.
    """

    name = "containerd"

    def __init__(self, procs: ProcTable | None = None, roots: tuple[str, ...] | None = None):
        self.procs = procs
        self.roots = roots
        self._found: list[Instance] | None = None
        self._tasks: dict[int, str] = {}

    def instances(self) -> list[Instance]:
        if self._found is None:
            if self.roots is not None:
                self._found = [
                    Instance(state=os.path.dirname(r.rstrip("/")), found_by="override")
                    for r in self.roots
                ]
                self._tasks = {id(i): r for i, r in zip(self._found, self.roots, strict=True)}
            else:
                self._found = instances(procs=self.procs)
        return self._found

    def _task_root(self, inst: Instance) -> str:
        return self._tasks.get(id(inst), inst.task_root)

    def available(self) -> tuple[bool, str]:
        found = self.instances()
        if any(i.pid is not None or os.path.isdir(self._task_root(i)) for i in found):
            return True, ""
        return False, "containerd: no containerd process or task state found (not running)"

    def containers(self) -> list[Container]:
        out = []
        for inst in self.instances():
            root = self._task_root(inst)
            try:
                namespaces = sorted(os.listdir(root))
            except OSError:
                continue
            mapper = PidMapper(inst)
            for ns in namespaces:
                if ns in SKIP_NAMESPACES:
                    continue
                try:
                    ids = sorted(os.listdir(os.path.join(root, ns)))
                except OSError:
                    continue
                for cid in ids:
                    c = self._task(inst, root, ns, cid, mapper)
                    if c is not None:
                        out.append(c)
        return out

    def _task(
        self, inst: Instance, root: str, ns: str, cid: str, mapper: PidMapper
    ) -> Container | None:
        base = os.path.join(root, ns, cid)
        text = read_text(os.path.join(base, "config.json"))
        if text is None:
            return None  # the task ended while we looked
        try:
            spec = json.loads(text)
        except ValueError:
            return None
        pid_text = (read_text(os.path.join(base, "init.pid")) or "").strip()
        pid = mapper(int(pid_text)) if pid_text.isdigit() else None
        c = task_to_container(ns, cid, spec, pid)
        labels = {**c.labels, "containerd.state": inst.state}
        if inst.address:
            labels["containerd.address"] = inst.address
        c = replace(c, labels=labels)
        if c.netns_path:
            c = replace(c, netns_path=inst.local(c.netns_path))
        if pid is None or not os.path.exists(f"/proc/{pid}"):
            c = replace(c, state="gone")
        return c
