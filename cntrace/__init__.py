"""cntrace: network diagnostics and packet tracing for Linux containers."""

__version__ = "0.1.0"

import sys as _sys
import types as _types


def _defer(name: str) -> None:
    """Import module ``name`` on first use of one of its attributes, not now.

    `dataclasses` imports `inspect` (with ast, dis, tokenize and linecache: ~10 ms of every
    command) only to describe a class that has no docstring, and every cntrace dataclass has
    one. Until something reads an attribute, ``name`` is a stand-in module; the first read
    imports the real one (which from then on is what ``import`` gives) and answers from it.
    importlib's LazyLoader cannot do this: an ``import`` statement reads ``__spec__``, which
    loads the module there and then."""
    if name in _sys.modules:
        return
    stand_in = _types.ModuleType(name, f"{name}, imported on first use (cntrace/__init__.py)")

    def load(attr: str) -> object:
        if _sys.modules.get(name) is stand_in:
            del _sys.modules[name]
        __import__(name)
        return getattr(_sys.modules[name], attr)

    stand_in.__getattr__ = load  # type: ignore[method-assign]  # PEP 562: misses only
    _sys.modules[name] = stand_in


_defer("inspect")

from cntrace import dccache as _dccache  # noqa: E402  (before any module declares a dataclass)

_dccache.install()
