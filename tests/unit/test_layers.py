"""The layer rules of docs/design.md, enforced on every import statement (module or function level).

cli/commands -> tui/render -> trace/path -> netfilter/topology -> model. The pure core works on a
Snapshot and must never read the system, so it imports no system-facing module of ours or of the
standard library; textual lives only in tui/, bcc only in trace/.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "cntrace"

CORE = (
    "model",
    "records",
    "codec",
    "errors",
    "refs",
    "topology",
    "netfilter",
    "path",
    "findings",
    "whatif",
    "redact",
    "report",
)
SYSTEM_FACING = ("sources", "trace", "lab", "tui", "render", "commands", "cli")
SYSTEM_LIBS = (
    "subprocess",
    "socket",
    "ctypes",
    "pyroute2",
    "psutil",
    "bcc",
    "textual",
    "scapy",
    "rich",
    "fcntl",
    "select",
    "selectors",
    "signal",
    "threading",
    "multiprocessing",
    "urllib",
    "http",
)


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODULES = _modules()


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_import_direction(module: str, path: Path) -> None:
    layer = _layer(module)
    imports = _imports(path, module)
    top = {name.split(".")[0] for name in imports}
    ours = {_layer(n) for n in imports if n.startswith("cntrace.")}
    if layer in CORE or layer == "":
        bad_ours = ours & set(SYSTEM_FACING)
        assert not bad_ours, f"{module} (pure core) imports cntrace.{bad_ours}"
        bad_libs = top & set(SYSTEM_LIBS)
        assert not bad_libs, f"{module} (pure core) imports {bad_libs}"
    if "textual" in top:
        assert layer == "tui", f"{module} imports textual outside cntrace.tui"
    if "bcc" in top:
        assert layer == "trace", f"{module} imports bcc outside cntrace.trace"
    if layer == "render":
        assert not ours & {"tui", "commands", "cli", "trace", "lab"}, f"{module} reaches upwards"
    if layer in ("sources", "lab"):
        assert not ours & {"tui", "commands", "cli", "render"}, f"{module} reaches upwards"
    if layer == "trace":
        assert not ours & {"tui", "commands", "cli"}, f"{module} reaches upwards"


def test_core_runs_without_textual_or_bcc() -> None:
    """Importing the whole core leaves textual, bcc and system readers unloaded."""
    core = [m for m, _ in MODULES if _layer(m) in CORE]
    code = (
        "import importlib, sys\n"
        f"for m in {core!r}: importlib.import_module(m)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "('textual', 'bcc', 'pyroute2', 'scapy', 'psutil') or n.startswith("
        "('cntrace.sources', 'cntrace.trace', 'cntrace.lab', 'cntrace.tui')))\n"
        "print(','.join(bad))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == ""
