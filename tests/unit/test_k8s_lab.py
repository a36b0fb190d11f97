"""The k8s-node lab's pure parts: kube-proxy's chain names and rule shapes, the CNI configs."""

from __future__ import annotations

import pytest

from cntrace.errors import BadInput
from cntrace.lab.k8s import cni, kubeproxy, plan
from cntrace.lab.k8s.node import PodState, proxy_config, service_ports


def _services(variant: str = "bridge") -> list[kubeproxy.ServicePort]:
    p = plan.plan("kt", variant)
    pods = tuple(
        PodState(x.namespace, x.name, x.container, "n", "s", "c", ip=f"10.244.0.{i + 2}")
        for i, x in enumerate(p.pods)
    )
    return service_ports(p, pods)


def _svc(spec: plan.ServiceSpec, *ips: str) -> kubeproxy.ServicePort:
    return kubeproxy.ServicePort(spec, tuple(kubeproxy.Endpoint(ip, 80) for ip in ips))


def test_chain_names_are_kube_proxys() -> None:
    """Names kube-proxy itself gives (seen on every cluster, and in its own tests)."""
    kubernetes = plan.ServiceSpec("default", "kubernetes", "https", "10.96.0.1", 443)
    dns = plan.ServiceSpec("kube-system", "kube-dns", "dns", "10.96.0.10", 53, proto="udp")
    assert kubeproxy.svc_chain(_svc(kubernetes)) == "KUBE-SVC-NPX46M4PTMTKRN6Y"
    assert kubeproxy.svc_chain(_svc(dns)) == "KUBE-SVC-TCOU7JCQXEZGVUNU"
    svc1 = _svc(plan.ServiceSpec("ns1", "svc1", "p80", "172.30.0.41", 80), "10.180.0.1")
    assert kubeproxy.nft_chain("service", "ns1/svc1/tcp/p80") == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert (
        kubeproxy.nft_endpoint_chain(svc1, svc1.endpoints[0])
        == "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    )


def test_statistic_ladder() -> None:
    spec = plan.ServiceSpec("ns", "s", "p", "10.96.0.9", 80)
    text = kubeproxy.iptables_restore(
        proxy_config(), [_svc(spec, "10.0.0.1", "10.0.0.2", "10.0.0.3")]
    )
    ladder = [ln for ln in text.splitlines() if ln.startswith("-A KUBE-SVC-") and "->" in ln]
    assert [("0.3333333333" in ln, "0.5000000000" in ln, "statistic" in ln) for ln in ladder] == [
        (True, False, True),
        (False, True, True),
        (False, False, False),
    ]


def test_iptables_shapes() -> None:
    text = kubeproxy.iptables_restore(proxy_config(), _services())
    assert "-j REJECT" in text and '"default/empty:http has no endpoints"' in text
    assert '"default/local:http has no local endpoints"' in text
    assert "-A KUBE-SERVICES -m comment --comment" in text
    assert text.rstrip().endswith("COMMIT")
    nodeports = [ln for ln in text.splitlines() if "-j KUBE-NODEPORTS" in ln]
    assert nodeports == [
        f'-A KUBE-SERVICES -m comment --comment "{kubeproxy.NODEPORTS_TAIL}" -d 192.0.2.10 '
        "-j KUBE-NODEPORTS"
    ]


def test_nft_shapes() -> None:
    text = kubeproxy.nft_script(proxy_config(), _services())
    assert "numgen random mod 2 vmap" in text
    assert (
        'no-endpoint-services { 10.96.0.30 . tcp . 80 comment "default/empty:http" : goto ' in text
    )
    assert 'no-endpoint-nodeports { tcp . 30040 comment "default/local:http" : drop }' in text
    assert "add element ip kube-proxy nodeport-ips { 192.0.2.10 }" in text
    lines = text.splitlines()
    # every chain is added before a rule or element names it (nft -f fails otherwise)
    added: set[str] = set()
    for ln in lines:
        if ln.startswith("add chain ip kube-proxy "):
            added.add(ln.split()[4])
        for word in ln.replace(",", " ").split():
            if word.startswith(("endpoint-", "service-", "external-")) and "/" in word:
                assert word in added or ln.startswith("add chain"), ln


def test_conflists() -> None:
    bridge = plan.conflist(plan.plan("kt", "bridge"))
    ptp = plan.conflist(plan.plan("kt", "ptp"))
    assert [x["type"] for x in bridge["plugins"]] == ["bridge", "portmap"]
    assert [x["type"] for x in ptp["plugins"]] == ["ptp", "portmap"]
    assert bridge["plugins"][0]["ipam"]["dataDir"] == "/run/cntrace-k8s/kt/ipam"


def test_plugin_config_is_libcnis() -> None:
    conf = plan.conflist(plan.plan("kt"))
    runtime = {"portMappings": [{"hostPort": 8088, "containerPort": 8080, "protocol": "tcp"}]}
    main = cni.plugin_config(conf, conf["plugins"][0], runtime, None)
    assert "runtimeConfig" not in main and "prevResult" not in main
    assert main["name"] == plan.NETWORK_NAME and main["cniVersion"] == "1.0.0"
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.244.0.2/24"}]}
    pm = cni.plugin_config(conf, conf["plugins"][1], runtime, prev)
    assert pm["runtimeConfig"] == runtime and pm["prevResult"] == prev
    assert cni.pod_address(
        {"interfaces": [{"name": "veth1"}, {"name": "eth0", "sandbox": "/x"}], **prev}
    ) == ("10.244.0.2", "veth1")


@pytest.mark.parametrize(
    "args", [("Bad",), ("kt", "flannel"), ("kt", "bridge", "ipvs"), ("a" * 20,)]
)
def test_bad_plans(args: tuple[str, ...]) -> None:
    with pytest.raises(BadInput):
        plan.plan(*args)
