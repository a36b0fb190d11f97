"""The capture back end: AF_PACKET sockets, one per watched interface, when eBPF cannot run.

Each socket is created inside the interface's namespace (nsenter.socket_in), bound to that
interface, and carries a classic BPF filter on the marker, so the kernel hands over only the
probe, its replies and (for UDP) packets to the probe's source port. User space then applies the
same match as the eBPF programs (cntrace/trace/packet.py). It needs only CAP_NET_RAW: no bcc, no
headers, no BPF privilege. It cannot see drops, so there are no drop reasons.

Sockets are SOCK_DGRAM: the kernel strips the link-layer header, so the filter and the parser
start at the IP header on every kind of device.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
import threading
import time
from dataclasses import dataclass

from cntrace.sources import nsenter
from cntrace.trace.collector import Seen, Trace
from cntrace.trace.events import Direction, Sighting, TraceTarget, Unwatched
from cntrace.trace.events_c import CNT_MAGIC
from cntrace.trace.packet import Matcher, Parsed, parse_ip, tcp_flag_text

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = 35
SNAPLEN = 256

# classic BPF opcodes
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_LD_W_IND, _LD_H_IND, _LD_B_IND = 0x40, 0x48, 0x50
_LDX_B_MSH = 0xB1
_ALU_AND_K = 0x54
_JEQ_K, _JSET_K = 0x15, 0x45
_RET_K = 0x06


def filtered_socket(
    target: TraceTarget, kind: int, code: bytes
) -> tuple[socket.socket, ctypes.Array[ctypes.c_char]]:
    """A non-blocking packet socket on one interface of a namespace, with a classic BPF filter
    and kernel timestamps. The filter's buffer is returned too: it must outlive the socket."""
    sock = nsenter.socket_in(target.netns_path, socket.AF_PACKET, kind | socket.SOCK_NONBLOCK)
    try:
        prog = ctypes.create_string_buffer(code, len(code))
        fprog = struct.pack("HxxxxxxQ", len(code) // 8, ctypes.addressof(prog))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((target.ifname, ETH_P_ALL))
    except OSError:
        sock.close()
        raise
    return sock, prog


class _Asm:
    """A tiny classic-BPF assembler with forward labels."""

    def __init__(self) -> None:
        self.code: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int = 0) -> None:
        self.code.append((code, 0, 0, k & 0xFFFFFFFF))

    def jump(self, code: int, k: int, jt: str | int, jf: str | int) -> None:
        self.code.append((code, jt, jf, k & 0xFFFFFFFF))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        out = b""
        for i, (code, jt, jf, k) in enumerate(self.code):

            def rel(target: str | int, i: int = i) -> int:
                if isinstance(target, int):
                    return target
                off = self.labels[target] - i - 1
                if not 0 <= off <= 255:
                    raise ValueError(f"jump to {target} out of range")
                return off

            out += struct.pack("<HBBI", code, rel(jt), rel(jf), k)
        return out


def marker_filter(nonce: int, reply_port: int | None) -> bytes:
    """A socket filter accepting IP packets that may carry the marker (the user-space match
    decides): TCP seq/ack, payload magic + nonce, ICMP errors quoting either, UDP to
    ``reply_port``. Offsets are from the IP header (SOCK_DGRAM)."""
    a = _Asm()
    a.op(_LD_B_ABS, 0)
    a.op(_ALU_AND_K, 0xF0)
    a.jump(_JEQ_K, 0x40, "v4", 0)
    a.jump(_JEQ_K, 0x60, "v6", "reject")

    # IPv4: X = header length, L4 loads relative to it
    a.label("v4")
    a.op(_LD_H_ABS, 6)
    a.jump(_JSET_K, 0x1FFF, "reject", 0)
    a.op(_LDX_B_MSH, 0)
    a.op(_LD_B_ABS, 9)
    _l4_tests(a, "4", (6, 17, 1), _LD_W_IND, _LD_H_IND, 0, 20, nonce, reply_port)
    # IPv6 (no extension headers): L4 at 40
    a.label("v6")
    a.op(_LD_B_ABS, 6)
    _l4_tests(a, "6", (6, 17, 58), _LD_W_ABS, _LD_H_ABS, 40, 40, nonce, reply_port)

    a.label("accept")
    a.op(_RET_K, SNAPLEN)
    a.label("reject")
    a.op(_RET_K, 0)
    return a.assemble()


