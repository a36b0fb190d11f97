"""The bpf(2) and perf_event_open(2) calls cntrace needs, through ctypes.

bcc is used only to compile C into bytecode. Loading that bytecode, creating maps, attaching the
tracepoint and reading the ring buffer are done here with plain syscalls, so a cached build
(cntrace/trace/ebpf.py) loads in milliseconds without clang, and the loaded objects are ordinary
file descriptors this process owns: they vanish with it, except what tc filters still hold.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import platform
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cntrace.sources.nsenter import load_libc

# (bpf, perf_event_open) syscall numbers per architecture.
_SYSCALLS = {
    "x86_64": (321, 298),
    "aarch64": (280, 241),
    "arm64": (280, 241),
    "riscv64": (280, 241),
    "ppc64le": (361, 319),
    "s390x": (351, 331),
}

BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15

MAP_ARRAY = 2
MAP_RINGBUF = 27

PROG_SCHED_CLS = 3
PROG_TRACEPOINT = 5

BPF_ANY = 0
BPF_PSEUDO_MAP_FD = 1
_LD_IMM64 = 0x18

_PERF_TYPE_TRACEPOINT = 2
_PERF_FLAG_FD_CLOEXEC = 8
_PERF_EVENT_IOC_ENABLE = 0x2400
_PERF_EVENT_IOC_SET_BPF = 0x40042408

_RINGBUF_BUSY = 1 << 31
_RINGBUF_DISCARD = 1 << 30

_libc = load_libc()  # by soname: find_library would run `ldconfig -p`
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """A bpf(2) call failed; ``log`` holds the verifier's output for a refused program."""

    def __init__(self, err: int, what: str, log: str = "") -> None:
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.log = log


def _numbers() -> tuple[int, int]:
    machine = platform.machine()
    if machine not in _SYSCALLS:
        raise BpfError(errno.ENOSYS, f"bpf syscall number unknown on {machine}")
    return _SYSCALLS[machine]


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    nr = _numbers()[0]
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if ret < 0:
        raise BpfError(ctypes.get_errno(), what)
    return int(ret)


def _attr(size: int = 128) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(size)


def _addr(buf: ctypes.Array[ctypes.c_char] | ctypes.c_char_p) -> int:
    return ctypes.cast(buf, ctypes.c_void_p).value or 0


# --------------------------------------------------------------------------- maps


