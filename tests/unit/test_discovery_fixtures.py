"""Discovery on recorded Snapshots (fixtures/discovery, provenance in its README): Docker with
iptables, Docker 29's nftables-only layout, and a Kubernetes node with kube-proxy rules. No root."""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path

import pytest
from clirun import run
from discovery_schema import validate
from harness import FIXTURES

from cntrace.errors import BadInput
from cntrace.model import Container, Snapshot
from cntrace.render.discovery_json import ls_doc, show_doc
from cntrace.render.topo_json import topo_doc
from cntrace.sources import recorded
from cntrace.topology import Topology, netfilter_for, resolve_ref

DIR = FIXTURES / "discovery"
FILES = ("docker-iptables", "docker-nftables", "k8s-node")


@cache
def load(name: str) -> Snapshot:
    return recorded.load(str(DIR / f"{name}.json"))


def by_name(snap: Snapshot, name: str) -> Container:
    c = resolve_ref(snap, name)
    assert isinstance(c, Container)
    return c


@pytest.mark.parametrize("name", FILES)
def test_every_document_validates_against_the_schema(name: str) -> None:
    snap = load(name)
    validate(ls_doc(snap))
    validate(topo_doc(snap))
    for c in snap.containers:
        validate(show_doc(snap, c))


@pytest.mark.parametrize("name", FILES)
def test_provenance_is_documented(name: str) -> None:
    readme = (DIR / "README.md").read_text()
    assert f"`{name}.json`" in readme


# --------------------------------------------------------------------------- docker (iptables)


def test_docker_modes_and_host_sides() -> None:
    snap = load("docker-iptables")
    topo = Topology(snap)
    web, side = by_name(snap, "web"), by_name(snap, "sidecar")
    assert side.network_mode == "container:web" and side.netns == web.netns
    (att,) = topo.attachments(web)
    assert att.bridge is not None and att.bridge.link.name == "docker0"
    assert att.peer is not None and att.peer.netns.is_root
    multi = by_name(snap, "multi")
    assert len({a.bridge.link.name for a in topo.attachments(multi) if a.bridge}) == 2
    assert {n.bridge for n in multi.networks} == {
        a.bridge.link.name for a in topo.attachments(multi) if a.bridge
    }
    assert by_name(snap, "hostnet").netns == snap.root.inode if snap.root else False
    assert topo.attachments(by_name(snap, "nonet")) == []


def test_docker_ls_document() -> None:
    doc = ls_doc(load("docker-iptables"), runtime="docker")
    rows = {r["name"]: r for r in doc["containers"]}
    assert rows["web"]["host_veths"] == rows["sidecar"]["host_veths"]
    assert rows["web"]["bridges"] == ["docker0"]
    assert {(p["host_ip"], p["host_port"]) for p in rows["web"]["ports"]} == {
        ("0.0.0.0", 8080),
        ("::", 8080),
    }
    assert rows["hostnet"]["host_veths"] == []
    assert ls_doc(load("docker-iptables"), name="mul")["containers"][0]["name"] == "multi"


def test_docker_iptables_attribution() -> None:
    snap = load("docker-iptables")
    web = by_name(snap, "web")
    nat = netfilter_for(snap, web)
    assert nat.status == "ok", nat.reason
    assert [r.chain for r in nat.dnat] == ["DOCKER"]
    assert "--to-destination 172.17.0.2:80" in nat.dnat[0].text
    assert any("MASQUERADE" in r.text and "172.17.0.0/16" in r.text for r in nat.egress)
    user = by_name(snap, "user")
    unat = netfilter_for(snap, user)
    assert unat.dnat == ()  # no published port, no DNAT
    assert all("172.17." not in r.text for r in unat.egress)  # not docker0's rules


def test_topo_document_of_docker_host() -> None:
    doc = topo_doc(load("docker-iptables"))
    (host,) = doc["hosts"]
    assert host["is_root"] and host["netns"]["label"] == "host"
    bridges = {b["name"]: b for b in host["bridges"]}
    web_port = [p for p in bridges["docker0"]["ports"] if "web" in p["containers"]]
    assert web_port and "0.0.0.0:8080->80/tcp" in web_port[0]["ports"]
    assert [u["name"] for u in host["uplinks"]] == ["ceng-up"]
    assert host["host_mode_containers"] == ["hostnet"]


# --------------------------------------------------------------------------- docker (nftables)


def test_docker_nftables_only_attribution() -> None:
    snap = load("docker-nftables")
    assert snap.root is not None
    rs = snap.root.ruleset
    assert rs.nft_json and not rs.iptables_nft and not rs.iptables_legacy
    c1 = by_name(snap, "c1")
    nat = netfilter_for(snap, c1)
    assert nat.status == "ok", nat.reason
    assert any("192.0.2.2" in r.text and "8080" in r.text for r in nat.dnat), nat.dnat
    assert all(r.backend == "nftables" for r in nat.dnat + nat.egress)
    assert any("masquerade" in r.text and "192.0.2.0/24" in r.text for r in nat.egress)
    c2 = netfilter_for(snap, by_name(snap, "c2"))
    assert c2.dnat == () and any("172.17.0.0/16" in r.text for r in c2.egress)


