"""Benchmark: `cntrace ls --json` on a host with 1,000 containers.

Targets (issue 3): <= 1.0 s wall and <= 200 MB peak RSS for the whole command, Python start-up
and imports included. Printed side by side in the same run:

- cntrace:  `cntrace ls --json`, a fresh process each time (median of 5; peak RSS by wait4).
- floor:    a bare netlink dump (links + addresses, no decoding) of the same namespaces from one
            Python process: what any in-process reader must at least pay.
- shell:    the per-container shell approach: the runtime's inspect (here the lab's state file,
            read by a process as `docker inspect` would be), `nsenter ip -j addr` and
            `nsenter ip -j link` in the container, `ip -j link` in the host namespace to find the
            veth with the peer ifindex, and its bridge from /sys. Timed on a sample of
            containers and extrapolated (said so in the output).

The 1,000 containers come from the built-in lab (`cntrace lab up --containers 1000`) under the
name cntrace-dc-bench, removed at the end unless --keep. Run as root: `make bench` or
`.venv/bin/python bench/bench_discovery.py [--containers N] [--sample N] [--keep]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
LAB = "cntrace-dc-bench"
TARGET_S = 1.0
TARGET_MB = 200.0

FLOOR = r"""
import ctypes, os, socket, struct, sys, time
libc = ctypes.CDLL("libc.so.6", use_errno=True)
paths = sys.argv[1:]
t0 = time.perf_counter()
home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
socks = []
for p in paths:
    fd = os.open(p, os.O_RDONLY)
    libc.setns(fd, 0x40000000)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    socks.append(s)
    os.close(fd)
libc.setns(home, 0x40000000)
link = struct.pack("=IHHII", 32, 18, 0x301, 1, 0) + bytes(16)
addr = struct.pack("=IHHII", 24, 22, 0x301, 2, 0) + bytes(8)
total = 0
for req in (link, addr):
    for s in socks:
        s.send(req)
    for s in socks:
        last = 0
        while last not in (2, 3):  # NLMSG_ERROR, NLMSG_DONE end a dump
            data = s.recv(65536)
            total += len(data)
            off = 0
            while off + 16 <= len(data):
                mlen, last = struct.unpack_from("=IH", data, off)
                off += (mlen + 3) & ~3
print(time.perf_counter() - t0, total)
"""


def run_measured(
    argv: list[str], env: dict[str, str] | None = None
) -> tuple[float, float, str, float]:
    """(wall seconds, peak RSS in MB, stdout, CPU seconds) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with {proc.returncode}")
    return wall, usage.ru_maxrss / 1024.0, out.decode(), usage.ru_utime + usage.ru_stime


def lab_up(n: int) -> None:
    state = Path(f"/run/cntrace/labs/{LAB}.json")
    if state.exists():
        doc = json.loads(state.read_text())
        if doc.get("status") == "up" and len(doc.get("containers", [])) >= n:
            return
        subprocess.run([PY, "-m", "cntrace", "lab", "down", "--name", LAB], check=False)
    print(f"setting up: cntrace lab up --containers {n} --name {LAB} ...", flush=True)
    t0 = time.perf_counter()
    subprocess.run(
        [PY, "-m", "cntrace", "lab", "up", "--containers", str(n), "--name", LAB],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"  lab up in {time.perf_counter() - t0:.1f} s", flush=True)


def lab_containers() -> tuple[str, list[dict[str, str]]]:
    doc = json.loads(Path(f"/run/cntrace/labs/{LAB}.json").read_text())
    return doc["host_netns"], doc["containers"]


