"""Docker containers from the Engine API, spoken over its unix socket.

The list endpoint already carries names, networks, IPs, MACs and published ports for every
container in one request; only the init PID is missing, and it is taken from the cgroup paths
/proc already shows (``.../docker/<id>`` or ``docker-<id>.scope``). A container whose PID cannot
be found that way is inspected individually, so a thousand containers cost two requests, not a
thousand. HTTP/1.0 is spoken by hand (a dozen lines) because importing http.client costs more
than the two requests themselves, and `cntrace ls` counts its start-up time.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from typing import Any

from cntrace.model import Container, ContainerNetwork, PortMapping
from cntrace.sources.procs import ProcTable
from cntrace.sources.runtimes import intent as intentmod

DEFAULT_SOCKET = "/var/run/docker.sock"
API = "/v1.41"  # Engine 20.10; newer engines accept it too


class DockerError(OSError):
    """The engine could not be asked, or answered with an error status."""


def socket_path(env: dict[str, str] | None = None) -> tuple[str | None, str]:
    """The engine's unix socket from DOCKER_HOST (default /var/run/docker.sock), or why not."""
    host = (env if env is not None else os.environ).get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET, ""
    if host.startswith("unix://"):
        return host[len("unix://") :], ""
    return None, f"DOCKER_HOST={host} is not a unix socket; only unix sockets are supported"


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


