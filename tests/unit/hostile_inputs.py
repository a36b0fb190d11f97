"""A seeded mutator over the recorded snapshots and rulesets, and a runner that judges cntrace.

Shared by tests/unit/test_fuzz_snapshots.py (a few hundred inputs, in CI) and
bench/soak_snapshots.py (thousands). A mutated file is run through the real argument parsing and
error handling (``cli.main``, in-process: an interpreter per input would cost 150 ms) and judged:
no traceback, an exit code in the documented set, one line on exit 2, valid JSON under --json.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clirun import run
from schemas import validate

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = sorted((REPO / "fixtures" / "snapshots" / "lab").glob("*.json")) + sorted(
    (REPO / "fixtures" / "discovery").glob("*.json")
)
RULESETS = sorted(
    p
    for p in (REPO / "fixtures" / "rulesets").iterdir()
    if p.suffix in (".save", ".json") and p.name != "docker-addresses.json"
)
ALLOWED_EXITS = {0, 1, 2}  # 3 (environment) cannot happen on a file; 4 is an internal error

# Values a hostile or broken writer puts where a field is expected. Strings are JSON text so that
# numbers Python refuses to print (10**5000) can be written too.
HOSTILE = [
    "null",
    "true",
    "false",
    "0",
    "-1",
    "65536",
    "4294967296",
    "18446744073709551616",
    "-18446744073709551617",
    "1e400",
    "-0.0",
    "3.5",
    "9" * 5000,
    '""',
    '" "',
    '"x"',
    '"999.1.1.1"',
    '"10.0.0.0/99"',
    '"10.0.0.1/-1"',
    '"::g"',
    '"1.2.3.4/24/5"',
    '"fe80::1%eth0"',
    '"default"',
    '"\\u001b]0;owned\\u0007\\u001b[2J"',
    '"\\ud800"',
    '"\\udfff tail"',
    '"a\\nb\\rc\\td"',
    '"\\u202eevil"',
    '"[bold red]markup[/]"',
    '"[/]"',
    '"%s%n{0}"',
    '"' + "A" * 70000 + '"',
    "[]",
    "{}",
    "[[[[[[[[[[]]]]]]]]]]",
    '{"a": {"b": {"c": []}}}',
    "[null]",
    '[""]',
    "[1, 2]",
    '{"x": 1}',
]


HOSTILE_STRINGS = [t for t in HOSTILE if t.startswith('"')]
HOSTILE_INTS = [t for t in HOSTILE if t.lstrip("-").isdigit()]


def _hostile_like(value: Any, rng: random.Random) -> str:
    """A hostile value of the same JSON type as ``value`` most of the time (so the file gets
    past type checks and reaches range checks and the core), any hostile value otherwise."""
    if rng.random() < 0.9:
        if isinstance(value, str):
            return rng.choice(HOSTILE_STRINGS)
        if isinstance(value, bool):
            return rng.choice(("true", "false", "0", '"true"'))
        if isinstance(value, int):
            return rng.choice(HOSTILE_INTS)
        if value is None:  # an optional field: a string or a number, either may be its type
            return rng.choice(HOSTILE_STRINGS + HOSTILE_INTS)
    return rng.choice(HOSTILE)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


_MARK = "\u0000HOSTILE{}\u0000"


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def mutate(doc: Any, rng: random.Random, count: int = 3) -> str:
    """JSON text: ``doc`` with ``count`` random fields replaced, removed or duplicated."""
    doc = json.loads(json.dumps(doc))
    tokens: list[str] = []
    for _ in range(count):
        paths = list(_paths(doc))[1:]
        leaves = [p for p in paths if not isinstance(_get(doc, p), (dict, list))]
        # Mostly scalars (a hostile value where a value was), sometimes a whole object or list.
        pool = leaves if leaves and rng.random() < 0.85 else paths
        path = rng.choice(pool) if pool else ()
        action = rng.random()
        if action < 0.7 or not path:
            tokens.append(_hostile_like(_get(doc, path), rng))
            doc = _set(doc, path, _MARK.format(len(tokens) - 1))
        elif action < 0.85:
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            del parent[path[-1]]
        else:
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            if isinstance(parent, list):
                parent.append(json.loads(json.dumps(parent[path[-1]])))
            else:
                tokens.append(rng.choice(HOSTILE))
                doc = _set(doc, path, _MARK.format(len(tokens) - 1))
    text = json.dumps(doc)
    for i, token in enumerate(tokens):
        text = text.replace(json.dumps(_MARK.format(i)), token, 1)
    return text


def mutate_text(text: str, rng: random.Random) -> str:
    """Damage at the byte level: truncation, deep nesting, junk in the middle."""
    choice = rng.randrange(5)
    if choice == 0:
        return text[: rng.randrange(max(1, len(text)))]
    if choice == 1:
        depth = rng.choice((100, 5000, 200000))
        at = text.find('"warnings": [') + len('"warnings": [')
        if at < len('"warnings": ['):
            return "[" * depth + "]" * depth
        return text[:at] + "[" * depth + "]" * depth + text[at:]
    if choice == 2:
        at = rng.randrange(max(1, len(text)))
        return text[:at] + rng.choice(("\x00", "\ufffd", "}", '"', "\\", "\x1b[2J")) + text[at:]
    if choice == 3:
        return text.replace('"name": "', '"name": "\\u001b[31m', rng.randrange(1, 5))
    return text.replace('"address": "', '"address": "x', 1)


def hostile_snapshot(seed: int) -> tuple[str, list[str]]:
    """A mutated recorded snapshot and the container names it held before mutation."""
    rng = random.Random(seed)
    path = SNAPSHOTS[seed % len(SNAPSHOTS)]
    text = path.read_text()
    doc = json.loads(text)
    names = [c["name"] for c in doc.get("containers", [])]
    if rng.random() < 0.15:
        return mutate_text(text, rng), names
    return mutate(doc, rng, count=rng.choice((1, 1, 1, 2, 4))), names


def hostile_ruleset(seed: int) -> bytes:
    """A mutated recorded ruleset (iptables-save text or nft JSON)."""
    rng = random.Random(seed)
    path = RULESETS[seed % len(RULESETS)]
    data = path.read_bytes()
    choice = rng.randrange(6)
    if choice == 0 and path.suffix == ".json":
        return mutate(json.loads(data), rng, count=rng.choice((1, 2, 4))).encode()
    if choice == 1:
        return data[: rng.randrange(max(1, len(data)))]
    if choice == 2:
        at = rng.randrange(max(1, len(data)))
        return data[:at] + bytes(rng.randrange(256) for _ in range(8)) + data[at:]
    if choice == 3:
        lines = data.split(b"\n")
        i = rng.randrange(len(lines))
        lines[i] = lines[i] + rng.choice(
            (b" --dport 99999", b" -m mark --mark 0x1ffffffff", b" \x1b]0;x\x07", b" -j")
        )
        return b"\n".join(lines)
    if choice == 4:
        return b"{" * 100000
    return data.replace(b"-A ", b"-A \xff\xfe", 1)


def commands(names: list[str], snapshot: str, rng: random.Random) -> list[list[str]]:
    """The five commands a reader runs on a snapshot someone sent."""
    a = rng.choice(names) if names else "web"
    b = rng.choice(names) if names else "db"
    return [
        ["ls", "--snapshot", snapshot] + (["--json"] if rng.random() < 0.5 else []),
        ["show", a, "--snapshot", snapshot] + (["--json"] if rng.random() < 0.5 else []),
        ["topo", "--snapshot", snapshot] + (["--json"] if rng.random() < 0.5 else []),
        ["path", a, rng.choice((f"{b}:80", b, "203.0.113.10:80", "host:8080")), "--snapshot"]
        + [snapshot]
        + (["--json"] if rng.random() < 0.5 else []),
        ["rules", a, "--snapshot", snapshot] + (["--json"] if rng.random() < 0.5 else []),
    ]


@dataclass
class Outcome:
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float

    def problems(self) -> list[str]:
        """What is wrong with this run, by the promises of README.md's exit-code table."""
        out = []
        if "Traceback" in self.stderr or "Traceback" in self.stdout:
            out.append("traceback")
        if self.code not in ALLOWED_EXITS:
            out.append(f"exit {self.code}")
        if self.code == 2:
            lines = self.stderr.splitlines()
            if len(lines) != 1 or not lines[0].startswith("cntrace: error: "):
                out.append(f"exit 2 without one error line: {self.stderr[:300]!r}")
        if "--json" in self.argv and self.code in (0, 1):
            try:
                validate(json.loads(self.stdout))
            except ValueError as exc:
                out.append(f"--json printed no JSON ({exc})")
            except AssertionError as exc:
                out.append(f"--json broke its schema: {exc}")
        if any(c in self.stdout + self.stderr for c in ("\x1b]", "\x1b[2J", "\x9b", "\x07")):
            out.append("a raw escape sequence reached the output")
        return out


def run_cli(argv: list[str]) -> Outcome:
    """``cli.main`` in this process (clirun), judged by problems() rather than asserted."""
    t0 = time.perf_counter()
    res = run(*argv, inproc=True)
    return Outcome(argv, res.returncode, res.stdout, res.stderr, time.perf_counter() - t0)
