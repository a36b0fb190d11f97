"""Write a trace's sightings as pcapng, for Wireshark and tcpdump.

One interface block per watched interface (hop), named after it and described with its
namespace and container; every packet carries a comment (hop, direction, namespace, container,
request or reply) and the inbound/outbound flag. The probe's drops, when the eBPF back end saw
them, go on an extra interface "kernel drops", each commented with the reason and location.
Timestamps are wall-clock, in nanoseconds.
"""

from __future__ import annotations

import struct
from pathlib import Path

from cntrace.trace.events import Drop, Sighting, TraceResult, TraceTarget

LINKTYPE_ETHERNET = 1
SNAPLEN = 262144

_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_OPT_END, _OPT_COMMENT = 0, 1
_IF_NAME, _IF_DESCRIPTION, _IF_TSRESOL = 2, 3, 9
_SHB_USERAPPL = 4
_EPB_FLAGS = 2
_INBOUND, _OUTBOUND = 1, 2


def _pad(b: bytes) -> bytes:
    return b + b"\0" * ((4 - len(b) % 4) % 4)


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _block(btype: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", btype, length) + body + struct.pack("<I", length)


def section_header(app: str = "cntrace") -> bytes:
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    body += _opt(_SHB_USERAPPL, app.encode()) + _opt(_OPT_END, b"")
    return _block(_SHB, body)


def interface_block(linktype: int, name: str, description: str) -> bytes:
    body = struct.pack("<HHI", linktype, 0, SNAPLEN)
    body += _opt(_IF_NAME, name.encode())
    body += _opt(_IF_DESCRIPTION, description.encode())
    body += _opt(_IF_TSRESOL, bytes([9]))  # nanoseconds
    body += _opt(_OPT_END, b"")
    return _block(_IDB, body)


def packet_block(
    iface: int, t_ns: int, data: bytes, orig_len: int, comment: str, flags: int = 0
) -> bytes:
    body = struct.pack("<IIIII", iface, t_ns >> 32, t_ns & 0xFFFFFFFF, len(data), orig_len)
    body += _pad(data)
    body += _opt(_OPT_COMMENT, comment.encode())
    if flags:
        body += _opt(_EPB_FLAGS, struct.pack("<I", flags))
    body += _opt(_OPT_END, b"")
    return _block(_EPB, body)


def _describe(t: TraceTarget) -> str:
    parts = [f"netns {t.netns_inode} ({t.netns_path})"]
    if t.container:
        parts.append(f"container {t.container}")
    if t.hop is not None:
        parts.append(f"hop {t.hop}")
    return ", ".join(parts)


def _comment(s: Sighting) -> str:
    t = s.target
    hop = f"hop {t.hop}" if t.hop is not None else "hop ?"
    who = f"container {t.container}" if t.container else "no container"
    kind = "reply" if s.is_reply else "probe"
    return (
        f"{hop} {t.name} {s.direction}; netns {t.netns_inode} ({t.netns_path}); {who}; "
        f"{kind} ({s.match}) {s.packet}"
    )


def _drop_comment(d: Drop) -> str:
    where = d.target.name if d.target else f"netns {d.netns_inode} ifindex {d.ifindex}"
    kind = "reply" if d.is_reply else "probe"
    return f"drop of the {kind}: {d.reason} at {d.location or '?'} ({where})"


def _ethernet(l3: bytes) -> bytes:
    """A stand-in Ethernet header (zero addresses) for packets seen without one, so every
    interface of the file has one link type: tcpdump refuses files that mix them."""
    ethertype = 0x86DD if l3[:1] and l3[0] >> 4 == 6 else 0x0800
    return b"\0" * 12 + struct.pack("!H", ethertype) + l3


def render(result: TraceResult, t0_realtime_ns: int) -> bytes:
    """The pcapng bytes; ``t0_realtime_ns`` is the wall-clock time of the injection."""
    out = [section_header()]
    ifaces: dict[TraceTarget, int] = {}
    for s in result.sightings:
        if s.target not in ifaces:
            ifaces[s.target] = len(ifaces)
            out.append(interface_block(LINKTYPE_ETHERNET, s.target.name, _describe(s.target)))
    for s in result.sightings:
        data = bytes.fromhex(s.frame_hex)
        comment = _comment(s)
        if s.l3_offset == 0:
            data = _ethernet(data)
            comment += " (link-layer header not captured: zeroed)"
        elif s.l3_offset != 14:
            data = _ethernet(data[s.l3_offset :])
            comment += " (link-layer header replaced)"
        orig = max(len(data), s.length + (14 if s.l3_offset == 0 else 0))
        flags = _INBOUND if s.direction == "ingress" else _OUTBOUND
        out.append(
            packet_block(ifaces[s.target], t0_realtime_ns + s.t_ns, data, orig, comment, flags)
        )
    drops = [d for d in result.drops if d.frame_hex]
    if drops:
        idx = len(ifaces)
        out.append(interface_block(LINKTYPE_ETHERNET, "kernel drops", "skb:kfree_skb"))
        for d in drops:
            data = _ethernet(bytes.fromhex(d.frame_hex))
            out.append(
                packet_block(idx, t0_realtime_ns + d.t_ns, data, len(data), _drop_comment(d))
            )
    return b"".join(out)


def write(path: str | Path, result: TraceResult) -> int:
    """Write the file; returns how many packets it holds."""
    from cntrace.sources.recorded import write_bytes  # noqa: PLC0415

    data = render(result, result.t0_realtime_ns)
    # whole or not at all, never through a symlink: root writes it, often into a shared /tmp
    write_bytes(str(path), data, follow_symlinks=False)
    return len(result.sightings) + sum(1 for d in result.drops if d.frame_hex)
