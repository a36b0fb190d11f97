"""What the k8s-node lab must answer: one table for the unit tier (recorded fixtures/k8s/) and
the integration tier (the real node, where every row is also proven by a connection).

``src`` is a pod ref or ``UP`` (the upstream namespace, outside the cluster); ``branches`` lists
(endpoint pod, status) per branch of a Service fork, in order; ``conn`` is what a real connection
answers: the pod name the server echoes (``http`` for the upstream's web server), ``refused``,
``timeout``, or ``any:a|b`` when the kernel may pick either.
"""

from __future__ import annotations

from dataclasses import dataclass

UP = "UP"  # the lab's upstream namespace (outside the cluster)


@dataclass(frozen=True)
class K8sCase:
    name: str
    src: str
    dst: str
    status: str
    conn: str
    branches: tuple[tuple[str, str], ...] = ()
    service: str | None = None  # namespace/name:port
    kind: str | None = None  # ClusterIP | NodePort
    finding: str | None = None
    dest_pod: str | None = None  # the pod a non-Service path ends in


CASES = (
    K8sCase("pod-to-pod", "tools/client", "default/web-b:8080", "delivered", "web-b",
            dest_pod="web-b"),
    K8sCase("pod-to-outside", "tools/client", "203.0.113.10:80", "delivered", "http"),
    K8sCase("hostport-from-outside", UP, "192.0.2.10:8088", "delivered", "hp",
            finding="hostport-clash", dest_pod="hp"),
    K8sCase("clusterip-two-endpoints", "tools/client", "10.96.0.20:80", "delivered",
            "any:web-a|web-b",
            branches=(("default/web-a", "delivered"), ("default/web-b", "delivered")),
            service="default/web:http", kind="ClusterIP"),
    K8sCase("clusterip-not-ready", "tools/client", "10.96.0.50:80", "delivered",
            "any:web-a|refused",
            branches=(("default/web-a", "delivered"), ("default/web-c", "refused")),
            service="default/flaky:http", kind="ClusterIP", finding="service-endpoint-not-ready"),
    K8sCase("no-endpoints", "tools/client", "10.96.0.30:80", "refused", "refused",
            finding="service-no-endpoints"),
    K8sCase("nodeport-from-outside", UP, "192.0.2.10:30080", "delivered", "any:web-a|web-b",
            branches=(("default/web-a", "delivered"), ("default/web-b", "delivered")),
            service="default/web:http", kind="NodePort"),
    K8sCase("nodeport-no-endpoints", UP, "192.0.2.10:30030", "refused", "refused",
            finding="service-no-endpoints"),
    K8sCase("nodeport-unserved-address", UP, "192.0.2.11:30080", "refused", "refused",
            finding="nodeport-address"),
    K8sCase("etp-local-no-local-endpoint", UP, "192.0.2.10:30040", "dropped", "timeout",
            finding="service-no-local-endpoint"),
    K8sCase("hairpin", "default/web-a", "10.96.0.20:80", "delivered", "any:web-a|web-b",
            branches=(("default/web-a", "delivered"), ("default/web-b", "delivered")),
            service="default/web:http", kind="ClusterIP", finding="service-hairpin"),
)  # fmt: skip
