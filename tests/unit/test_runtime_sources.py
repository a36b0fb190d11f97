"""Runtime records -> Containers, on documents shaped like the real APIs' (recorded field names)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cntrace.sources import procs
from cntrace.sources.runtimes import containerd, docker, podman

NETWORKS = {
    "bridge": {
        "Name": "bridge",
        "Id": "5074" * 16,
        "Driver": "bridge",
        "Options": {"com.docker.network.bridge.name": "docker0"},
    },
    "appnet": {
        "Name": "appnet",
        "Id": "8fa1b1d1de31" + "0" * 52,
        "Driver": "bridge",
        "Options": {},
    },
    "host": {"Name": "host", "Id": "e3f3" * 16, "Driver": "host", "Options": {}},
    "none": {"Name": "none", "Id": "a15c" * 16, "Driver": "null", "Options": {}},
    "mv": {"Name": "mv", "Id": "1234" * 16, "Driver": "macvlan", "Options": {}},
}


def listed(name: str, mode: str, nets: dict[str, Any], ports: list[Any] | None = None) -> Any:
    return {
        "Id": (name * 64)[:64],
        "Names": [f"/{name}"],
        "Image": "busybox",
        "State": "running",
        "Labels": {"a": "b"},
        "Ports": ports or [],
        "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": {"Networks": nets},
    }


def ep(ip: str, mac: str) -> dict[str, Any]:
    return {
        "IPAddress": ip,
        "IPPrefixLen": 16,
        "Gateway": "172.17.0.1",
        "MacAddress": mac,
        "GlobalIPv6Address": "",
        "Aliases": None,
    }


def test_docker_default_bridge_with_published_port() -> None:
    raw = listed(
        "web",
        "default",
        {"bridge": ep("172.17.0.3", "02:42:ac:11:00:03")},
        [
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
            {"PrivatePort": 443, "Type": "tcp"},
        ],
    )
    c = docker.to_container(raw, NETWORKS, {}, 42)
    assert (c.name, c.runtime, c.pid, c.network_mode, c.labels) == (
        "web",
        "docker",
        42,
        "bridge",
        {"a": "b"},
    )
    (net,) = c.networks
    assert (net.name, net.bridge, net.ip, net.prefixlen, net.mac) == (
        "bridge",
        "docker0",
        "172.17.0.3",
        16,
        "02:42:ac:11:00:03",
    )
    assert [(p.host_ip, p.host_port, p.container_port) for p in c.ports] == [("0.0.0.0", 8080, 80)]


def test_docker_modes() -> None:
    ids = {"a" * 64: "web"}
    user = docker.to_container(
        listed("u", "appnet", {"appnet": ep("172.18.0.2", "m")}), NETWORKS, ids, 1
    )
    assert user.network_mode == "bridge" and user.networks[0].bridge == "br-8fa1b1d1de31"
    host = docker.to_container(listed("h", "host", {"host": ep("", "")}), NETWORKS, ids, 1)
    assert host.network_mode == "host" and host.networks == ()
    none = docker.to_container(listed("n", "none", {"none": ep("", "")}), NETWORKS, ids, 1)
    assert none.network_mode == "none" and none.networks == ()
    side = docker.to_container(listed("s", "container:" + "a" * 64, {}), NETWORKS, ids, 1)
    assert side.network_mode == "container:web"
    mv = docker.to_container(listed("m", "mv", {"mv": ep("192.0.2.5", "m")}), NETWORKS, ids, 1)
    assert mv.network_mode == "macvlan" and mv.networks[0].bridge is None


@pytest.mark.parametrize(
    "env,expected,why",
    [
        ({}, "/var/run/docker.sock", ""),
        ({"DOCKER_HOST": "unix:///run/x.sock"}, "/run/x.sock", ""),
        ({"DOCKER_HOST": "tcp://10.0.0.1:2375"}, None, "not a unix socket"),
    ],
)
def test_docker_host(env: dict[str, str], expected: str | None, why: str) -> None:
    path, reason = docker.socket_path(env)
    assert path == expected and why in reason


def test_docker_source_without_engine_is_a_warning_not_an_error(tmp_path: Path) -> None:
    src = docker.DockerSource(env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    ok, why = src.available()
    assert not ok and "no engine socket" in why


def test_podman_record() -> None:
    ps = {
        "Id": "e9" * 32,
        "Names": ["pod1"],
        "Pid": 14233,
        "State": "running",
        "Image": "",
        "Labels": None,
        "Ports": [
            {"host_ip": "", "container_port": 80, "host_port": 8081, "range": 2, "protocol": "tcp"}
        ],
    }
    inspect = {
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkSettings": {
            "SandboxKey": "/run/netns/netns-1",
            "Networks": {
                "podman": {
                    "IPAddress": "10.88.0.5",
                    "IPPrefixLen": 16,
                    "Gateway": "10.88.0.1",
                    "MacAddress": "06:8d:30:83:6b:d2",
                    "GlobalIPv6Address": "",
                    "Aliases": ["e9e9"],
                }
            },
        },
    }
    c = podman.to_container(ps, inspect, {"podman": ("bridge", "podman0")}, {})
    assert (c.name, c.pid, c.netns_path, c.network_mode) == (
        "pod1",
        14233,
        "/run/netns/netns-1",
        "bridge",
    )
    assert c.networks[0].bridge == "podman0" and c.networks[0].ip == "10.88.0.5"
    assert [(p.host_ip, p.host_port, p.container_port) for p in c.ports] == [
        ("0.0.0.0", 8081, 80),
        ("0.0.0.0", 8082, 81),
    ]
    side = podman.to_container(
        {**ps, "Id": "f" * 64, "Names": ["s"]},
        {"HostConfig": {"NetworkMode": "container:" + "e9" * 32}},
        {},
        {"e9" * 32: "pod1"},
    )
    assert side.network_mode == "container:pod1"


def spec(ann: dict[str, str], netns: str | None, own: bool = True) -> dict[str, Any]:
    namespaces: list[dict[str, str]] = [{"type": "pid"}]
    if own:
        namespaces.append({"type": "network", **({"path": netns} if netns else {})})
    return {"annotations": ann, "linux": {"namespaces": namespaces}}


def test_containerd_cri_sandbox_and_container() -> None:
    base = {
        "io.kubernetes.cri.sandbox-name": "web-1",
        "io.kubernetes.cri.sandbox-namespace": "shop",
    }
    sb = containerd.task_to_container(
        "k8s.io",
        "s" * 64,
        spec({**base, "io.kubernetes.cri.container-type": "sandbox"}, "/run/netns/cni-1"),
        10,
    )
    assert (sb.name, sb.runtime, sb.network_mode, sb.netns_path) == (
        "shop/web-1",
        "kubernetes",
        "cni",
        "/run/netns/cni-1",
    )
    assert sb.labels["io.kubernetes.pod.name"] == "web-1"
    app = containerd.task_to_container(
        "k8s.io",
        "a" * 64,
        spec(
            {
                **base,
                "io.kubernetes.cri.container-type": "container",
                "io.kubernetes.cri.container-name": "nginx",
            },
            "/run/netns/cni-1",
        ),
        11,
    )
    assert app.name == "shop/web-1/nginx" and app.network_mode == "container:shop/web-1"
    hostnet = containerd.task_to_container(
        "k8s.io",
        "h" * 64,
        spec({**base, "io.kubernetes.cri.container-type": "sandbox"}, None, own=False),
        12,
    )
    assert hostnet.network_mode == "host"


def test_containerd_plain_container() -> None:
    c = containerd.task_to_container("default", "myjob", spec({}, None), 5)
    assert (c.runtime, c.name, c.network_mode) == ("containerd", "myjob", "none")
    assert c.labels == {"containerd.namespace": "default"}


def test_containerd_task_dirs(tmp_path: Path) -> None:
    task = tmp_path / "k8s.io" / ("c" * 64)
    task.mkdir(parents=True)
    (task / "config.json").write_text('{"annotations": {}, "linux": {"namespaces": []}}')
    (task / "init.pid").write_text("999999999")
    (tmp_path / "moby" / "x").mkdir(parents=True)  # Docker's: skipped
    src = containerd.ContainerdSource(roots=(str(tmp_path),))
    assert src.available()[0]
    (c,) = src.containers()
    assert c.state == "gone"  # pid 999999999 does not exist


@pytest.mark.parametrize(
    "cgroup,cid",
    [
        ("0::/docker/" + "a" * 64, "a" * 64),
        ("1:name=systemd:/system.slice/docker-" + "b" * 64 + ".scope", "b" * 64),
        ("9:pids:/libpod_parent/libpod-" + "c" * 64 + "\n0::/", "c" * 64),
        (
            "0::/kubepods.slice/kubepods-pod1234_5678.slice/cri-containerd-" + "d" * 64 + ".scope",
            "d" * 64,
        ),
        ("0::/user.slice/session-1.scope", None),
    ],
)
def test_container_id_from_cgroup(cgroup: str, cid: str | None) -> None:
    table = procs.ProcTable()
    table._cgroups[1] = cgroup
    assert table.container_id(1) == cid


def test_docker_http_answers() -> None:
    status, body = docker.parse_response(
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[1]"
    )
    assert (status, body) == (200, b"[1]")
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n"
    )
    assert docker.parse_response(chunked) == (200, b"[1,2]")
    with pytest.raises(docker.DockerError):
        docker.parse_response(b"garbage")


def test_podman_running_ids_from_the_run_root(tmp_path: Path) -> None:
    import os

    for cid, pid in (("a" * 64, os.getpid()), ("b" * 64, 999999999)):
        userdata = tmp_path / "overlay-containers" / cid / "userdata"
        userdata.mkdir(parents=True)
        (userdata / "conmon.pid").write_text(str(pid))
    assert podman.running_ids(procs.ProcTable(), str(tmp_path)) == ["a" * 64]


def test_podman_run_root_from_the_storage_conf_podman_reads(tmp_path: Path) -> None:
    conf = tmp_path / "storage.conf"
    conf.write_text('[storage]\ndriver = "overlay"\nrunroot = "/run/elsewhere"\n')
    assert podman.storage_runroot({"CONTAINERS_STORAGE_CONF": str(conf)}) == "/run/elsewhere"
    conf.write_text('[storage]\ndriver = "overlay"\n')
    assert podman.storage_runroot({"CONTAINERS_STORAGE_CONF": str(conf)}) == podman.RUNROOT
    missing = {"CONTAINERS_STORAGE_CONF": str(tmp_path / "none.conf")}
    assert podman.storage_runroot(missing) == podman.RUNROOT


def test_containerd_flags_and_config() -> None:
    from cntrace.sources.runtimes import containerd_find as cf

    argv = ["containerd", "-c", "/etc/k3s.toml", "--state=/run/k3s/containerd", "-a", "/s.sock"]
    assert cf.parse_args(argv) == {
        "config": "/etc/k3s.toml",
        "state": "/run/k3s/containerd",
        "address": "/s.sock",
    }
    conf = 'version = 2\nstate = "/run/x"\nroot = "/var/x"\n[grpc]\n  address = "/run/x/c.sock"\n'
    assert cf.parse_config(conf) == {
        "state": "/run/x",
        "root": "/var/x",
        "address": "/run/x/c.sock",
    }
    assert cf.parse_config("not = [toml") == {}
    me = os.getpid()  # a process whose root this test may read
    files = {f"/proc/{me}/root/etc/c.toml": conf}
    inst = cf.from_process(me, ["containerd", "--config", "/etc/c.toml"], read=files.get)
    assert (inst.state, inst.address, inst.prefix) == (
        "/run/x",
        "/run/x/c.sock",
        f"/proc/{me}/root",
    )
    assert inst.task_root == f"/proc/{me}/root/run/x/io.containerd.runtime.v2.task"
    # flags win over the config; no config: the default state
    inst = cf.from_process(
        me, ["containerd", "--config", "/etc/c.toml", "--state", "/s"], files.get
    )
    assert inst.state == "/s"
    assert cf.from_process(me, ["containerd"], read=files.get).state == "/run/containerd"


def test_containerd_override(tmp_path: Path) -> None:
    from cntrace.sources.runtimes import containerd_find as cf

    found = cf.instances({cf.ENV_OVERRIDE: f"{tmp_path}:{tmp_path}"})
    assert [(i.state, i.found_by) for i in found][:1] == [(str(tmp_path), "override")]
    assert len([i for i in found if i.found_by == "override"]) == 1
