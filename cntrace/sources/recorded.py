"""Snapshots on disk: ``cntrace snapshot --save FILE`` writes one, ``--snapshot FILE`` reads it.

``--snapshot`` also reads a ``cntrace.report/v1`` bug report (its embedded snapshot).

A recorded Snapshot is the whole Snapshot as JSON (cntrace.codec), so a bug report carries exactly
what the host looked like. It is also a file from a stranger, opened as root: it is read with a
size limit (only regular files, FIFOs and stdin; a FIFO or pipe with an idle timeout), parsed with
the JSON parser's depth and number limits turned into one line, its schema string checked first,
then every value checked against what a kernel could have said (cntrace.sources.untrusted), so
nothing downstream meets a value it cannot handle. Writing never replaces what is not a regular
file: a device or FIFO is written through, a symlink's target is replaced.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import select
import stat
import sys

from cntrace import codec
from cntrace.errors import BadInput
from cntrace.model import REPORT_SCHEMA, SNAPSHOT_SCHEMA, Snapshot
from cntrace.sources import untrusted

SCHEMA_FAMILY = SNAPSHOT_SCHEMA.rsplit("/", 1)[0]  # cntrace.snapshot
MiB = 1 << 20
DEFAULT_LIMIT_MB = 64  # a 1,000-container host's full snapshot is ~10 MB (docs/performance.md)
IDLE_TIMEOUT = 10.0  # seconds a FIFO or pipe may stay silent
MAX_OBJECTS = 2_000_000  # JSON objects per file (~100 per container): bounds memory, not size


def limit_bytes() -> int:
    """The input size limit: CNTRACE_MAX_INPUT_MB, else 64 MiB."""
    raw = os.environ.get("CNTRACE_MAX_INPUT_MB", "")
    try:
        mb = int(raw) if raw and len(raw) < 8 else DEFAULT_LIMIT_MB
    except ValueError:
        mb = DEFAULT_LIMIT_MB
    return max(1, mb) * MiB


# --------------------------------------------------------------------------- reading


def idle_timeout() -> float:
    """How long a FIFO or pipe may stay silent: CNTRACE_INPUT_TIMEOUT seconds, else 10."""
    try:
        value = float(os.environ.get("CNTRACE_INPUT_TIMEOUT", "")[:16])
    except ValueError:
        return IDLE_TIMEOUT
    return value if 0 < value <= 3600 else IDLE_TIMEOUT


def read_bytes(path: str, *, what: str = "file", timeout: float | None = None) -> bytes:
    """The content of ``path`` (``-``: stdin), bounded by :func:`limit_bytes`.

    Refuses directories and devices (``/dev/zero`` never ends); a FIFO with no writer, or a pipe
    that stays silent for ``timeout`` seconds, is an error rather than a hang.
    """
    if not path:
        raise BadInput(f"empty {what} name")
    limit = limit_bytes()
    timeout = idle_timeout() if timeout is None else timeout
    if path == "-":
        return _read_stream(0, "stdin", limit, timeout, tty_ok=False)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise BadInput(f"{path}: is a directory, not a {what}")
        if stat.S_ISREG(st.st_mode):
            if st.st_size > limit:
                raise BadInput(_too_big(path, st.st_size, limit))
            return _read_regular(fd, path, limit)
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            return _read_stream(fd, path, limit, timeout, tty_ok=False)
        kind = "a character device" if stat.S_ISCHR(st.st_mode) else "a block device"
        raise BadInput(f"{path}: is {kind}, not a {what}")
    finally:
        os.close(fd)


def _too_big(path: str, size: int, limit: int) -> str:
    return (
        f"{path}: larger than the {limit // MiB} MiB input limit"
        + (f" ({size / MiB:.0f} MiB)" if size else "")
        + " (raise it with CNTRACE_MAX_INPUT_MB)"
    )


def _read_regular(fd: int, path: str, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    try:
        while chunk := os.read(fd, 4 * MiB):
            total += len(chunk)
            if total > limit:  # it grew while being read
                raise BadInput(_too_big(path, 0, limit))
            chunks.append(chunk)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    return b"".join(chunks)


def _read_stream(fd: int, path: str, limit: int, timeout: float, *, tty_ok: bool) -> bytes:
    if os.isatty(fd) and not tty_ok:
        raise BadInput(f"{path} is a terminal: pipe a snapshot in, or give a file")
    chunks: list[bytes] = []
    total = 0
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise BadInput(
                f"{path}: nothing arrived for {timeout:g} s (a FIFO or pipe with no writer?)"
            )
        try:
            chunk = os.read(fd, MiB)
        except BlockingIOError:
            continue
        except OSError as exc:
            raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise BadInput(_too_big(path, 0, limit))
        chunks.append(chunk)


def read_text(path: str, *, what: str = "file", timeout: float | None = None) -> str:
    """:func:`read_bytes`, decoded as UTF-8 (a binary file is one line, not a traceback)."""
    data = read_bytes(path, what=what, timeout=timeout)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        name = "stdin" if path == "-" else path
        raise BadInput(f"{name}: not UTF-8 text (byte {exc.start}): not a {what}") from None


def parse_json(text: str, origin: str, what: str) -> object:
    """``json.loads`` with its failures as one line: syntax, nesting past the recursion limit,
    integers past Python's 4,300 digits, and more objects than :data:`MAX_OBJECTS`."""
    if text.count("{") > MAX_OBJECTS:
        raise BadInput(f"{origin}: more than {MAX_OBJECTS:,} JSON objects: not a {what}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{origin}: not a {what} (invalid JSON: {exc.msg} at line {exc.lineno})"
        ) from None
    except RecursionError:
        raise BadInput(f"{origin}: not a {what} (JSON nested too deeply)") from None
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion"
        reason = "a number too long" if "digits" in str(exc) else str(exc)[:80]
        raise BadInput(f"{origin}: not a {what} ({reason})") from None


