"""A Kubernetes node built from its real parts: containerd, the reference CNI plugins, and the
rules kube-proxy would write (docs/kubernetes.md).

``plan`` (pure: pods, Services, CNI network configs), ``kubeproxy`` (pure: kube-proxy's iptables
and nftables rules for those Services), ``cni`` (runs the CNI plugins as a CRI runtime does),
``containerd`` (a private containerd and its ``ctr`` client), ``node`` (up and down).
"""
