"""One iptables-save rule line, compiled into steps when the rule is first used.

``SaveForm`` is what the parser keeps of a rule (its text and its table's chain names);
``RuleCompiler`` turns the text into steps: the generic options (-s, -d, -p, -i, -o) here, match
modules in iptables_matches.py, targets in iptables_targets.py. One compiler serves a whole
iptables-save text and memoises the steps its rules repeat.
"""

from __future__ import annotations

import re

from cntrace.netfilter.iptables_headers import join_connbytes
from cntrace.netfilter.iptables_matches import MODULE_PROTO, MODULES, iface_atom
from cntrace.netfilter.iptables_probe import fragment, join_time
from cntrace.netfilter.iptables_targets import target_steps
from cntrace.netfilter.model import Compiled, RuleForm
from cntrace.netfilter.names import protocol_number
from cntrace.netfilter.stateful import join_options
from cntrace.netfilter.steps import Atom, Effect, Field, Match, Step, Unsupported
from cntrace.netfilter.values import RulesetError, prefix_atom

_TOKEN = re.compile(r'(?:[^\s"\\]+|"(?:[^"\\]|\\.)*"|\\.)+')
_UNQUOTE = re.compile(r'\\(.)|"')


def tokenize(line: str, lineno: int, source: str = "") -> list[str]:
    """Split like iptables-restore does: whitespace, double quotes, backslash escapes."""
    if '"' not in line and "\\" not in line:
        return line.split()
    if "\\" not in line:
        # The common case (a quoted --comment): split on the quotes, words outside them.
        parts = line.split('"')
        if len(parts) % 2 == 0:
            raise RulesetError("unterminated quote", lineno, source=source)
        out: list[str] = []
        glue = False  # the next piece continues the previous token (no space between)
        for k, part in enumerate(parts):
            if k % 2:  # quoted: one piece, spaces included
                if glue and out:
                    out[-1] += part
                else:
                    out.append(part)
                glue = True
                continue
            if not part:
                continue
            words = part.split()
            if glue and out and not part[0].isspace() and words:
                out[-1] += words.pop(0)
            out.extend(words)
            glue = not part[-1].isspace()
        return out
    raw = _TOKEN.findall(line)
    if "".join("".join(raw).split()) != "".join(line.split()):
        raise RulesetError("unterminated quote", lineno, source=source)
    return [
        _UNQUOTE.sub(lambda m: m.group(1) or "", t) if ('"' in t or "\\" in t) else t for t in raw
    ]


class SaveForm(RuleForm):
    """An iptables-save rule as recorded: its text (also what the user reads) and line."""

    __slots__ = ("body", "compiler", "lineno", "names")

    def __init__(self, body: str, names: set[str], compiler: RuleCompiler, lineno: int) -> None:
        self._compiled = None
        self._text = body
        self.body = body
        self.names = names  # the chains of its table (a -j to one of them is a jump)
        self.compiler = compiler
        self.lineno = lineno

    def _compile(self) -> Compiled:
        return self.compiler.compile(self.body, self.names, self.lineno)

    def _render(self) -> str:
        return self.body

    def _source_text(self) -> str:
        return self.body


