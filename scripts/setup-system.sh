#!/usr/bin/env bash
# Installs what cntrace, its tests and its demo use from Debian, idempotently: only missing
# packages are fetched, and one line says what was installed. Everything is named explicitly (no
# reliance on Recommends: apt here runs --no-install-recommends). Also makes kernel headers and
# tracefs available for the eBPF probes.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "setup: must run as root (apt-get, namespaces, eBPF)" >&2
  exit 3
fi

PACKAGES=(
  # kernel state, rules and capture
  iproute2 iptables nftables conntrack ethtool tcpdump
  # eBPF probes: bcc for Python comes from Debian (python3-bpfcc), not from PyPI
  bpfcc-tools python3-bpfcc linux-headers-amd64
  # the runtimes tier: Docker (daemon, containerd, runc) and rootful Podman on both of its network
  # back ends, netavark (+ aardvark-dns) and CNI (containernetworking-plugins); the test image and
  # Podman's --rootfs are built from busybox-static. The k8s-node lab (docs/kubernetes.md) runs
  # the same containerd and runc, the CNI plugins in /usr/lib/cni, and util-linux's unshare
  docker.io containerd runc podman conmon netavark aardvark-dns containernetworking-plugins
  busybox-static
  # the terminal tests and the demo
  tmux
  python3 python3-venv python3-pip make git
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
      >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    echo "setup: apt-get failed installing ${missing[*]}" >&2
    exit 1
  fi
  rm -f "$log"
  echo "setup: installed ${missing[*]}"
else
  echo "setup: all ${#PACKAGES[@]} packages present, nothing installed"
fi

# Kernel headers for bcc. Where the running kernel's own are missing, fall back to the newest
# installed tree: the probes use only stable interfaces (tracepoints, tc), so a slightly older
# tree compiles them correctly. See docs/install.md.
kver=$(uname -r)
moddir=/lib/modules/$kver
if [ ! -e "$moddir/build/include" ]; then
  build=$(ls -d /usr/src/linux-headers-*-amd64 /usr/src/linux-headers-*-arm64 2>/dev/null | sort -V | tail -n1 || true)
  if [ -n "$build" ]; then
    common=${build%-amd64}; common=${common%-arm64}-common
    mkdir -p "$moddir"
    ln -sfn "$build" "$moddir/build"
    [ -d "$common" ] && ln -sfn "$common" "$moddir/source"
    echo "setup: notice: no headers for kernel $kver; using $(basename "$build") for eBPF probes"
  else
    echo "setup: notice: no kernel headers installed; eBPF probes will be unavailable (capture back end still works)"
  fi
fi

# tracefs is where tracepoint formats (and drop reason names) live.
if [ ! -e /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || echo "setup: notice: could not mount tracefs"
fi
exit 0
