"""Rootful Podman containers, from the podman CLI.

Why the CLI and not the API socket: rootful Podman has no daemon, and its REST service
(``podman system service``) is usually not running; starting it would change the host we are
diagnosing. The CLI is always there when Podman is. Its cost is bounded: three podman processes
per discovery (ps, inspect of all ids at once, network ls), never one per container, and none at
all when Podman runs no container (the usual case on Docker hosts).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from dataclasses import replace
from typing import Any

from cntrace.model import Container, PortMapping
from cntrace.sources import procs as procmod
from cntrace.sources.procs import ProcTable, read_text
from cntrace.sources.runtimes import intent as intentmod
from cntrace.sources.runtimes.docker import endpoint_network

TIMEOUT = 30.0


RUNROOT = "/run/containers/storage"  # rootful containers/storage run root (tmpfs)
STORAGE_CONFS = ("/etc/containers/storage.conf", "/usr/share/containers/storage.conf")


def storage_runroot(env: dict[str, str] | None = None) -> str:
    """The run root podman uses: ``runroot`` of the storage.conf it reads (CONTAINERS_STORAGE_CONF
    when set, else the first of STORAGE_CONFS that exists), else the built-in default."""
    named = (env if env is not None else os.environ).get("CONTAINERS_STORAGE_CONF")
    for path in (named,) if named else STORAGE_CONFS:
        if not os.path.exists(path):
            continue
        import tomllib  # noqa: PLC0415  (only with a storage.conf: 4 ms of every command)

        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError):
            continue
        runroot = (doc.get("storage") or {}).get("runroot")
        return str(runroot) if runroot else RUNROOT
    return RUNROOT


def running_ids(table: ProcTable, runroot: str = RUNROOT) -> list[str]:
    """Ids of running Podman containers, without asking podman.

    Each running container has ``<runroot>/<driver>-containers/<id>/userdata/conmon.pid`` naming
    its live conmon; reading those is far cheaper than walking every process. Only when the run
    root is absent are conmon processes looked for instead.
    """
    try:
        drivers = [d for d in os.listdir(runroot) if d.endswith("-containers")]
    except OSError:
        return _conmon_ids(table)
    ids = []
    for d in drivers:
        try:
            entries = os.listdir(os.path.join(runroot, d))
        except OSError:
            continue
        for cid in entries:
            pid = read_text(os.path.join(runroot, d, cid, "userdata", "conmon.pid"))
            if pid and pid.strip().isdigit() and os.path.exists(f"/proc/{pid.strip()}"):
                ids.append(cid)
    return ids


def _conmon_ids(table: ProcTable) -> list[str]:
    """Container ids of Podman's conmon monitors (conmon -c <id> ... --exit-command podman)."""
    ids = []
    for pid in table.named("conmon"):
        args = procmod.cmdline(pid)
        if not any("podman" in a for a in args):
            continue  # CRI-O also uses conmon
        for flag, value in itertools.pairwise(args):
            if flag in ("-c", "--cid"):
                ids.append(value)
    return ids


def _ports(raw: list[dict[str, Any]] | None) -> tuple[PortMapping, ...]:
    out = []
    for p in raw or ():
        count = int(p.get("range") or 1)
        for i in range(count):
            out.append(
                PortMapping(
                    proto=str(p.get("protocol", "tcp")),
                    host_port=int(p["host_port"]) + i,
                    container_port=int(p["container_port"]) + i,
                    host_ip=str(p.get("host_ip") or "0.0.0.0"),
                )
            )
    return tuple(out)


def _mode(raw: str, ids_to_names: dict[str, str]) -> str:
    if raw.startswith("container:"):
        ref = raw.split(":", 1)[1]
        return "container:" + next((n for i, n in ids_to_names.items() if i.startswith(ref)), ref)
    if raw in ("bridge", "host", "none", ""):
        return raw or "bridge"
    if raw in ("slirp4netns", "pasta"):
        return raw
    if raw.startswith("ns:"):
        return "netns"
    return raw


