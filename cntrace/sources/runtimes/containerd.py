"""containerd containers and Kubernetes pods, from containerd's task state on disk.

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

STATE_ROOTS = (
    "/run/containerd/io.containerd.runtime.v2.task",
    "/run/k3s/containerd/io.containerd.runtime.v2.task",
)
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
    """Running containerd tasks (all namespaces but Docker's) and the Kubernetes pods among them."""

    name = "containerd"

    def __init__(self, procs: ProcTable | None = None, roots: tuple[str, ...] = STATE_ROOTS):
        self.procs = procs
        self.roots = roots

    def available(self) -> tuple[bool, str]:
        if any(os.path.isdir(r) for r in self.roots):
            return True, ""
        if os.path.exists("/run/containerd/containerd.sock"):
            return True, ""  # running, no v2 task yet
        return False, "containerd: no task state under /run/containerd (not running)"

    def containers(self) -> list[Container]:
        out = []
        for root in self.roots:
            try:
                namespaces = sorted(os.listdir(root))
            except OSError:
                continue
            for ns in namespaces:
                if ns in SKIP_NAMESPACES:
                    continue
                try:
                    ids = sorted(os.listdir(os.path.join(root, ns)))
                except OSError:
                    continue
                for cid in ids:
                    c = self._task(root, ns, cid)
                    if c is not None:
                        out.append(c)
        return out

    def _task(self, root: str, ns: str, cid: str) -> Container | None:
        base = os.path.join(root, ns, cid)
        text = read_text(os.path.join(base, "config.json"))
        if text is None:
            return None  # the task ended while we looked
        try:
            spec = json.loads(text)
        except ValueError:
            return None
        pid_text = (read_text(os.path.join(base, "init.pid")) or "").strip()
        pid = int(pid_text) if pid_text.isdigit() else None
        c = task_to_container(ns, cid, spec, pid)
        if pid is None or not os.path.exists(f"/proc/{pid}"):
            c = replace(c, state="gone")
        return c