def parse_response(raw: bytes) -> tuple[int, bytes]:
    """(status, body) of an HTTP/1.x response read to the end."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise DockerError("docker engine: truncated HTTP answer")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise DockerError(f"docker engine: not an HTTP answer: {lines[0][:80]!r}")
    if any(
        ln.lower().startswith(b"transfer-encoding:") and b"chunked" in ln.lower()
        for ln in lines[1:]
    ):
        body = _dechunk(body)
    return int(parts[1]), body


class DockerClient:
    """A minimal Engine API client: one GET per connection, JSON answers."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def get(self, url: str) -> Any:
        request = f"GET {API}{url} HTTP/1.0\r\nHost: docker\r\n\r\n".encode()
        chunks = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(request)
                while data := sock.recv(65536):
                    chunks.append(data)
        except PermissionError:
            raise
        except OSError as exc:
            raise DockerError(f"docker engine at {self.path}: {exc}") from exc
        status, body = parse_response(b"".join(chunks))
        if status == 404:
            raise FileNotFoundError(url)
        if status >= 400:
            raise DockerError(f"docker engine: {url}: HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def close(self) -> None:
        """Nothing to close: every request has its own connection."""


def _mode(raw: str, ids_to_names: dict[str, str], drivers: dict[str, str]) -> str:
    if raw in ("default", "bridge", ""):
        return "bridge"
    if raw in ("host", "none"):
        return raw
    if raw.startswith("container:"):
        ref = raw.split(":", 1)[1]
        name = next((n for i, n in ids_to_names.items() if i.startswith(ref)), ref)
        return f"container:{name}"
    driver = drivers.get(raw, "bridge")
    return {"null": "none"}.get(driver, driver)


def _bridge_name(net: dict[str, Any]) -> str | None:
    if net.get("Driver") != "bridge":
        return None
    opts = net.get("Options") or {}
    name = opts.get("com.docker.network.bridge.name")
    return str(name) if name else f"br-{str(net.get('Id', ''))[:12]}"


def endpoint_network(
    name: str, driver: str, bridge: str | None, ep: dict[str, Any]
) -> ContainerNetwork:
    """One entry of an inspect's NetworkSettings.Networks (Podman's inspect has Docker's shape)."""
    return ContainerNetwork(
        name=name,
        driver=driver,
        bridge=bridge,
        ip=ep.get("IPAddress") or None,
        prefixlen=ep.get("IPPrefixLen") or None,
        ipv6=ep.get("GlobalIPv6Address") or None,
        gateway=ep.get("Gateway") or None,
        mac=ep.get("MacAddress") or None,
        aliases=tuple(ep.get("Aliases") or ()),
    )


def to_container(
    raw: dict[str, Any],
    networks: dict[str, dict[str, Any]],
    ids_to_names: dict[str, str],
    pid: int | None,
) -> Container:
    """One /containers/json entry (plus the /networks list) as a Container."""
    drivers = {name: str(n.get("Driver", "")) for name, n in networks.items()}
    attached = []
    for name, ep in sorted(((raw.get("NetworkSettings") or {}).get("Networks") or {}).items()):
        net = networks.get(name, {})
        driver = str(net.get("Driver", "bridge"))
        attached.append(endpoint_network(name, driver, _bridge_name(net), ep))
    ports = tuple(
        PortMapping(
            proto=str(p.get("Type", "tcp")),
            host_port=int(p["PublicPort"]),
            container_port=int(p["PrivatePort"]),
            host_ip=str(p.get("IP") or "0.0.0.0"),
        )
        for p in raw.get("Ports") or ()
        if p.get("PublicPort")
    )
    names = raw.get("Names") or [raw["Id"][:12]]
    mode = _mode(str((raw.get("HostConfig") or {}).get("NetworkMode", "")), ids_to_names, drivers)
    return Container(
        id=str(raw["Id"]),
        name=str(names[0]).lstrip("/"),
        runtime="docker",
        pid=pid,
        network_mode=mode,
        networks=tuple(n for n in attached if n.driver not in ("host", "null")),
        ports=ports,
        labels={str(k): str(v) for k, v in (raw.get("Labels") or {}).items()},
        image=raw.get("Image"),
        state="running" if raw.get("State", "running") == "running" else str(raw.get("State")),
    )


RUNNING = ("running", "restarting")


class DockerSource:
    """Running Docker containers (``docker ps``); ``intent()`` holds what else the engine said
    (networks' options, docker-proxy processes, the containers that do not run)."""

    name = "docker"

    def __init__(self, procs: ProcTable | None = None, env: dict[str, str] | None = None) -> None:
        self.procs = procs
        self.socket, self._why = socket_path(env)
        self._intent = intentmod.Intent()

    def intent(self) -> intentmod.Intent:
        """What the last ``containers()`` call learnt besides the running containers."""
        return self._intent

    def available(self) -> tuple[bool, str]:
        if self.socket is None:
            return False, f"docker: {self._why}"
        if not os.path.exists(self.socket):
            return False, f"docker: no engine socket at {self.socket}"
        try:
            self._client().get("/version")
        except PermissionError:
            return False, f"docker: no permission on {self.socket}"
        except (OSError, ValueError) as exc:
            return False, f"docker: engine not answering at {self.socket} ({exc})"
        return True, ""

    def _client(self) -> DockerClient:
        assert self.socket is not None
        return DockerClient(self.socket)

    def containers(self) -> list[Container]:
        client = self._client()
        try:
            every: list[dict[str, Any]] = client.get("/containers/json?all=1")
            listed = [c for c in every if str(c.get("State", "running")) in RUNNING]
            networks = {str(n["Name"]): n for n in client.get("/networks")}
            ids_to_names = {
                str(c["Id"]): str((c.get("Names") or ["?"])[0]).lstrip("/") for c in every
            }
            table = self.procs or ProcTable.scan()
            self._intent = intentmod.Intent(
                networks=[intentmod.docker_network(n, _bridge_name(n)) for n in networks.values()],
                proxies=intentmod.docker_proxies(table)
                if any(c.get("Ports") for c in listed)
                else [],
                stopped=[
                    replace(
                        to_container(raw, networks, ids_to_names, None),
                        state=str(raw.get("State") or "exited"),
                        exit_code=intentmod.exit_code(raw),
                    )
                    for raw in every
                    if str(raw.get("State", "running")) not in RUNNING
                ],
            )
            by_id = table.by_container_id()
            out = []
            for raw in listed:
                pids = by_id.get(str(raw["Id"]))
                pid = table.init_of(pids) if pids else None
                state = None
                if pid is None:
                    try:
                        info = client.get(f"/containers/{raw['Id']}/json")
                        pid = int(info.get("State", {}).get("Pid") or 0) or None
                        if not info.get("State", {}).get("Running", False):
                            state = "gone"
                    except FileNotFoundError:
                        state = "gone"  # removed between list and inspect
                c = to_container(raw, networks, ids_to_names, pid)
                if state:
                    c = replace(c, state=state)
                out.append(c)
            return out
        finally:
            client.close()
