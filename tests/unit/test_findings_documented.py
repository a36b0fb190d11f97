"""Every finding code is emitted, documented and asserted (issue 13): read from the files, so a
code another change adds is held to the same rule the moment it lands, with no list to update.

- documented: a row of a table in docs/findings.md whose first cell is the code in backticks;
- emitted: a string constant given as the code to ``finding(...)`` (or ``Finding(code=...)``)
  in cntrace/path/, directly or through a function that passes its parameter on as the code
  (``diagnose.rule_drop(w, ns, end, "output-drop")``);
- asserted: the code as a quoted string literal in a Python file under tests/ (this file aside).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from cntrace.path.findings import CODES

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "findings.md"
PATH_PKG = REPO / "cntrace" / "path"
TESTS = REPO / "tests"
ROW = re.compile(r"^\| `([a-z0-9]+(?:-[a-z0-9]+)*)` \| ([^|]*)\|", re.MULTILINE)


@cache
def documented() -> dict[str, str]:
    """code -> its severity cell."""
    rows = ROW.findall(DOC.read_text())
    codes = [c for c, _ in rows]
    assert len(codes) == len(set(codes)), "a code has two rows in docs/findings.md"
    return {c: sev.strip() for c, sev in rows}


def _strings(node: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def _name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _code_arg(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    return call.args[index] if len(call.args) > index else None


@cache
def emitted() -> dict[str, set[str]]:
    """code -> the files of cntrace/path that emit it."""
    trees = {p.name: ast.parse(p.read_text()) for p in sorted(PATH_PKG.glob("*.py"))}
    # Functions that pass one of their parameters on as a finding's code: name -> its index.
    relays: dict[str, int] = {}
    for tree in trees.values():
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            params = [a.arg for a in fn.args.args]
            for call in ast.walk(fn):
                if isinstance(call, ast.Call) and _name(call) == "finding":
                    arg = _code_arg(call, 0, "code")
                    if isinstance(arg, ast.Name) and arg.id in params:
                        relays[fn.name] = params.index(arg.id)
    found: dict[str, set[str]] = {}
    for file, tree in trees.items():
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            name = _name(call)
            arg = None
            if name == "finding":
                arg = _code_arg(call, 0, "code")
            elif name == "Finding":
                arg = _code_arg(call, len(call.args) + 1, "code")  # keyword only
            elif name in relays:
                arg = _code_arg(call, relays[name], "code")
            for code in _strings(arg) if arg is not None else ():
                found.setdefault(code, set()).add(file)
    return found


@cache
def asserted() -> set[str]:
    literals: set[str] = set()
    for p in TESTS.rglob("*.py"):
        if p.resolve() != Path(__file__).resolve():
            literals |= set(re.findall(r"""["']([a-z0-9]+(?:-[a-z0-9]+)+)["']""", p.read_text()))
    return literals


def test_the_readers_find_what_they_read() -> None:
    """The parsers themselves: a broken regex or AST walk must not pass everything vacuously."""
    assert {"no-route", "rule-uncertain", "macvlan-vepa"} <= set(documented())
    assert {"output-drop", "input-drop", "dns-unresolved", "rp-filter"} <= set(emitted())
    assert "forward-drop" in asserted()


def test_every_emitted_code_is_documented() -> None:
    missing = {c: sorted(f) for c, f in emitted().items() if c not in documented()}
    assert not missing, f"emitted by cntrace/path but not in docs/findings.md: {missing}"


def test_every_documented_code_is_emitted() -> None:
    never = sorted(set(documented()) - set(emitted()))
    assert not never, f"documented in docs/findings.md but never emitted by cntrace/path: {never}"


def test_the_catalogue_and_the_docs_agree() -> None:
    """cntrace.path.findings.CODES (whose severity a finding takes) has exactly the documented
    codes, and each documented severity cell starts with the catalogued severity."""
    docs = documented()
    assert set(CODES) == set(docs), (sorted(set(CODES) - set(docs)), sorted(set(docs) - set(CODES)))
    wrong = {
        c: (CODES[c].severity, docs[c]) for c in docs if not docs[c].startswith(CODES[c].severity)
    }
    assert not wrong, f"severity in docs/findings.md differs from the catalogue: {wrong}"


def test_every_documented_code_is_asserted_by_a_test() -> None:
    never = sorted(set(documented()) - asserted())
    assert not never, f"no test under tests/ names these codes: {never}"
