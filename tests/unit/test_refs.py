"""Container refs: name, id prefix, pid:N, netns:NAME; unknown and ambiguous give BadInput."""

from __future__ import annotations

import pytest

from cntrace.errors import BadInput, Exit
from cntrace.model import Container, Netns, Snapshot
from cntrace.topology import resolve_ref


def snap() -> Snapshot:
    return Snapshot(
        netns=(
            Netns(1, is_root=True, pids=(1,)),
            Netns(2, name="web-ns", paths=("/run/netns/web-ns",), pids=(40, 41)),
            Netns(3, name="lonely", pids=(77,)),
        ),
        containers=(
            Container("abc123" + "0" * 58, "web", "docker", pid=40, netns=2),
            Container("abd999" + "0" * 58, "api", "docker", pid=50, netns=2),
            Container("f00" + "0" * 61, "web", "podman", pid=60, netns=2),
            Container("k1" + "0" * 62, "default/webapp-1", "kubernetes", pid=70, netns=2),
            Container("netns:lonely", "lonely", "netns", netns=3),
        ),
    )


def test_unique_name() -> None:
    c = resolve_ref(snap(), "api")
    assert isinstance(c, Container) and c.name == "api"


def test_ambiguous_name_lists_candidates() -> None:
    with pytest.raises(BadInput) as exc:
        resolve_ref(snap(), "web")
    assert exc.value.exit_code == Exit.BAD_INPUT
    assert "ambiguous" in str(exc.value)
    assert "docker abc123" in str(exc.value) and "podman f00" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_id_prefix_unique_and_ambiguous() -> None:
    c = resolve_ref(snap(), "abd")
    assert isinstance(c, Container) and c.name == "api"
    with pytest.raises(BadInput, match="ambiguous"):
        resolve_ref(snap(), "ab")


def test_unknown_lists_close_candidates() -> None:
    with pytest.raises(BadInput) as exc:
        resolve_ref(snap(), "wbe")
    assert "unknown container 'wbe'" in str(exc.value)
    assert "web" in str(exc.value)


def test_pid_ref_prefers_the_runtime_record_then_the_namespace() -> None:
    c = resolve_ref(snap(), "pid:40")
    assert isinstance(c, Container) and c.runtime == "docker" and c.name == "web"
    ns = resolve_ref(snap(), "pid:41")
    assert isinstance(ns, Netns) and ns.inode == 2
    with pytest.raises(BadInput, match="no such process"):
        resolve_ref(snap(), "pid:999")
    with pytest.raises(BadInput, match="needs a number"):
        resolve_ref(snap(), "pid:x")


def test_netns_ref_by_name_inode_and_path() -> None:
    for ref in ("netns:web-ns", "netns:2", "netns:/run/netns/web-ns"):
        ns = resolve_ref(snap(), ref)
        assert isinstance(ns, Netns) and ns.inode == 2
    with pytest.raises(BadInput, match="netns:lonely"):
        resolve_ref(snap(), "netns:lonley")


def test_kubernetes_bare_pod_name() -> None:
    c = resolve_ref(snap(), "webapp-1")
    assert isinstance(c, Container) and c.runtime == "kubernetes"


def test_empty_ref() -> None:
    with pytest.raises(BadInput):
        resolve_ref(snap(), "  ")
