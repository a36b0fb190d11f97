"""Dataclass <-> plain JSON values, for Snapshots, Paths and everything they hold.

Decoding is driven by the dataclasses' type hints, compiled once per class into a small function,
because a 1,000-container Snapshot holds tens of thousands of objects and must load in well under
the path-prediction budget. Fields whose name starts with an underscore are caches and never
serialised.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

Decoder = Callable[[Any], Any]
_DECODERS: dict[Any, Decoder] = {}


class CodecError(ValueError):
    """A document does not have the shape of the object it should describe."""


def to_plain(obj: Any) -> Any:
    """Turn a dataclass tree into dicts, lists and scalars (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_plain(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not f.name.startswith("_")
        }
    if isinstance(obj, (tuple, list)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    """Serialise a dataclass tree to JSON text."""
    return json.dumps(to_plain(obj), indent=indent, sort_keys=False)


def from_plain(cls: type[T], data: Any) -> T:
    """Build ``cls`` from plain values, checking shapes as it goes."""
    result: T = _decoder(cls)(data)
    return result


def loads(cls: type[T], text: str) -> T:
    """Parse JSON text into ``cls``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    return from_plain(cls, data)


def _decoder(tp: Any) -> Decoder:
    cached = _DECODERS.get(tp)
    if cached is None:
        cached = _build(tp)
        _DECODERS[tp] = cached
    return cached


def _identity(value: Any) -> Any:
    return value


def _build(tp: Any) -> Decoder:
    if tp is Any:
        return _identity
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            inner = _decoder(non_none[0])
            return lambda v: None if v is None else inner(v)
        return _identity
    if origin is typing.Literal:
        return _identity
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _decoder(args[0])

            def dec_tuple(v: Any) -> Any:
                if not isinstance(v, list):
                    raise CodecError(f"expected a list, got {type(v).__name__}")
                return tuple(item(x) for x in v)

            return dec_tuple
        decs = [_decoder(a) for a in args]
        return lambda v: tuple(d(x) for d, x in zip(decs, v, strict=True))
    if origin is dict:
        vdec = _decoder(args[1]) if args else _identity
        kdec = int if args and args[0] is int else _identity

        def dec_dict(v: Any) -> Any:
            if not isinstance(v, dict):
                raise CodecError(f"expected an object, got {type(v).__name__}")
            return {kdec(k): vdec(x) for k, x in v.items()}

        return dec_dict
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build_dataclass(tp)
    if tp in (int, str, bool, float):
        return _scalar(tp)
    return _identity


def _scalar(tp: type) -> Decoder:
    def dec(v: Any) -> Any:
        if tp is float and isinstance(v, int):
            return float(v)
        if not isinstance(v, tp) or (tp is int and isinstance(v, bool)):
            raise CodecError(f"expected {tp.__name__}, got {type(v).__name__}")
        return v

    return dec


def _build_dataclass(cls: type) -> Decoder:
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    # Resolved lazily so recursive types work.
    field_decoders: dict[str, Decoder] = {}

    def dec(v: Any) -> Any:
        if not isinstance(v, dict):
            raise CodecError(f"{cls.__name__}: expected an object, got {type(v).__name__}")
        if not field_decoders:
            for f in fields:
                field_decoders[f.name] = _decoder(hints[f.name])
        missing = required - v.keys()
        if missing:
            raise CodecError(f"{cls.__name__}: missing {', '.join(sorted(missing))}")
        kwargs = {}
        for name, value in v.items():
            fd = field_decoders.get(name)
            if fd is None:
                continue  # newer writers may add keys; older readers ignore them
            try:
                kwargs[name] = fd(value)
            except CodecError as exc:
                raise CodecError(f"{cls.__name__}.{name}: {exc}") from None
        return cls(**kwargs)

    return dec