def _l4_tests(
    a: _Asm,
    v: str,
    protos: tuple[int, int, int],
    ld_w: int,
    ld_h: int,
    l4: int,
    ip_len: int,
    nonce: int,
    reply_port: int | None,
) -> None:
    """The marker tests of one IP version, with the protocol number loaded: ``ld_w``/``ld_h``
    load from L4 offset ``l4`` + k; ``ip_len`` is the quoted IP header's size in ICMP errors."""
    tcp, udp, icmp = protos
    a.jump(_JEQ_K, tcp, f"tcp{v}", 0)
    a.jump(_JEQ_K, udp, f"udp{v}", 0)
    a.jump(_JEQ_K, icmp, f"icmp{v}", "reject")
    a.label(f"tcp{v}")
    a.op(ld_w, l4 + 4)
    a.jump(_JEQ_K, nonce, "accept", 0)
    a.op(ld_w, l4 + 8)
    a.jump(_JEQ_K, (nonce + 1) & 0xFFFFFFFF, "accept", "reject")
    a.label(f"udp{v}")
    a.op(ld_w, l4 + 8)
    a.jump(_JEQ_K, CNT_MAGIC, f"nonce{v}", 0)
    a.op(ld_h, l4 + 2)
    a.jump(_JEQ_K, reply_port or 0, "accept" if reply_port else "reject", "reject")
    a.label(f"nonce{v}")
    a.op(ld_w, l4 + 12)
    a.jump(_JEQ_K, nonce, "accept", "reject")
    a.label(f"icmp{v}")
    a.op(ld_w, l4 + 8)
    a.jump(_JEQ_K, CNT_MAGIC, f"inonce{v}", 0)
    quoted = l4 + 8 + ip_len  # the quoted L4 header
    a.op(ld_w, quoted + 4)  # its TCP seq
    a.jump(_JEQ_K, nonce, "accept", 0)
    a.op(ld_w, quoted + 8)  # its UDP/ICMP payload
    a.jump(_JEQ_K, CNT_MAGIC, 0, "reject")
    a.op(ld_w, quoted + 12)
    a.jump(_JEQ_K, nonce, "accept", "reject")
    a.label(f"inonce{v}")
    a.op(ld_w, l4 + 12)
    a.jump(_JEQ_K, nonce, "accept", "reject")


def can_run() -> tuple[bool, str]:
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    except PermissionError:
        return False, "AF_PACKET sockets need CAP_NET_RAW (run as root)"
    except OSError as exc:
        return False, f"no AF_PACKET sockets: {exc.strerror}"
    s.close()
    return True, "AF_PACKET sockets with a classic BPF filter on the marker"


@dataclass
class _Tap:
    target: TraceTarget
    sock: socket.socket
    prog: ctypes.Array[ctypes.c_char]  # kept alive while attached