def test_docker_nftables_host_side() -> None:
    snap = load("docker-nftables")
    (att,) = Topology(snap).attachments(by_name(snap, "c1"))
    assert att.bridge is not None and att.bridge.link.name == "bridge1"
    assert att.peer is not None and att.peer.link.name == "veth1c2a3b4"


# --------------------------------------------------------------------------- kubernetes


def test_k8s_pods_and_containers_share_the_pod_namespace() -> None:
    snap = load("k8s-node")
    pods = [c for c in snap.containers if c.runtime == "kubernetes" and c.network_mode == "cni"]
    assert {p.name for p in pods} == {
        "default/webapp-6d4cf56db6-x7k2p",
        "default/client-5c7b9d8f4-q9wzt",
    }
    web = by_name(snap, "webapp-6d4cf56db6-x7k2p")  # the bare pod name resolves
    app = by_name(snap, "default/webapp-6d4cf56db6-x7k2p/web")
    assert app.netns == web.netns and app.network_mode == f"container:{web.name}"
    assert web.labels["io.kubernetes.pod.namespace"] == "default"
    assert web.labels["io.kubernetes.cri.container-type"] == "sandbox"
    (att,) = Topology(snap).attachments(web)
    assert att.bridge is not None and att.bridge.link.name == "cni0"
    assert att.peer is not None and att.peer.link.name == "veth3a1f0c2e"


def test_k8s_kube_proxy_dnat_is_attributed_to_the_endpoint_pod() -> None:
    snap = load("k8s-node")
    nat = netfilter_for(snap, by_name(snap, "webapp-6d4cf56db6-x7k2p"))
    assert nat.status == "ok", nat.reason
    dnat = [r.text for r in nat.dnat]
    assert any("--to-destination 10.244.1.7:8080" in t for t in dnat), dnat
    other = netfilter_for(snap, by_name(snap, "client-5c7b9d8f4-q9wzt"))
    assert other.dnat == ()


def test_k8s_ls_document() -> None:
    doc = ls_doc(load("k8s-node"), runtime="kubernetes")
    rows = {r["name"]: r for r in doc["containers"]}
    assert rows["default/webapp-6d4cf56db6-x7k2p"]["ips"] == ["10.244.1.7/24"]
    assert rows["default/webapp-6d4cf56db6-x7k2p/web"]["bridges"] == ["cni0"]


# --------------------------------------------------------------------------- the CLI on a file


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run(*args, timeout=60)


def test_cli_with_snapshot_file_json_and_text() -> None:
    path = str(DIR / "docker-iptables.json")
    res = cli("ls", "--json", "--snapshot", path)
    assert res.returncode == 0, res.stderr
    validate(json.loads(res.stdout))
    res = cli("show", "web", "--snapshot", path)
    assert res.returncode == 0, res.stderr
    assert "docker0" in res.stdout and "vethe76c898" in res.stdout
    assert "--to-destination 172.17.0.2:80" in res.stdout
    res = cli("topo", "--snapshot", path)
    assert res.returncode == 0 and "docker0" in res.stdout


def test_cli_unknown_ref_is_one_line_exit_2() -> None:
    res = cli("show", "nope", "--snapshot", str(DIR / "docker-iptables.json"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown container 'nope'" in lines[0]
    assert "candidates: nonet" in lines[0]  # the close match
    res = cli("show", "web", "--snapshot", str(DIR / "missing.json"))
    assert res.returncode == 2 and "no such file" in res.stderr


def test_cli_snapshot_resave(tmp_path: Path) -> None:
    out = tmp_path / "again.json"
    res = cli("snapshot", "--snapshot", str(DIR / "k8s-node.json"), "--save", str(out))
    assert res.returncode == 0, res.stderr
    assert recorded.load(str(out)) == load("k8s-node")


def test_ref_errors_are_bad_input() -> None:
    with pytest.raises(BadInput):
        resolve_ref(load("k8s-node"), "webap")


def test_ls_text_is_aligned_and_marks_gone() -> None:
    from dataclasses import replace

    from cntrace.render.discovery_text import ls_lines

    snap = load("docker-iptables")
    gone = replace(snap.containers[0], state="gone")
    doc = ls_doc(replace(snap, containers=(gone, *snap.containers[1:])))
    lines = ls_lines(doc)
    assert lines[0].split() == [
        "NAME",
        "RUNTIME",
        "PID",
        "IPS",
        "HOST",
        "VETH",
        "BRIDGE",
        "PORTS",
        "MODE",
    ]
    col = lines[0].index("RUNTIME")
    for ln in lines[1:]:
        assert ln[col - 2 : col] == "  " and ln[col] != " " and ln[col:].startswith("docker")
    assert any("(gone)" in ln for ln in lines[1:])
    web = next(ln for ln in lines if ln.startswith("web "))
    assert "vethe76c898" in web and "docker0" in web and "0.0.0.0:8080->80/tcp" in web
