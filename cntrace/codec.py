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


def to_plain(obj: Any, *, compact: bool = False) -> Any:
    """Turn a dataclass tree into dicts, lists and scalars (tuples become lists).

    ``compact`` leaves out fields equal to their default: a large Snapshot is mostly nulls and
    empty lists, and the decoder fills defaults back in. Documents whose schema names every key
    (cntrace.path/v2) are written in full. Each class's fields and defaults are looked up once
    (_plan): a 1,000-container Snapshot is ~100,000 objects.
    """
    t = type(obj)
    if t in _SCALAR_TYPES:
        return obj
    if t is tuple or t is list:
        return [to_plain(v, compact=compact) for v in obj]
    plan = _PLANS.get(t)
    if plan is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        plan = _plan(t)
    if plan is not None:
        out = {}
        for name, kind, default in plan:
            value = getattr(obj, name)
            if (
                compact
                and kind
                and value == default
                and (kind == 2 or type(value) is type(default))
            ):
                continue
            out[name] = to_plain(value, compact=compact)
        return out
    if isinstance(obj, (tuple, list)):
        return [to_plain(v, compact=compact) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v, compact=compact) for k, v in obj.items()}
    return obj


_SCALAR_TYPES = frozenset((str, int, bool, float, type(None)))
# Per dataclass: (field name, 0 no default | 1 a default (same type too) | 2 a factory's, value).
_PLANS: dict[type, tuple[tuple[str, int, Any], ...]] = {}


def _plan(cls: type) -> tuple[tuple[str, int, Any], ...]:
    out: list[tuple[str, int, Any]] = []
    for f in _fields(cls):
        if f.name == "schema":  # readers check it first: always written
            out.append((f.name, 0, None))
        elif f.default is not dataclasses.MISSING:
            out.append((f.name, 1, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            out.append((f.name, 2, f.default_factory()))
        else:
            out.append((f.name, 0, None))
    plan = _PLANS[cls] = tuple(out)
    return plan


_FIELDS: dict[type, tuple[dataclasses.Field[Any], ...]] = {}


def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = tuple(
            f for f in dataclasses.fields(cls) if not f.name.startswith("_")
        )
    return found


def dumps(obj: Any, *, indent: int | None = 2, compact: bool = False) -> str:
    """Serialise a dataclass tree to JSON text."""
    return json.dumps(to_plain(obj, compact=compact), indent=indent, sort_keys=False)


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


def _bad(field: str, expected: str, value: Any) -> Any:
    raise CodecError(f"{field}: expected {expected}, got {type(value).__name__}")


_SCALARS = {int: "int", str: "str", bool: "bool"}


def _inline(tp: Any, var: str, key: str, env: dict[str, Any], i: int) -> str:
    """An expression decoding ``var``: scalar checks are inlined (no call per field)."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        non_none = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(non_none) == 1:
            optional, tp = True, non_none[0]
    if tp in _SCALARS:
        env[f"t{i}"] = tp
        check = f"({var} if {var}.__class__ is t{i} else bad({key}, {_SCALARS[tp]!r}, {var}))"
    else:
        env[f"d{i}"] = _decoder(tp)
        check = f"d{i}({var})"
    return f"(None if {var} is None else {check})" if optional else check


def _dec_str(v: Any) -> Any:
    if v.__class__ is str:
        return v
    raise CodecError(f"expected str, got {type(v).__name__}")


_STR_DECODER: Decoder = _dec_str


def _build(tp: Any) -> Decoder:
    if tp is str:
        return _STR_DECODER
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
                if v.__class__ is not list:
                    raise CodecError(f"expected a list, got {type(v).__name__}")
                return tuple(map(item, v))

            return dec_tuple
        decs = [_decoder(a) for a in args]
        return lambda v: tuple(d(x) for d, x in zip(decs, v, strict=True))
    if origin is dict:
        vdec = _decoder(args[1]) if args else _identity
        kdec = int if args and args[0] is int else _identity

        if vdec is _STR_DECODER and kdec is _identity:

            def dec_str_dict(v: Any) -> Any:
                if v.__class__ is not dict or not all(x.__class__ is str for x in v.values()):
                    raise CodecError("expected an object of strings")
                return dict(v)

            return dec_str_dict

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
    if tp is float:

        def dec_float(v: Any) -> Any:
            if v.__class__ is float or v.__class__ is int:
                return float(v)
            raise CodecError(f"expected float, got {type(v).__name__}")

        return dec_float

    def dec(v: Any) -> Any:
        if v.__class__ is tp:  # exact: JSON's true is not an int here
            return v
        raise CodecError(f"expected {tp.__name__}, got {type(v).__name__}")

    return dec


def _build_dataclass(cls: type) -> Decoder:
    """Compile a straight-line decoder for ``cls``: one expression per field, no per-key loop.

    Defaults are not decoded (they already have the right type); unknown keys are ignored so newer
    writers stay readable; any shape error becomes a CodecError naming the class and field.
    """
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]

    # Nested types may refer back to this class: register a trampoline first.
    compiled: list[Decoder] = []

    def trampoline(v: Any) -> Any:
        return compiled[0](v)

    _DECODERS[cls] = trampoline

    env: dict[str, Any] = {"cls": cls, "CodecError": CodecError, "bad": _bad}
    args = []
    for i, f in enumerate(fields):
        key = repr(f.name)
        value = _inline(hints[f.name], f"x{i}", key, env, i)
        if f.default is not dataclasses.MISSING:
            env[f"z{i}"] = f.default
            args.append(f"{f.name}=({value} if (x{i} := v.get({key}, z{i})) is not z{i} else z{i})")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"z{i}"] = f.default_factory
            args.append(
                f"{f.name}=({value} if {key} in v and ((x{i} := v[{key}]) or True) else z{i}())"
            )
        else:
            args.append(f"{f.name}=({value} if ((x{i} := v[{key}]) or True) else None)")
    name = cls.__name__
    source = (
        "def dec(v):\n"
        "    if v.__class__ is not dict:\n"
        f"        raise CodecError('{name}: expected an object, got ' + type(v).__name__)\n"
        "    try:\n"
        f"        return cls({', '.join(args)})\n"
        "    except CodecError as exc:\n"
        f"        raise CodecError('{name}: ' + str(exc)) from None\n"
        "    except KeyError as exc:\n"
        f"        raise CodecError('{name}: missing ' + str(exc)) from None\n"
        "    except (TypeError, AttributeError) as exc:\n"
        f"        raise CodecError('{name}: ' + str(exc)) from None\n"
    )
    exec(source, env)  # generated from our own dataclass fields only
    compiled.append(env["dec"])
    dec: Decoder = env["dec"]
    return dec
