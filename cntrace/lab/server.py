"""The lab containers' long-lived process: a tiny TCP and UDP server.

It is the process that makes PID-based discovery work and answers probes. TCP: reads one line and
answers with a short HTTP-like reply, or 64 KiB when the line starts with ``big`` (to expose MTU
problems). UDP: echoes each datagram unchanged, so a large datagram tests both directions.
Started by the lab inside the container's namespace; stdlib only, to start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket


def _serve(name: str, bind: str, tcp: int, udp: int) -> None:
    sel = selectors.DefaultSelector()
    if tcp:
        ts = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ts.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ts.bind((bind, tcp))
        ts.listen(64)
        sel.register(ts, selectors.EVENT_READ, "tcp")
    if udp:
        us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        us.bind((bind, udp))
        sel.register(us, selectors.EVENT_READ, "udp")
    body = f"cntrace-lab {name} ok\n".encode()
    reply = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "udp":
                try:
                    data, peer = sock.recvfrom(65535)
                    sock.sendto(data, peer)
                except OSError:
                    pass
                continue
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(2.0)
                    line = conn.recv(1024)
                    conn.sendall(b"x" * 65536 if line.startswith(b"big") else reply)
                except OSError:
                    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--tcp", type=int, default=80)
    ap.add_argument("--udp", type=int, default=9000)
    args = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        _serve(args.name, args.bind, args.tcp, args.udp)


if __name__ == "__main__":
    main()