def loads(text: str, origin: str = "snapshot") -> Snapshot:
    # A large snapshot is ~100k small objects: the cyclic GC would run dozens of full passes
    # over them while they are built (it halves load time to hold it off; none are cycles).
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return _loads(text, origin)
    finally:
        if gc_was_on:
            gc.enable()


def _schema_of(data: object) -> str | None:
    if not isinstance(data, dict) or "schema" not in data:
        return None
    schema = data["schema"]
    return schema if isinstance(schema, str) else untrusted_repr(schema)


def untrusted_repr(value: object) -> str:
    """A short, printable rendering of a value from a file (for messages)."""
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _loads(text: str, origin: str) -> Snapshot:
    data = parse_json(text, origin, "cntrace snapshot")
    schema = _schema_of(data)
    if schema is None:
        raise BadInput(f"{origin}: not a cntrace snapshot (no schema field)")
    if schema == REPORT_SCHEMA:
        # A bug report (`e` in `cntrace tui`) embeds its snapshot, so it replays directly.
        assert isinstance(data, dict)
        data = data.get("snapshot")
        schema = _schema_of(data)
        if schema is None:
            raise BadInput(f"{origin}: a cntrace report without a snapshot")
    if schema != SNAPSHOT_SCHEMA:
        if schema.startswith(SCHEMA_FAMILY + "/"):
            raise BadInput(
                f"{origin}: snapshot schema {untrusted_repr(schema)} is not supported by this "
                f"cntrace (it reads {SNAPSHOT_SCHEMA})"
            )
        raise BadInput(f"{origin}: not a cntrace snapshot (schema {untrusted_repr(schema)})")
    try:
        snap = codec.from_plain(Snapshot, data)
    except RecursionError:
        raise BadInput(f"{origin}: damaged snapshot: nested too deeply") from None
    except (codec.CodecError, TypeError, ValueError) as exc:
        raise BadInput(f"{origin}: damaged snapshot: {str(exc)[:300]}") from None
    try:
        untrusted.check(
            snap, text_limit=len(text), surrogates=untrusted.might_hold_surrogates(text)
        )
    except BadInput as exc:
        raise BadInput(f"{origin}: damaged snapshot: {exc}") from None
    return snap


def load(path: str) -> Snapshot:
    """Read a saved Snapshot (``-`` is stdin)."""
    return loads(read_text(path, what="cntrace snapshot"), "stdin" if path == "-" else path)


# --------------------------------------------------------------------------- writing


def save(snapshot: Snapshot, path: str) -> None:
    """Write ``snapshot`` to ``path`` (``-`` is stdout) with :func:`write_text`."""
    text = codec.dumps(snapshot, indent=None, compact=True) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    write_text(path, text)


def check_target(path: str, *, follow_symlinks: bool = True) -> os.stat_result | None:
    """Refuse, before any work, a target ``write_bytes`` would refuse (BadInput, exit 2): an
    empty name, a directory, a missing directory, a symlink when not following them. The
    target's stat, or None for a new file."""
    if not path:
        raise BadInput("empty file name to write")
    try:
        if not follow_symlinks and stat.S_ISLNK(os.lstat(path).st_mode):
            raise BadInput(f"cannot write {path}: is a symbolic link; refusing to follow it")
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise BadInput(f"cannot write {path}: is a directory (name a file in it)")
    directory = os.path.dirname(os.path.realpath(path)) if st is None else ""
    if directory and not os.path.isdir(directory):
        raise BadInput(f"cannot write {path}: no such directory {directory}")
    return st


def write_text(path: str, text: str, *, follow_symlinks: bool = True) -> None:
    """:func:`write_bytes` of ``text`` in UTF-8."""
    write_bytes(path, text.encode("utf-8"), follow_symlinks=follow_symlinks)


def write_bytes(path: str, data: bytes, *, follow_symlinks: bool = True) -> None:
    """Write a file the way a careful user would, as root too.

    A regular file (or a new one) is replaced atomically: a killed save never leaves half a file.
    A symlink is followed (its target is replaced, the link stays), or with
    ``follow_symlinks=False`` refused: a file root writes into a shared directory (a trace's pcap,
    a ready file in /tmp) must not be redirected by someone else's link. A character device or
    FIFO is written through, never replaced (``--save /dev/null`` must leave /dev/null a device);
    a block device, socket or directory is refused.
    """
    st = check_target(path, follow_symlinks=follow_symlinks)
    if st is not None and not stat.S_ISREG(st.st_mode):
        _write_through(path, st, data)
        return
    real = os.path.realpath(path)  # a symlink's target (a dangling one is created)
    directory = os.path.dirname(real)
    try:
        import tempfile  # noqa: PLC0415  (only when saving: its imports cost every command)

        fd, tmp = tempfile.mkstemp(prefix=".cntrace-", dir=directory)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if st is not None:
            mode = stat.S_IMODE(st.st_mode)  # keep an existing file's permissions
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # like open(): mkstemp's 0600 would surprise
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except OSError as exc:
        os.unlink(tmp)
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        os.unlink(tmp)
        raise


def _write_through(path: str, st: os.stat_result, data: bytes) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(f"cannot write {path}: is a directory (name a file in it)")
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        kind = "a block device" if stat.S_ISBLK(st.st_mode) else "a socket or special file"
        raise BadInput(f"cannot write {path}: is {kind}; refusing to write over it")
    try:
        # O_NONBLOCK: a FIFO with no reader fails at once (ENXIO) instead of hanging.
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise BadInput(f"cannot write {path}: a FIFO with no reader") from None
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