@dataclass(frozen=True, slots=True)
class MapSpec:
    """What it takes to create a map again: the kernel's own description of it."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0


def map_create(spec: MapSpec) -> int:
    attr = _attr()
    struct.pack_into(
        "<IIIII", attr, 0, spec.type, spec.key_size, spec.value_size, spec.max_entries, spec.flags
    )
    struct.pack_into("16s", attr, 28, spec.name.encode()[:15])
    try:
        return _bpf(BPF_MAP_CREATE, attr, f"create map {spec.name}")
    except BpfError as exc:
        if exc.errno != errno.EINVAL:
            raise
    struct.pack_into("16s", attr, 28, b"")  # kernels before 4.15 reject names
    return _bpf(BPF_MAP_CREATE, attr, f"create map {spec.name}")


def map_info(fd: int) -> MapSpec:
    info = ctypes.create_string_buffer(88)
    attr = _attr()
    struct.pack_into("<IIQ", attr, 0, fd, len(info), _addr(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "map info")
    type_, _id, key, value, entries, flags = struct.unpack_from("<IIIIII", info, 0)
    name = info.raw[24:40].split(b"\0", 1)[0].decode()
    return MapSpec(name, type_, key, value, entries, flags)


def _map_elem(
    cmd: int, fd: int, key: bytes, value: ctypes.Array[ctypes.c_char] | None, what: str, flags: int
) -> bool:
    """One command on one element of a map; False where the key is not in it."""
    k = ctypes.create_string_buffer(key, len(key))
    attr = _attr()
    v = _addr(value) if value is not None else 0
    struct.pack_into("<IIQQQ", attr, 0, fd, 0, _addr(k), v, flags)
    try:
        _bpf(cmd, attr, what)
    except BpfError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def map_update(fd: int, key: bytes, value: bytes) -> None:
    v = ctypes.create_string_buffer(value, len(value))
    if not _map_elem(BPF_MAP_UPDATE_ELEM, fd, key, v, "map update", BPF_ANY):
        raise BpfError(errno.ENOENT, "map update")


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    v = ctypes.create_string_buffer(value_size)
    return v.raw if _map_elem(BPF_MAP_LOOKUP_ELEM, fd, key, v, "map lookup", 0) else None


def map_delete(fd: int, key: bytes) -> bool:
    return _map_elem(BPF_MAP_DELETE_ELEM, fd, key, None, "map delete", 0)


def map_keys(fd: int, key_size: int) -> list[bytes]:
    keys: list[bytes] = []
    nxt = ctypes.create_string_buffer(key_size)
    prev: ctypes.Array[ctypes.c_char] | None = None
    while True:
        attr = _attr()
        struct.pack_into("<IIQQ", attr, 0, fd, 0, _addr(prev) if prev else 0, _addr(nxt))
        try:
            _bpf(BPF_MAP_GET_NEXT_KEY, attr, "map next key")
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return keys
            raise
        keys.append(nxt.raw)
        prev = ctypes.create_string_buffer(nxt.raw, key_size)


def map_clear(fd: int, key_size: int) -> None:
    for key in map_keys(fd, key_size):
        map_delete(fd, key)


# --------------------------------------------------------------------------- programs


def relocate(insns: bytes, fds: dict[int, int]) -> bytes:
    """Replace the map fds baked into ld_imm64 instructions (old fd -> new fd)."""
    out = bytearray(insns)
    for pos in range(0, len(out) - 8, 8):
        code, regs = out[pos], out[pos + 1]
        if code == _LD_IMM64 and (regs >> 4) == BPF_PSEUDO_MAP_FD:
            (old,) = struct.unpack_from("<i", out, pos + 4)
            if old not in fds:
                raise BpfError(errno.EINVAL, f"bytecode refers to unknown map fd {old}")
            struct.pack_into("<i", out, pos + 4, fds[old])
    return bytes(out)


def map_fds_in(insns: bytes) -> set[int]:
    """The map fds an (unrelocated) program refers to."""
    found = set()
    for pos in range(0, len(insns) - 8, 8):
        if insns[pos] == _LD_IMM64 and (insns[pos + 1] >> 4) == BPF_PSEUDO_MAP_FD:
            found.add(struct.unpack_from("<i", insns, pos + 4)[0])
    return found


def prog_load(prog_type: int, insns: bytes, name: str, license: str = "GPL") -> int:
    """Load a program; a refusal raises BpfError carrying the verifier log."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())

    def attempt(log_level: int, log: ctypes.Array[ctypes.c_char] | None) -> int:
        attr = _attr()
        struct.pack_into(
            "<IIQQII",
            attr,
            0,
            prog_type,
            len(insns) // 8,
            _addr(code),
            _addr(lic),
            log_level,
            len(log) if log is not None else 0,
        )
        struct.pack_into("<Q", attr, 32, _addr(log) if log is not None else 0)
        struct.pack_into("16s", attr, 48, name.encode()[:15])
        return _bpf(BPF_PROG_LOAD, attr, f"load program {name}")

    try:
        return attempt(0, None)
    except BpfError as exc:
        if exc.errno in (errno.EPERM, errno.ENOSYS):
            raise
        log = ctypes.create_string_buffer(1 << 20)
        try:
            return attempt(1, log)
        except BpfError as exc2:
            text = log.value.decode(errors="replace")
            raise BpfError(exc2.errno or errno.EINVAL, f"load program {name}", text) from exc


@dataclass(frozen=True, slots=True)
class ProgInfo:
    id: int
    type: int
    name: str