class CaptureTracer:
    """One AF_PACKET socket per target, for one trace."""

    def __init__(self) -> None:
        self._taps: list[_Tap] = []
        self.unwatched: list[Unwatched] = []
        self.lost = 0
        # CLOCK_REALTIME (socket timestamps) -> CLOCK_MONOTONIC (everything else)
        self._rt_to_mono = time.monotonic_ns() - time.time_ns()

    def open(self, targets: tuple[TraceTarget, ...], code: bytes) -> None:
        """One socket per interface carrying the classic BPF program ``code``."""
        seen: set[tuple[int, int]] = set()
        for target in targets:
            if (target.netns_inode, target.ifindex) in seen:
                continue  # one socket per interface, or every packet would be seen twice
            seen.add((target.netns_inode, target.ifindex))
            try:
                sock, prog = filtered_socket(target, socket.SOCK_DGRAM, code)
            except OSError as exc:
                why = f"cannot open a packet socket there: {exc.strerror}"
                self.unwatched.append(Unwatched(f"capture {target.name}", why, target))
                continue
            self._taps.append(_Tap(target, sock, prog))

    def sockets(self) -> list[socket.socket]:
        return [t.sock for t in self._taps]

    def drain(self, matcher: Matcher, t0_ns: int) -> list[Sighting]:
        """Read every waiting packet, keep the probe's; returns the new sightings.

        Packets of all sockets are matched in timestamp order, so a request's flow is learnt
        before the reply that is matched by it."""
        new: list[Sighting] = []
        for t_ns, target, direction, data, p in self.receive():
            m = matcher.match(p)
            if m is None:
                continue
            how, _nonce, is_reply = m
            new.append(
                Sighting(
                    target=target,
                    direction=direction,
                    t_ns=t_ns - t0_ns,
                    packet=p.to_packet(),
                    is_reply=is_reply,
                    tcp_flags=tcp_flag_text(p.tcp_flags) if p.proto == 6 else None,
                    ip_id=p.ip_id,
                    length=p.length,
                    match=how,
                    icmp_code=p.icmp_code if p.inner is not None else None,
                    l3_offset=0,
                    frame_hex=data[:128].hex(),
                )
            )
        return new

    def receive(self) -> list[tuple[int, TraceTarget, Direction, bytes, Parsed]]:
        """Every waiting packet of every socket, parsed, in timestamp order (CLOCK_MONOTONIC):
        (time, target, direction, bytes from the IP header on, parsed headers)."""
        got: list[tuple[int, _Tap, bytes, int]] = []
        for tap in self._taps:
            while True:
                try:
                    data, anc, _flags, addr = tap.sock.recvmsg(SNAPLEN, 64)
                except (BlockingIOError, InterruptedError):
                    break
                t_ns = time.monotonic_ns()
                for level, kind, payload in anc:
                    if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", payload[:16])
                        t_ns = sec * 1_000_000_000 + nsec + self._rt_to_mono
                got.append((t_ns, tap, data, addr[2]))
        out: list[tuple[int, TraceTarget, Direction, bytes, Parsed]] = []
        for t_ns, tap, data, pkttype in sorted(got, key=lambda g: g[0]):
            p = parse_ip(data)
            if p is None:
                continue
            direction: Direction = "egress" if pkttype == PACKET_OUTGOING else "ingress"
            out.append((t_ns, tap.target, direction, data, p))
        return out

    def stop(self) -> None:
        """Count the kernel's drops on each socket, then close them: closing a packet socket
        waits for an RCU grace period, so that is done by a background thread."""
        socks = []
        for tap in self._taps:
            with contextlib.suppress(OSError):
                stats = tap.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                self.lost += struct.unpack("II", stats)[1]
            socks.append(tap.sock)
        self._taps.clear()

        def _close() -> None:
            for s in socks:
                s.close()

        threading.Thread(target=_close, name="cntrace-capture-close", daemon=True).start()


class CaptureCollector:
    """The capture back end as a collector: sockets per trace, sightings only."""

    name = "capture"

    def __init__(self) -> None:
        self._tracer: CaptureTracer | None = None

    def can_run(self) -> tuple[bool, str]:
        return can_run()

    def attach(self, trace: Trace) -> list[Unwatched]:
        self._tracer = tracer = CaptureTracer()
        probe = trace.probe
        reply_port = probe.sport if probe.proto == "udp" else None
        tracer.open(trace.plan.targets, marker_filter(trace.nonce, reply_port))
        return [*tracer.unwatched, Unwatched("drops", "the capture back end cannot see drops")]

    def start(self, trace: Trace) -> list[int]:
        return [s.fileno() for s in self._tracer.sockets()] if self._tracer else []

    def drain(self, trace: Trace) -> Seen:
        if self._tracer is None:
            return Seen()
        return Seen(sightings=tuple(self._tracer.drain(trace.matcher, trace.t0_ns)))

    def stop(self, trace: Trace | None = None) -> int:
        tracer, self._tracer = self._tracer, None
        if tracer is None:
            return 0
        tracer.stop()
        return tracer.lost

    def close(self) -> None:
        self.stop()