def shell_one(host_ns: str, c: dict[str, str]) -> tuple[str, str | None, list[str]]:
    """What an engineer's script does per container, one process per look-up."""
    state = subprocess.run(
        ["cat", f"/run/cntrace/labs/{LAB}.json"], capture_output=True, text=True, check=True
    ).stdout  # stands in for `docker inspect <id>`
    json.loads(state)
    ns = f"/run/netns/{c['netns']}"
    addrs = json.loads(
        subprocess.run(
            ["nsenter", f"--net={ns}", "ip", "-j", "addr"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    ips = [a["local"] for lk in addrs for a in lk["addr_info"] if a.get("scope") == "global"]
    links = json.loads(
        subprocess.run(
            ["nsenter", f"--net={ns}", "ip", "-j", "link", "show", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    peer = links[0].get("link_index")
    host_links = json.loads(
        subprocess.run(
            ["ip", "-n", host_ns, "-j", "link"], capture_output=True, text=True, check=True
        ).stdout
    )
    veth = next((lk["ifname"] for lk in host_links if lk["ifindex"] == peer), None)
    bridge = subprocess.run(  # /sys is per mount: read it from a process in the host netns
        [
            "ip",
            "netns",
            "exec",
            host_ns,
            "sh",
            "-c",
            f"basename $(readlink /sys/class/net/{veth}/master)",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return veth or "?", bridge or None, ips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--containers", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=50, help="containers timed for the shell way")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_discovery needs root (namespaces)")

    lab_up(args.containers)
    try:
        host_ns, containers = lab_containers()
        # As installed: bytecode cached (this machine sets PYTHONDONTWRITEBYTECODE, which would
        # make every run compile cntrace's modules; measured separately below).
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DOCKER_HOST", "PYTHONDONTWRITEBYTECODE")
        }
        # Warm-up: bytecode, the page cache and the kernel's dentries, as on a host in use.
        run_measured([PY, "-m", "cntrace", "ls", "--json"], env)
        walls, rss, cpus = [], [], []
        doc: dict[str, object] = {}
        for _ in range(args.runs):
            wall, mb, out, cpu = run_measured([PY, "-m", "cntrace", "ls", "--json"], env)
            walls.append(wall)
            rss.append(mb)
            cpus.append(cpu)
            doc = json.loads(out)
        rows = doc["containers"]
        assert isinstance(rows, list)
        listed = len(rows)
        lab_rows = [r for r in rows if r["runtime"] == "lab" and r["id"].startswith(LAB)]
        namespaces = len(os.listdir("/run/netns"))

        with tempfile.TemporaryDirectory() as empty:
            cold_env = {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": empty}
            cold = statistics.median(
                run_measured([PY, "-m", "cntrace", "ls", "--json"], cold_env)[0] for _ in range(3)
            )

        paths = sorted({f"/run/netns/{n}" for n in os.listdir("/run/netns")})
        floor_walls, floor_dump = [], []
        for _ in range(args.runs):
            wall, _mb, out, _cpu = run_measured([PY, "-c", FLOOR, *paths])
            floor_walls.append(wall)
            floor_dump.append(float(out.split()[0]))

        sample = containers[: args.sample]
        t0 = time.perf_counter()
        shell_rows = [shell_one(host_ns, c) for c in sample]
        per = (time.perf_counter() - t0) / len(sample)
        shell_total = per * len(containers)

        # The shell way and cntrace must agree on what they found.
        by_id = {r["id"]: r for r in lab_rows}
        for c, (veth, bridge, _ips) in zip(sample, shell_rows, strict=True):
            row = by_id[f"{LAB}.{c['name']}"]
            assert [v["name"] for v in row["host_veths"]] == [veth], (row, veth)
            assert row["bridges"] == [bridge], (row, bridge)

        ls_s = statistics.median(walls)
        ls_mb = max(rss)
        floor_s = statistics.median(floor_walls)
        print()
        print(
            f"cntrace ls --json on {len(lab_rows)} lab containers ({listed} listed, "
            f"{namespaces} named namespaces on the host), median of {args.runs} runs"
        )
        print(f"{'approach':<46} {'wall':>9} {'peak RSS':>10} {'vs cntrace':>11}")
        print(
            f"{'cntrace ls --json (whole process)':<46} {ls_s:>8.3f}s {ls_mb:>8.1f}MB {'1.0x':>11}"
        )
        print(f"{'  same, no bytecode cache (compiles cntrace)':<46} {cold:>8.3f}s")
        print(
            f"{'floor: bare netlink dump, one process':<46} {floor_s:>8.3f}s {'':>10} "
            f"{floor_s / ls_s:>10.2f}x"
        )
        print(f"{'  of which the dump itself':<46} {statistics.median(floor_dump):>8.3f}s")
        print(
            f"{'shell: inspect+nsenter ip+/sys per container':<46} {shell_total:>8.1f}s "
            f"{'':>10} {shell_total / ls_s:>10.1f}x"
        )
        print(
            f"  (shell: {len(sample)} containers timed, {per * 1000:.0f} ms each, "
            f"extrapolated to {len(containers)})"
        )
        ok_s, ok_mb = ls_s <= TARGET_S, ls_mb <= TARGET_MB
        print(
            f"target wall <= {TARGET_S:.1f}s: {'PASS' if ok_s else 'FAIL'}; "
            f"target RSS <= {TARGET_MB:.0f}MB: {'PASS' if ok_mb else 'FAIL'}"
        )
        print(
            f"all runs (s): {', '.join(f'{w:.3f}' for w in walls)}; CPU (user+sys) median "
            f"{statistics.median(cpus):.3f}s; load average {os.getloadavg()[0]:.2f}"
        )
    finally:
        if not args.keep:
            subprocess.run(
                [PY, "-m", "cntrace", "lab", "down", "--name", LAB],
                check=False,
                stdout=subprocess.DEVNULL,
            )


if __name__ == "__main__":
    main()