def prog_info(fd: int) -> ProgInfo:
    info = ctypes.create_string_buffer(232)
    attr = _attr()
    struct.pack_into("<IIQ", attr, 0, fd, len(info), _addr(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "program info")
    type_, id_ = struct.unpack_from("<II", info, 0)
    name = info.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
    return ProgInfo(id_, type_, name)


BPF_ENABLE_STATS = 32


def enable_run_time_stats() -> int:
    """Make the kernel account every BPF program's run time while the returned fd is open
    (for benchmarks; it costs every program on the host a little, and ends with the fd)."""
    attr = _attr()
    struct.pack_into("<I", attr, 0, 0)  # BPF_STATS_RUN_TIME
    return _bpf(BPF_ENABLE_STATS, attr, "enable run-time stats")


def prog_run_stats(fd: int) -> tuple[int, int]:
    """(total run time in ns, run count) of a program, counted while stats are enabled."""
    info = ctypes.create_string_buffer(232)
    attr = _attr()
    struct.pack_into("<IIQ", attr, 0, fd, len(info), _addr(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "program info")
    run_ns, run_cnt = struct.unpack_from("<QQ", info, 192)
    return int(run_ns), int(run_cnt)


def loaded_programs() -> Iterator[ProgInfo]:
    """Every BPF program loaded in the kernel (what `bpftool prog` lists)."""
    start = 0
    while True:
        attr = _attr()
        struct.pack_into("<I", attr, 0, start)
        try:
            _bpf(BPF_PROG_GET_NEXT_ID, attr, "next program id")
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return
            raise
        (start,) = struct.unpack_from("<I", attr, 4)
        attr = _attr()
        struct.pack_into("<I", attr, 0, start)
        try:
            fd = _bpf(BPF_PROG_GET_FD_BY_ID, attr, "program fd")
        except BpfError:
            continue  # unloaded meanwhile
        try:
            yield prog_info(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- tracepoints


def attach_tracepoint(tp_id: int, prog_fd: int) -> int:
    """Attach a tracepoint program; the returned perf event fd holds the attachment."""
    nr = _numbers()[1]
    attr = ctypes.create_string_buffer(112)
    struct.pack_into("<IIQQ", attr, 0, _PERF_TYPE_TRACEPOINT, 112, tp_id, 1)
    struct.pack_into("<I", attr, 48, 1)  # wakeup_events
    fd = _libc.syscall(
        ctypes.c_long(nr),
        attr,
        ctypes.c_int(-1),
        ctypes.c_int(0),
        ctypes.c_int(-1),
        ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC),
    )
    if fd < 0:
        raise BpfError(ctypes.get_errno(), f"perf_event_open(tracepoint {tp_id})")
    try:
        fcntl.ioctl(fd, _PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(fd, _PERF_EVENT_IOC_ENABLE, 0)
    except OSError as exc:
        os.close(fd)
        raise BpfError(exc.errno or errno.EINVAL, "attach program to tracepoint") from exc
    return int(fd)


# --------------------------------------------------------------------------- ring buffer


class RingBuffer:
    """A consumer of a BPF_MAP_TYPE_RINGBUF map, read through mmap like libbpf does."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._page = mmap.PAGESIZE
        self._cons = mmap.mmap(fd, self._page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._prod = mmap.mmap(
            fd, self._page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=self._page
        )

    def records(self) -> Iterator[bytes]:
        """Every complete record available now, consuming them."""
        mask = self.size - 1
        (cons,) = struct.unpack_from("<Q", self._cons, 0)
        while True:
            (prod,) = struct.unpack_from("<Q", self._prod, 0)
            if cons >= prod:
                return
            off = self._page + (cons & mask)
            (hdr,) = struct.unpack_from("<I", self._prod, off)
            if hdr & _RINGBUF_BUSY:
                return
            length = hdr & ~(_RINGBUF_BUSY | _RINGBUF_DISCARD)
            if not hdr & _RINGBUF_DISCARD:
                yield bytes(self._prod[off + 8 : off + 8 + length])
            cons += (length + 8 + 7) & ~7
            struct.pack_into("<Q", self._cons, 0, cons)

    def close(self) -> None:
        self._cons.close()
        self._prod.close()
