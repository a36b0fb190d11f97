"""Build and load cntrace's eBPF probes (probes/cntrace.bpf.c) for the running kernel.

The bytecode holds no kernel layout: struct offsets (from BTF) and the kfree_skb record layout
(from tracefs) are written into the cnt_offsets map when the probes are loaded. So one build
serves every kernel, and it ships prebuilt in probes/cntrace.bpf.json: a trace needs neither
clang, bcc nor kernel headers, and starts in milliseconds. When the C differs from the prebuilt
file (a developer changed it), bcc compiles it once and the result is cached under
/var/cache/cntrace. ``python -m cntrace.trace.ebpf`` rebuilds the prebuilt file.

Loading is done with plain bpf(2) calls (cntrace/trace/bpfsys.py): the map fds bcc compiled
against are replaced by the new maps' fds in the bytecode.

``CNTRACE_PRINT_BPF=1`` (or the hidden ``--print-bpf`` flag of the commands) prints the final C
and exits, like bcc tools' ``--ebpf``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import platform
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cntrace.trace import bpfsys
from cntrace.trace.btf import NEEDED, BtfError, kernel_offsets
from cntrace.trace.events_c import (
    CNT_PROTO_ICMP,
    CNT_PROTO_TCP,
    CNT_PROTO_UDP,
    CntConfig,
    CntFlow,
    CntMarker,
    CntOffsets,
)
from cntrace.trace.tracefs import TracefsError, TracepointFormat, read_format

SOURCE = "cntrace.bpf.c"
HEADER = "cntrace_event.h"
PROGRAMS: dict[str, int] = {
    "cntrace_tc_in": bpfsys.PROG_SCHED_CLS,
    "cntrace_tc_eg": bpfsys.PROG_SCHED_CLS,
    "cntrace_kfree": bpfsys.PROG_TRACEPOINT,
}
MAPS = (
    "cnt_config",
    "cnt_offsets",
    "cnt_markers",
    "cnt_flows",
    "cnt_ports",
    "cnt_stats",
    "cnt_events",
)
PREBUILT = "cntrace.bpf.json"
CACHE_FORMAT = 2
PRINT_ENV = "CNTRACE_PRINT_BPF"


class ProbeBuildError(Exception):
    """The probes cannot be built or loaded here; the message says which part and why."""


@functools.cache
def probes_dir() -> Path:
    """$CNTRACE_PROBES_DIR, probes/ in a checkout, or cntrace/_probes in an installed wheel."""
    env = os.environ.get("CNTRACE_PROBES_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "probes", here / "_probes"):
        if (candidate / SOURCE).is_file():
            return candidate
    raise ProbeBuildError(f"eBPF sources ({SOURCE}) not found next to the cntrace package")


def cache_dir() -> Path:
    env = os.environ.get("CNTRACE_CACHE_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/cntrace")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cntrace"


def _kernel_id() -> str:
    u = platform.uname()
    return f"{u.release} {u.version} {u.machine}"


# --------------------------------------------------------------------------- kernel facts


@dataclass(frozen=True, slots=True)
class KernelFacts:
    """What the C needs to know about this kernel."""

    offsets: dict[str, int]
    kfree: TracepointFormat

    def layout(self) -> CntOffsets:
        """The value of the cnt_offsets map for this kernel."""
        fields = self.kfree.fields
        for name in ("skbaddr", "location"):
            if name not in fields:
                raise ProbeBuildError(f"skb:kfree_skb has no {name} field on this kernel")
        return CntOffsets(
            **self.offsets,
            tp_skbaddr=fields["skbaddr"][0],
            tp_location=fields["location"][0],
            tp_reason=fields["reason"][0] if "reason" in fields else 0,
        )

    @property
    def reasons(self) -> dict[int, str]:
        """Drop reason value -> name, as this kernel prints them."""
        return self.kfree.symbols.get("reason", {})


def _cached_offsets() -> dict[str, int]:
    """BTF offsets, cached per kernel build: parsing vmlinux BTF costs ~0.6 s."""
    key = hashlib.sha256(f"btf {CACHE_FORMAT} {_kernel_id()}".encode()).hexdigest()[:24]
    path = cache_dir() / f"btf-{key}.json"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and set(data) == {n for n, _s, _m in NEEDED}:
            return {str(k): int(v) for k, v in data.items()}
    offsets = kernel_offsets()
    _write_atomic(path, json.dumps(offsets))
    return offsets


def kernel_facts() -> KernelFacts:
    try:
        offsets = _cached_offsets()
    except BtfError as exc:
        raise ProbeBuildError(f"kernel BTF: {exc}") from exc
    try:
        kfree = read_format("skb", "kfree_skb")
    except TracefsError as exc:
        raise ProbeBuildError(str(exc)) from exc
    return KernelFacts(offsets, kfree)


@functools.cache
def _sources() -> tuple[str, str]:
    base = probes_dir()
    return (base / HEADER).read_text(), (base / SOURCE).read_text()


def render_source() -> str:
    """The final C: the programs with the shared header inlined (no kernel-specific text)."""
    header, source = _sources()
    return source.replace(f'#include "{HEADER}"', header)


def print_source_and_exit(facts: KernelFacts | None = None) -> None:
    """Print the C, and the layout the loader would write into cnt_offsets here."""
    text = render_source()
    if facts is not None:
        lay = facts.layout()
        names = [f[0] for f in CntOffsets._fields_]
        values = ", ".join(f"{n} {getattr(lay, n)}" for n in names)
        text = f"/* cnt_offsets on {_kernel_id()}: {values} */\n{text}"
    sys.stdout.write(text)
    raise SystemExit(0)


# --------------------------------------------------------------------------- build (compile/cache)


@dataclass(frozen=True, slots=True)
class Build:
    """Compiled bytecode with the map fds it was compiled against."""

    key: str
    programs: dict[str, tuple[int, bytes]]  # name -> (prog type, insns)
    maps: dict[str, tuple[bpfsys.MapSpec, int]]  # name -> (spec, fd baked into the insns)
    from_cache: bool = False
    compile_s: float = 0.0


def _write_atomic(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def _load_cached(path: Path, key: str) -> Build | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    try:
        programs = {
            name: (int(p["type"]), base64.b64decode(p["insns"]))
            for name, p in data["programs"].items()
        }
        maps = {
            name: (bpfsys.MapSpec(**m["spec"]), int(m["fd"])) for name, m in data["maps"].items()
        }
    except (KeyError, TypeError, ValueError):
        return None
    if set(programs) != set(PROGRAMS) or set(maps) != set(MAPS):
        return None
    return Build(key, programs, maps, from_cache=True)


def _compile(source: str, key: str) -> Build:
    try:
        from bcc import BPF  # noqa: PLC0415  (only on a cache miss)
    except ImportError as exc:
        raise ProbeBuildError(
            "bcc (python3-bpfcc) is not importable and no compiled probes are cached"
        ) from exc
    build_dir = f"/lib/modules/{platform.release()}/build"
    if not os.path.exists(build_dir):
        raise ProbeBuildError(f"kernel headers missing ({build_dir}); bcc cannot compile")
    t0 = time.monotonic()
    try:
        bpf = BPF(text=source)
    except Exception as exc:  # bcc raises bare Exception on compile errors
        raise ProbeBuildError(f"bcc could not compile the probes: {exc}") from exc
    try:
        programs = {name: (ptype, bytes(bpf.dump_func(name))) for name, ptype in PROGRAMS.items()}
        maps = {}
        for name in MAPS:
            fd = int(bpf.get_table(name).map_fd)
            maps[name] = (bpfsys.map_info(fd), fd)
    finally:
        bpf.cleanup()
    return Build(key, programs, maps, compile_s=time.monotonic() - t0)


def source_key(source: str | None = None) -> str:
    """What a build is valid for: the C text and the cache format (not the kernel)."""
    text = render_source() if source is None else source
    return hashlib.sha256(f"{CACHE_FORMAT}\n{text}".encode()).hexdigest()


def _build_doc(b: Build) -> dict[str, object]:
    return {
        "key": b.key,
        "programs": {
            n: {"type": t, "insns": base64.b64encode(i).decode()}
            for n, (t, i) in b.programs.items()
        },
        "maps": {
            n: {
                "spec": {
                    "name": s.name,
                    "type": s.type,
                    "key_size": s.key_size,
                    "value_size": s.value_size,
                    "max_entries": s.max_entries,
                    "flags": s.flags,
                },
                "fd": fd,
            }
            for n, (s, fd) in b.maps.items()
        },
    }


def _candidates(key: str) -> list[Path]:
    return [probes_dir() / PREBUILT, cache_dir() / f"probes-{key[:24]}.json"]


def is_cached(facts: KernelFacts | None = None) -> bool:
    """Whether bytecode for exactly this source is at hand (prebuilt or cached)."""
    key = source_key()
    return any(_load_cached(p, key) is not None for p in _candidates(key))


def build(facts: KernelFacts | None = None, use_cache: bool = True) -> Build:
    """The probes' bytecode: prebuilt or cached for this exact source, else compiled (and
    cached)."""
    source = render_source()
    key = source_key(source)
    if use_cache:
        for path in _candidates(key):
            cached = _load_cached(path, key)
            if cached is not None:
                return cached
    result = _compile(source, key)
    _write_atomic(cache_dir() / f"probes-{key[:24]}.json", json.dumps(_build_doc(result)))
    return result


def write_prebuilt() -> Path:
    """Compile with bcc and write probes/cntrace.bpf.json (commit it with the C)."""
    source = render_source()
    result = _compile(source, source_key(source))
    path = probes_dir() / PREBUILT
    doc = _build_doc(result)
    doc["_provenance"] = (
        "bytecode of probes/cntrace.bpf.c compiled by bcc; regenerate with "
        "`python -m cntrace.trace.ebpf` after changing the C"
    )
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


# --------------------------------------------------------------------------- loaded probes


@dataclass
class LoadedProbes:
    """Maps and programs loaded in the kernel, owned by this process (closed on close())."""

    map_fds: dict[str, int]
    map_specs: dict[str, bpfsys.MapSpec]
    prog_fds: dict[str, int]
    ring: bpfsys.RingBuffer
    _tp_fd: int | None = None
    _markers: dict[int, int] = field(default_factory=dict)  # nonce -> proto
    _cfg_flags: int = 0
    _cfg_netns: int = 0
    _gen: int = 0

    @classmethod
    def load(cls, b: Build, facts: KernelFacts) -> LoadedProbes:
        map_fds: dict[str, int] = {}
        prog_fds: dict[str, int] = {}
        try:
            remap: dict[int, int] = {}
            for name, (spec, old_fd) in b.maps.items():
                map_fds[name] = bpfsys.map_create(spec)
                remap[old_fd] = map_fds[name]
            layout = bytes(facts.layout())
            bpfsys.map_update(map_fds["cnt_offsets"], struct.pack("<I", 0), layout)
            for name, (ptype, insns) in b.programs.items():
                prog_fds[name] = bpfsys.prog_load(ptype, bpfsys.relocate(insns, remap), name)
            ring_spec = b.maps["cnt_events"][0]
            ring = bpfsys.RingBuffer(map_fds["cnt_events"], ring_spec.max_entries)
        except bpfsys.BpfError as exc:
            for fd in (*map_fds.values(), *prog_fds.values()):
                os.close(fd)
            tail = "\n".join(exc.log.strip().splitlines()[-8:]) if exc.log else ""
            raise ProbeBuildError(f"{exc}" + (f"\nverifier: {tail}" if tail else "")) from exc
        specs = {n: s for n, (s, _fd) in b.maps.items()}
        return cls(map_fds, specs, prog_fds, ring)

    # ------------------------------------------------------------------ configuration

    def _write_config(self) -> None:
        protos = 0
        for proto in self._markers.values():
            protos |= _PROTO_BITS.get(proto, 0)
        cfg = CntConfig(self._cfg_flags, self._cfg_netns, len(self._markers), protos, self._gen)
        bpfsys.map_update(self.map_fds["cnt_config"], struct.pack("<I", 0), bytes(cfg))

    def configure(self, flags: int, netns: int = 0) -> None:
        self._cfg_flags, self._cfg_netns = flags, netns
        self._write_config()

    def arm(self, nonce: int, proto: int) -> None:
        """Start matching a marker in the kernel."""
        marker = CntMarker(nonce, proto)
        bpfsys.map_update(self.map_fds["cnt_markers"], struct.pack("<I", nonce), bytes(marker))
        self._markers[nonce] = proto
        self._gen = self._gen % 0xFFFFFFFF + 1  # earlier cnt_ports entries no longer count
        self._write_config()

    def disarm(self, nonce: int) -> None:
        bpfsys.map_delete(self.map_fds["cnt_markers"], struct.pack("<I", nonce))
        self._markers.pop(nonce, None)
        self._write_config()
        if not self._markers:
            bpfsys.map_clear(self.map_fds["cnt_flows"], _FLOW_SIZE)

    def counters(self) -> tuple[int, int]:
        """(events lost because the ring buffer was full, events sent)."""
        fd, size = self.map_fds["cnt_stats"], self.map_specs["cnt_stats"].value_size
        vals = []
        for idx in (0, 1):
            raw = bpfsys.map_lookup(fd, struct.pack("<I", idx), size)
            vals.append(struct.unpack_from("<Q", raw, 0)[0] if raw else 0)
        return vals[0], vals[1]

    # ------------------------------------------------------------------ tracepoint

    def attach_kfree(self, tp_id: int) -> None:
        if self._tp_fd is None:
            self._tp_fd = bpfsys.attach_tracepoint(tp_id, self.prog_fds["cntrace_kfree"])

    def close(self, wait: bool = False) -> None:
        """Release programs, maps and the tracepoint attachment.

        They belong to this process only (the tc filters, the one shared object, are gone by
        now), and closing a tracepoint's perf event waits for an RCU grace period (~30 ms):
        unless ``wait``, the fds are closed by a background thread (or by the process exit)."""
        fds = [*self.prog_fds.values(), *self.map_fds.values()]
        if self._tp_fd is not None:
            fds.insert(0, self._tp_fd)
            self._tp_fd = None
        self.ring.close()
        self.prog_fds.clear()
        self.map_fds.clear()

        def _close() -> None:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

        if wait:
            _close()
        else:
            threading.Thread(target=_close, name="cntrace-bpf-close", daemon=True).start()


_FLOW_SIZE = len(bytes(CntFlow()))
_PROTO_BITS = {6: CNT_PROTO_TCP, 17: CNT_PROTO_UDP, 1: CNT_PROTO_ICMP, 58: CNT_PROTO_ICMP}


if __name__ == "__main__":
    sys.stdout.write(f"wrote {write_prebuilt()}\n")