class RuleCompiler:
    """Compiles the rules of one iptables-save text, sharing the steps they repeat."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.cache: dict[tuple[str, ...], Step] = {}
        self.targets: dict[tuple[str, ...], list[Step]] = {}

    def err(self, message: str, lineno: int) -> RulesetError:
        return RulesetError(message, lineno, source=self.source)

    def compile(self, body: str, names: set[str], lineno: int) -> Compiled:
        """A rule's steps from its text (called once, on first use)."""
        tokens = tokenize(body, lineno, self.source)
        if "-c" in tokens[2:]:
            i = tokens.index("-c", 2)
            tokens = tokens[:i] + tokens[i + 3 :]
        try:
            steps, comment = self.rule_steps(tokens, 2, lineno, names)
        except RulesetError:
            raise
        except (ValueError, IndexError, KeyError, OverflowError) as exc:
            raise self.err(str(exc) or type(exc).__name__, lineno) from None
        return Compiled(steps, comment)

    def rule_steps(
        self, tokens: list[str], start: int, lineno: int, names: set[str]
    ) -> tuple[tuple[Step, ...], str | None]:
        steps: list[Step] = []
        comment: str | None = None
        target: list[Step] = []
        module: str | None = None
        proto: int | None = None
        i = start
        n = len(tokens)
        while i < n:
            neg = False
            tok = tokens[i]
            if tok == "!":
                neg = True
                i += 1
                if i >= n:
                    raise self.err("'!' at end of rule", lineno)
                tok = tokens[i]
            if tok in ("-m", "--match"):
                module = self.arg(tokens, i, lineno)
                i += 2
                continue
            if tok in ("-j", "--jump", "-g", "--goto"):
                name = self.arg(tokens, i, lineno)
                # iptables-save prints the target last: every remaining token is its option.
                goto = tok in ("-g", "--goto")
                target.extend(self.target(name, tokens[i + 2 :], goto, lineno, names))
                i = n
                continue
            if tok.startswith("--") and module is not None:
                j = i + 1
                if tok == "--comment":
                    j = min(i + 2, n)
                else:
                    while j < n and not tokens[j].startswith("-") and tokens[j] != "!":
                        j += 1
                args = tokens[i + 1 : j]
                mproto = proto if proto is not None else MODULE_PROTO.get(module)
                if tok == "--comment":
                    comment = args[0] if args else ""
                    i = j
                    continue
                key = (module, tok, neg, mproto, *args)
                step = self.cache.get(key)  # type: ignore[arg-type]
                if step is None:
                    step = self.module_option(module, tok, args, neg, mproto, lineno)
                    if step is not None:
                        self.cache[key] = step  # type: ignore[index]
                if isinstance(step, Effect) and step.kind == "comment":
                    comment = step.detail
                elif isinstance(step, Effect) and step.kind == "addrtype-limit":
                    _limit_addrtype(steps, step.detail)
                elif step is not None:
                    steps.append(step)
                i = j
                continue
            # generic options
            if tok in ("-s", "--source", "--src", "-d", "--destination", "--dst"):
                value = self.arg(tokens, i, lineno)
                steps.append(
                    self.addr_match(
                        "saddr" if tok in ("-s", "--source", "--src") else "daddr", value, neg
                    )
                )
                i += 2
            elif tok in ("-p", "--protocol"):
                value = self.arg(tokens, i, lineno).lower()
                ck = ("-p", value, "!" if neg else "")
                num = protocol_number(value)
                cached = self.cache.get(ck)
                if cached is None:
                    text = f"{'! ' if neg else ''}-p {value}"
                    if num is None:
                        cached = Match(
                            (), text=text, unsupported=f"protocol {value!r} is not known"
                        )
                    elif num != 0 or neg:
                        cached = Match(
                            (Field("l4proto"),), "!=" if neg else "==", ((Atom(num),),), text=text
                        )
                    if cached is not None:
                        self.cache[ck] = cached
                if cached is not None:
                    steps.append(cached)
                proto = (num or None) if not neg else None
                i += 2
            elif tok in ("-i", "--in-interface", "-o", "--out-interface"):
                value = self.arg(tokens, i, lineno)
                ikey = "iifname" if tok in ("-i", "--in-interface") else "oifname"
                steps.append(_iface_match(ikey, value, neg, f"{'! ' if neg else ''}{tok} {value}"))
                i += 2
            elif tok in ("-f", "--fragment"):
                steps.append(fragment(neg))
                i += 1
            elif tok in ("-c", "--set-counters"):
                i += 3
            else:
                raise self.err(f"unknown option {tok!r}", lineno)
        if module is not None:
            join_time(steps)
            join_connbytes(steps)
            join_options(steps)
        return tuple(steps + target), comment

    def arg(self, tokens: list[str], i: int, lineno: int) -> str:
        if i + 1 >= len(tokens):
            raise self.err(f"option {tokens[i]} needs a value", lineno)
        return tokens[i + 1]

    def addr_match(self, key: str, value: str, neg: bool) -> Step:
        ck = (key, value, "!" if neg else "")
        hit = self.cache.get(ck)
        if hit is not None:
            return hit
        atoms = []
        for part in value.split(","):
            _, atom = prefix_atom(part)
            atoms.append((atom,))
        flag = "-s" if key == "saddr" else "-d"
        m = Match(
            (Field(key),),
            "!=" if neg else "==",
            tuple(atoms),
            text=f"{'! ' if neg else ''}{flag} {value}",
        )
        self.cache[ck] = m
        return m

    # ------------------------------------------------------------------ match modules

    def module_option(
        self, module: str, opt: str, args: list[str], neg: bool, proto: int | None, lineno: int
    ) -> Step | None:
        text = f"{'! ' if neg else ''}{opt} {' '.join(args)}".rstrip()
        handler = MODULES.get(module)
        if handler is None:
            return Match(
                (),
                text=f"-m {module} {text}",
                unsupported=f"match module '{module}' is not modelled",
            )
        try:
            return handler(opt, args, neg, proto, text)
        except (ValueError, IndexError, KeyError) as exc:
            if not str(exc).startswith(("unknown", "missing", "'")):
                raise self.err(f"-m {module} {opt}: {exc}", lineno) from None
            # what iptables printed but cntrace does not know: uncertain, naming it
            return Match(
                (),
                text=f"-m {module} {text}",
                unsupported=f"-m {module} {opt}: {exc} (not modelled)",
            )

    def target(
        self, name: str, args: list[str], goto: bool, lineno: int, names: set[str]
    ) -> list[Step]:
        key = ("-j", name, str(goto), str(name in names), *args)
        hit = self.targets.get(key)
        if hit is not None:
            return hit
        try:
            steps = target_steps(name, args, goto, names)
            self.targets[key] = steps
            return steps
        except (ValueError, IndexError, KeyError) as exc:
            if not str(exc).startswith(("unknown", "missing", "'")):
                raise self.err(f"-j {name}: {exc}", lineno) from None
            text = " ".join(["-g" if goto else "-j", name, *args])
            return [Unsupported(text, f"target {name}: {exc} (not modelled)")]


def _limit_addrtype(steps: list[Step], iface: str) -> None:
    """--limit-iface-in/out: the addrtype test only looks at addresses of that interface."""
    for k in range(len(steps) - 1, -1, -1):
        s = steps[k]
        if isinstance(s, Match) and s.fields and s.fields[0].key.startswith("fib."):
            steps[k] = Match(
                tuple(Field(f.key, arg=iface) for f in s.fields), s.op, s.values, text=s.text
            )
            return


def _iface_match(key: str, value: str, neg: bool, text: str) -> Match:
    return Match((Field(key),), "!=" if neg else "==", ((iface_atom(value),),), text=text)
