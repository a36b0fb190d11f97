"""`inspect` stays unimported until something reads it (cntrace/__init__.py's stand-in).

`dataclasses` calls inspect only for a class without a docstring; one such class anywhere on a
command's import path brings back ~10 ms of every run. So every cntrace module outside the
console and the tracer (whose libraries use inspect) is imported here and inspect must still be
the stand-in; and the stand-in must behave as the module once it is read.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import cntrace

SKIP = ("cntrace.__main__", "cntrace.tui", "cntrace.trace", "cntrace.commands.tui")


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_no_cntrace_module_loads_inspect() -> None:
    names = [
        m.name
        for m in pkgutil.walk_packages(cntrace.__path__, "cntrace.")
        if not m.name.startswith(SKIP)
    ]
    assert len(names) > 100
    code = (
        "import importlib, sys\n"
        f"for m in {names!r}:\n"
        "    importlib.import_module(m)\n"
        "    if 'signature' in vars(sys.modules['inspect']):\n"
        "        print(m); break\n"
    )
    assert _run(code) == "", "this module (or one it imports) made inspect load"


def test_the_stand_in_answers_as_the_module() -> None:
    code = (
        "import cntrace, sys\n"
        "import inspect as early\n"
        "print('signature' in vars(early))\n"
        "print(early.signature(lambda a, b=2: 0))\n"
        "import inspect\n"
        "print(inspect is sys.modules['inspect'], inspect.getmro is early.getmro)\n"
        "from inspect import isclass\n"
        "print(isclass(int))\n"
    )
    assert _run(code).splitlines() == ["False", "(a, b=2)", "True True", "True"]
