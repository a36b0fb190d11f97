#!/usr/bin/env bash
# Removes the state cntrace's own test engines left (tests/engines.py), so the next run starts as on
# a machine that never ran cntrace: the test dockerd and its data root (with the test image), the
# test Podman stores of both network back ends, the busybox rootfs, the cntrace-engine namespaces.
# Only those paths: never /var/lib/docker, /var/lib/containers or any engine the user runs.
# It reshapes kernel state: on a shared machine run it under the kernel lock.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "reset-test-engines: must run as root" >&2
  exit 3
fi

# The test dockerd, by its own pidfile, and only if it really is the test engine.
pidfile=/run/cntrace-engine.pid
if [ -f $pidfile ]; then
  pid=$(cat $pidfile)
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--data-root /var/lib/cntrace-engine "; then
    kill "$pid"
    for _ in $(seq 150); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
    [ -d "/proc/$pid" ] && kill -9 "$pid"
  fi
fi

# The test Podman containers, through each back end's own configuration (their conmon monitors
# and the container namespaces podman created go with them).
for conf in /var/lib/cntrace-engine-podman-*/containers.conf; do
  [ -f "$conf" ] || continue
  dir=$(dirname "$conf")
  net=()
  [ -e /run/netns/cntrace-engine ] && net=(nsenter --net=/run/netns/cntrace-engine)
  CONTAINERS_CONF=$conf CONTAINERS_STORAGE_CONF=$dir/storage.conf \
    "${net[@]}" podman rm --all --force --time 0 >/dev/null 2>&1 || true
done

for ns in cntrace-engine-up cntrace-engine; do
  [ -e "/run/netns/$ns" ] && ip netns del "$ns"
done

# Labs and namespace worlds a killed test or bench run left (tests/labkit.py names labs
# cntrace-<tag><pid>, tests/hostkit.py worlds cntrace-ah<pid><tag>-<role>, bench/ its labs
# cntrace-*-bench and cntrace-bpath), as `cntrace lab down` removes them: the processes in their
# namespaces, the namespaces, the lab's state. Never the demo's lab (cntrace-lab) or a user's.
leftover=$(ip netns list | awk '{print $1}' |
  grep -E '^cntrace-([a-z]+[0-9]+|[a-z-]+-bench|bpath)\.|^cntrace-ah[0-9]+[a-z]*-' || true)
for ns in $leftover; do
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
done
for f in /run/cntrace/labs/cntrace-*; do
  [ -e "$f" ] || continue
  base=$(basename "$f"); name=${base%.*}
  if [[ $name =~ ^cntrace-([a-z]+[0-9]+|[a-z-]+-bench|bpath)$ ]]; then rm -rf "$f"; fi
done
[ -z "$leftover" ] || echo "reset-test-engines: removed $(echo "$leftover" | wc -l) leftover test namespaces"

# Anything still mounted under the test roots (overlay layers, shm) goes before the files do.
roots=(/var/lib/cntrace-engine /var/lib/cntrace-engine-* /run/cntrace-engine /run/cntrace-engine-*
       /run/cntrace-engine.*)
for root in "${roots[@]}"; do
  [ -e "$root" ] || continue
  awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do umount -l "$m"; done
done
removed=()
for root in "${roots[@]}"; do
  [ -e "$root" ] || continue
  rm -rf "$root"
  removed+=("$root")
done
echo "reset-test-engines: removed ${removed[*]:-nothing (no test engine state)}"
