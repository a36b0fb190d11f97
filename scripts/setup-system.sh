#!/usr/bin/env bash
# Installs what cntrace needs from Debian, idempotently: only missing packages are fetched.
# Also makes kernel headers and tracefs available for the eBPF probes.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "setup: must run as root (apt-get, namespaces, eBPF)" >&2
  exit 3
fi

PACKAGES=(
  iproute2 iptables nftables conntrack ethtool tcpdump
  bpfcc-tools python3-bpfcc linux-headers-amd64
  busybox-static docker.io podman tmux
  python3 python3-venv python3-pip make git
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
