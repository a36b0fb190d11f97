"""libnftables (the library behind ``nft``) through ctypes, for every nft command cntrace runs.

A command run in-process from a thread that has entered the namespace costs ~1 ms, where starting
``nft`` costs ~12 ms: discovery lists rulesets and a trace adds, lists and deletes a table in
every namespace on the path. Debian's python3-nftables binding does the same over ctypes but is
not installed with libnftables1; these few calls need no second package. The library keeps no
namespace of its own: a command acts in the namespace of the thread that runs it. It is not meant
for concurrent use: one caller at a time per context (each ``run`` makes its own).
"""

from __future__ import annotations

import ctypes
import threading

OUTPUT_HANDLE = 1 << 3  # NFT_CTX_OUTPUT_HANDLE: `nft -a`
OUTPUT_JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON: `nft -j`


class Libnftables:
    """The loaded library; ``library()`` gives the process's one instance."""

    def __init__(self) -> None:
        try:  # by soname first: find_library runs `ldconfig -p`, a process
            lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
        except OSError:
            from ctypes.util import find_library  # noqa: PLC0415

            lib = ctypes.CDLL(find_library("nftables") or "libnftables.so.1", use_errno=True)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = (ctypes.c_uint32,)
        lib.nft_ctx_free.argtypes = (ctypes.c_void_p,)
        lib.nft_ctx_output_set_flags.argtypes = (ctypes.c_void_p, ctypes.c_uint)
        lib.nft_ctx_buffer_output.argtypes = (ctypes.c_void_p,)
        lib.nft_ctx_buffer_error.argtypes = (ctypes.c_void_p,)
        lib.nft_run_cmd_from_buffer.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_get_output_buffer.argtypes = (ctypes.c_void_p,)
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = (ctypes.c_void_p,)
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        self.lib = lib

    def run(self, *commands: str, flags: int = 0) -> list[tuple[int, str, str]]:
        """(status, output, error text) of each command, run in one context in the calling
        thread's namespace; stops after the first that fails."""
        lib = self.lib
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            return [(1, "", "libnftables: cannot create a context")]
        out: list[tuple[int, str, str]] = []
        try:
            lib.nft_ctx_output_set_flags(ctx, flags)
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            for cmd in commands:
                rc = int(lib.nft_run_cmd_from_buffer(ctx, cmd.encode()))
                # each read of a buffer rewinds it: the next command's text starts afresh
                text = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
                err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
                out.append((rc, text, err))
                if rc != 0:
                    break
        finally:
            lib.nft_ctx_free(ctx)
        return out

    def json(self, *commands: str) -> list[str]:
        """The `nft -j` output of each command; OSError with nft's last error line on failure."""
        texts = []
        for rc, text, err in self.run(*commands, flags=OUTPUT_JSON):
            if rc != 0:
                lines = err.strip().splitlines()
                raise OSError(lines[-1] if lines else "nft failed")
            texts.append(text)
        return texts


_loaded: Libnftables | None = None
_tried = False
_lock = threading.Lock()


def library() -> Libnftables | None:
    """The library, loaded on first use; None when this host has no libnftables."""
    global _loaded, _tried
    with _lock:
        if not _tried:
            _tried = True
            try:
                _loaded = Libnftables()
            except (OSError, AttributeError):
                _loaded = None
        return _loaded