def to_container(
    ps: dict[str, Any],
    inspect: dict[str, Any] | None,
    bridges: dict[str, tuple[str, str]],
    ids_to_names: dict[str, str],
) -> Container:
    """One `podman ps` entry plus its `podman inspect` document as a Container."""
    settings = (inspect or {}).get("NetworkSettings") or {}
    networks = []
    for name, ep in sorted((settings.get("Networks") or {}).items()):
        driver, iface = bridges.get(name, ("bridge", ""))
        networks.append(endpoint_network(name, driver, iface or None, ep))
    mode = _mode(
        str(((inspect or {}).get("HostConfig") or {}).get("NetworkMode", "")), ids_to_names
    )
    state = str(ps.get("State", "running"))
    return Container(
        id=str(ps["Id"]),
        name=str((ps.get("Names") or [ps["Id"][:12]])[0]),
        runtime="podman",
        pid=int(ps.get("Pid") or 0) or None,
        netns_path=settings.get("SandboxKey") or None,
        network_mode=mode,
        networks=tuple(networks),
        ports=_ports(ps.get("Ports")),
        labels={str(k): str(v) for k, v in (ps.get("Labels") or {}).items()},
        image=ps.get("Image") or None,
        state="running" if state == "running" else "gone",
    )


class PodmanSource:
    """Running rootful Podman containers; ``intent()`` holds its networks and the containers that
    exist but do not run (listed only when Podman runs some container: see ``containers``)."""

    name = "podman"

    def __init__(
        self,
        procs: ProcTable | None = None,
        binary: str = "podman",
        env: dict[str, str] | None = None,
    ) -> None:
        """``env``: variables for podman over this process's own (CONTAINERS_CONF and
        CONTAINERS_STORAGE_CONF pick a configuration, as they do for podman itself)."""
        self.procs = procs
        self.binary = procmod.which(binary)
        self.env = {**os.environ, **env} if env else None
        self._intent = intentmod.Intent()

    def intent(self) -> intentmod.Intent:
        """What the last ``containers()`` call learnt besides the running containers."""
        return self._intent

    def available(self) -> tuple[bool, str]:
        if self.binary is None:
            return False, "podman: not installed"
        return True, ""

    def _json(self, *args: str) -> Any:
        assert self.binary is not None
        res = subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            env=self.env,
        )
        if res.returncode != 0:
            raise OSError(f"podman {args[0]}: {res.stderr.strip().splitlines()[-1:]}")
        return json.loads(res.stdout or "null")

    def containers(self) -> list[Container]:
        table = self.procs or ProcTable.scan()
        if not running_ids(table, storage_runroot(self.env)):
            return []
        every: list[dict[str, Any]] = self._json("ps", "-a", "--format", "json") or []
        listed = [c for c in every if str(c.get("State", "running")) == "running"]
        if not listed:
            return []
        ids = [str(c["Id"]) for c in listed]
        try:
            inspected = {str(d["Id"]): d for d in self._json("inspect", *ids) or []}
        except OSError:
            # One container vanished between ps and inspect: inspect the rest one by one.
            inspected = {}
            for cid in ids:
                try:
                    inspected.update((str(d["Id"]), d) for d in self._json("inspect", cid))
                except OSError:
                    continue
        nets = self._json("network", "ls", "--format", "json") or []
        bridges = {
            str(n["name"]): (str(n.get("driver", "bridge")), str(n.get("network_interface", "")))
            for n in nets
        }
        names = {str(c["Id"]): str((c.get("Names") or ["?"])[0]) for c in every}
        self._intent = intentmod.Intent(
            networks=[intentmod.podman_network(n, None) for n in nets],
            stopped=[
                replace(
                    to_container(c, None, bridges, names),
                    state=str(c.get("State") or "exited"),
                    exit_code=int(c["ExitCode"]) if isinstance(c.get("ExitCode"), int) else None,
                )
                for c in every
                if str(c.get("State", "running")) != "running"
            ],
        )
        out = []
        for c in listed:
            doc = inspected.get(str(c["Id"]))
            container = to_container(c, doc, bridges, names)
            if doc is None:
                container = replace(container, state="gone")
            out.append(container)
        return out
