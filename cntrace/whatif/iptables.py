"""``iptables``/``ip6tables`` command lines and ``iptables-restore`` fragments, applied to the
iptables-save text a namespace's Ruleset holds.

The result is iptables-save text again, so the netfilter parser (and everything after it) sees a
change exactly as it would see the host after the command. Rule specs are written the way
iptables-save prints them (``-d 1.2.3.4`` becomes ``-d 1.2.3.4/32``, ``-p tcp --dport`` gains
``-m tcp``) so that the predicted rule text is what the kernel would list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cntrace.errors import BadInput
from cntrace.model import Netns, Ruleset, Snapshot
from cntrace.netfilter.iptables_rules import tokenize
from cntrace.netfilter.iptables_save import detect_backend
from cntrace.whatif.change import Reader, with_netns

COMMANDS = {
    "iptables": (False, None),
    "ip6tables": (True, None),
    "iptables-nft": (False, "iptables-nft"),
    "ip6tables-nft": (True, "iptables-nft"),
    "iptables-legacy": (False, "iptables-legacy"),
    "ip6tables-legacy": (True, "iptables-legacy"),
}
RESTORE = {
    "iptables-restore": (False, None),
    "ip6tables-restore": (True, None),
    "iptables-nft-restore": (False, "iptables-nft"),
    "ip6tables-nft-restore": (True, "iptables-nft"),
    "iptables-legacy-restore": (False, "iptables-legacy"),
    "ip6tables-legacy-restore": (True, "iptables-legacy"),
}
BUILTIN = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
_LONG = {
    "--append": "-A",
    "--insert": "-I",
    "--delete": "-D",
    "--replace": "-R",
    "--new-chain": "-N",
    "--new": "-N",
    "--delete-chain": "-X",
    "--flush": "-F",
    "--policy": "-P",
    "--rename-chain": "-E",
    "--zero": "-Z",
    "--table": "-t",
    "--wait": "-w",
    "--list": "-L",
    "--list-rules": "-S",
    "--check": "-C",
}
_SPEC_LONG = {
    "--source": "-s",
    "--src": "-s",
    "--destination": "-d",
    "--dst": "-d",
    "--in-interface": "-i",
    "--out-interface": "-o",
    "--protocol": "-p",
    "--jump": "-j",
    "--goto": "-g",
    "--match": "-m",
    "--destination-port": "--dport",
    "--source-port": "--sport",
    "--destination-ports": "--dports",
    "--source-ports": "--sports",
    "--fragment": "-f",
}
_BASIC_ORDER = ("-s", "-d", "-i", "-o", "-p", "-f")
_PROTO_OPTS = {
    "tcp": ("--dport", "--sport", "--syn", "--tcp-flags", "--tcp-option"),
    "udp": ("--dport", "--sport"),
    "sctp": ("--dport", "--sport"),
    "icmp": ("--icmp-type",),
    "ipv6-icmp": ("--icmpv6-type",),
    "icmpv6": ("--icmpv6-type",),
}


# --------------------------------------------------------------------------- the save text


@dataclass
class _Table:
    """One table of an iptables-save text."""

    name: str
    head: list[str] = field(default_factory=list)  # comment lines before `*name`
    chains: dict[str, str] = field(default_factory=dict)  # name -> "POLICY [p:b]"
    rules: list[tuple[str, str]] = field(default_factory=list)  # (chain, words after -A CHAIN)
    tail: list[str] = field(default_factory=list)  # comment lines after COMMIT


@dataclass
class _Save:
    """An iptables-save text, table by table, to edit and print back."""

    tables: dict[str, _Table] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> _Save:
        save = cls()
        pending: list[str] = []
        current: _Table | None = None
        last: _Table | None = None
        for raw in text.split("\n"):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                if current is None and last is not None and line.startswith("# Completed"):
                    last.tail.append(line)
                else:
                    pending.append(line)
            elif line.startswith("*"):
                current = save.tables.setdefault(line[1:], _Table(line[1:]))
                current.head, pending = pending, []
            elif current is None:
                raise BadInput(f"what-if: iptables text outside a table: {line!r}")
            elif line == "COMMIT":
                last, current = current, None
            elif line.startswith(":"):
                name, _, rest = line[1:].partition(" ")
                current.chains[name] = rest.strip() or "- [0:0]"
            else:
                counters = ""
                if line.startswith("["):
                    counters, _, line = line.partition(" ")
                words = line.split(None, 2)
                if len(words) < 2 or words[0] != "-A":
                    raise BadInput(f"what-if: not a rule line: {line!r}")
                rest = words[2] if len(words) > 2 else ""
                current.rules.append((words[1], f"{counters} {rest}".strip() if counters else rest))
        return save

    def render(self) -> str:
        out: list[str] = []
        for t in self.tables.values():
            out.extend(t.head)
            out.append(f"*{t.name}")
            out.extend(f":{name} {policy}" for name, policy in t.chains.items())
            for chain, rest in t.rules:
                if rest.startswith("["):  # iptables-save -c: the counters come first
                    counters, _, spec = rest.partition(" ")
                    out.append(f"{counters} -A {chain} {spec}".rstrip())
                else:
                    out.append(f"-A {chain} {rest}".rstrip())
            out.append("COMMIT")
            out.extend(t.tail)
        return "\n".join(out) + "\n"

    def table(self, name: str, header: str) -> _Table:
        if name not in BUILTIN:
            raise BadInput(f"what-if: iptables has no table {name!r}")
        found = self.tables.get(name)
        if found is None:
            found = self.tables[name] = _Table(name, head=[header])
            found.chains = {c: "ACCEPT [0:0]" for c in BUILTIN[name]}
        return found


def _rule_words(rest: str) -> list[str]:
    words = tokenize(rest, 0, "what-if")
    if words and words[0].startswith("[") and words[0].endswith("]"):
        words = words[1:]
    return words


def _quote(word: str) -> str:
    if word and not any(c.isspace() or c in '"\\' for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def canonical(words: list[str], v6: bool) -> list[str]:
    """A rule spec in iptables-save's spelling and order."""
    words = [_SPEC_LONG.get(w, w) for w in words]
    basic: dict[str, list[str]] = {}
    rest: list[str] = []
    i = 0
    while i < len(words):
        neg = words[i] == "!"
        w = words[i + 1] if neg and i + 1 < len(words) else words[i]
        if w in _BASIC_ORDER:
            value = [] if w == "-f" else words[i + 2 if neg else i + 1 : i + 3 if neg else i + 2]
            if w in ("-s", "-d") and value and "/" not in value[0]:
                value = [value[0] + ("/128" if v6 else "/32")]
            if w == "-p" and value:
                value = [value[0].lower()]
            basic[w] = (["!"] if neg else []) + [w] + value
            i += (2 if neg else 1) + len(value if w != "-f" else [])
            continue
        rest.append(words[i])
        i += 1
    proto = basic.get("-p", [])[-1:] or [""]
    wanted = _PROTO_OPTS.get(proto[0], ())
    modules = {rest[k + 1] for k, w in enumerate(rest[:-1]) if w == "-m"}
    if wanted and proto[0] not in modules and any(w in wanted for w in rest):
        first = min(
            k
            for k, w in enumerate(rest)
            if w in wanted or (w == "!" and k + 1 < len(rest) and rest[k + 1] in wanted)
        )
        rest[first:first] = ["-m", proto[0]]
    target = rest[rest.index("-j") + 1 : rest.index("-j") + 2] if "-j" in rest else []
    if target == ["REJECT"] and "--reject-with" not in rest:
        rest += ["--reject-with", "icmp6-port-unreachable" if v6 else "icmp-port-unreachable"]
    out: list[str] = []
    for key in _BASIC_ORDER:
        out.extend(basic.get(key, []))
    return out + rest


def _spec_text(words: list[str]) -> str:
    out = []
    for k, w in enumerate(words):
        out.append(_quote(w) if k and words[k - 1] == "--comment" else w)
    return " ".join(out)


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class IptablesOp:
    """One iptables command: ``action`` is the short option (-A, -I, -D ...)."""

    command: str
    v6: bool
    backend: str | None
    table: str
    action: str
    chain: str | None
    args: tuple[str, ...]
    kind: str = "iptables"
    needs_netns: bool = True

    def apply(self, snap: Snapshot, ns: Netns | None) -> Snapshot:
        assert ns is not None
        attr, text = _ruleset_text(ns.ruleset, self.v6, self.backend)
        save = _Save.parse(text)
        _run(save, self, _header(text, attr, self.v6))
        return with_netns(snap, _set_text(ns, attr, save.render()))


def parse_command(command: str, words: list[str]) -> IptablesOp:
    v6, backend = COMMANDS[command]
    table = "filter"
    action: str | None = None
    chain: str | None = None
    args: list[str] = []
    i = 0
    while i < len(words):
        w = _LONG.get(words[i], words[i])
        if w in ("-t",) and i + 1 < len(words):
            table = words[i + 1]
            i += 2
        elif w == "-w" or w.startswith("--wait") or w in ("-W", "--wait-interval"):
            i += 2 if i + 1 < len(words) and words[i + 1].isdigit() else 1
        elif w in ("-L", "-S", "-C", "-n", "-v", "--line-numbers"):
            raise BadInput(f"what-if: `{command} {words[i]}` changes nothing")
        elif w in ("-A", "-I", "-D", "-R", "-N", "-X", "-F", "-P", "-E", "-Z") and action is None:
            action = w
            if i + 1 < len(words) and not words[i + 1].startswith("-"):
                chain = words[i + 1]
                i += 1
            i += 1
        else:
            args.append(words[i])
            i += 1
    if action is None:
        raise BadInput(f"what-if: `{command}` without -A/-I/-D/-R/-N/-X/-F/-P changes nothing")
    if action in ("-A", "-I", "-D", "-R", "-N", "-P", "-E") and chain is None:
        raise BadInput(f"what-if: {command} {action} needs a chain")
    return IptablesOp(command, v6, backend, table, action, chain, tuple(args))


def _ruleset_text(rs: Ruleset, v6: bool, backend: str | None) -> tuple[str, str]:
    """Which Ruleset attribute the command acts on, and its text (the back end that holds
    rules, as the `iptables` on that host would be; nf_tables by default)."""
    base = "ip6tables" if v6 else "iptables"
    if backend is not None:
        attr = f"{base}_{backend.split('-')[1]}"
    elif getattr(rs, f"{base}_nft"):
        attr = f"{base}_nft"
    elif getattr(rs, f"{base}_legacy"):
        attr = f"{base}_legacy"
    else:
        attr = f"{base}_nft"
    return attr, getattr(rs, attr) or ""


def _header(text: str, attr: str, v6: bool) -> str:
    for line in text.split("\n")[:3]:
        if line.startswith("# Generated by"):
            return line
    tool = "ip6tables" if v6 else "iptables"
    suffix = " (nf_tables)" if attr.endswith("_nft") else " (legacy)"
    return f"# Generated by {tool}-save v1.8.9{suffix}"


def _set_text(ns: Netns, attr: str, text: str) -> Netns:
    rs = replace(ns.ruleset, **{attr: text})  # type: ignore[arg-type]
    return replace(ns, ruleset=rs)


def _chain_rules(t: _Table, chain: str) -> list[int]:
    return [k for k, (c, _) in enumerate(t.rules) if c == chain]


def _need_chain(t: _Table, chain: str, command: str) -> None:
    if chain not in t.chains:
        raise BadInput(f"what-if: {command}: no chain {chain!r} in table {t.name}")


def _position(t: _Table, op: IptablesOp) -> tuple[int | None, list[str]]:
    args = list(op.args)
    if args and args[0].isdigit():
        return int(args[0]), args[1:]
    return None, args


def _run(save: _Save, op: IptablesOp, header: str) -> None:
    t = save.table(op.table, header)
    chain = op.chain or ""
    cmd = f"{op.command} {op.action} {chain}".strip()
    if op.action == "-N":
        if chain in t.chains:
            raise BadInput(f"what-if: {cmd}: chain already exists")
        t.chains[chain] = "- [0:0]"
        return
    if op.action == "-X":
        names = [chain] if chain else [c for c in t.chains if c not in BUILTIN[t.name]]
        for name in names:
            _need_chain(t, name, cmd)
            if any(name in _rule_words(r) for _, r in t.rules if "-j" in r or "-g" in r):
                raise BadInput(f"what-if: {cmd}: chain {name} is still referenced")
            del t.chains[name]
        return
    if op.action == "-F":
        t.rules = [(c, r) for c, r in t.rules if chain and c != chain]
        return
    if op.action == "-Z":
        return
    if op.action == "-E":
        _need_chain(t, chain, cmd)
        if len(op.args) != 1:
            raise BadInput(f"what-if: {cmd} needs the new name")
        new = op.args[0]
        t.chains = {(new if c == chain else c): p for c, p in t.chains.items()}
        t.rules = [(new if c == chain else c, r) for c, r in t.rules]
        return
    _need_chain(t, chain, cmd)
    if op.action == "-P":
        if chain not in BUILTIN[t.name] or len(op.args) != 1:
            raise BadInput(f"what-if: {cmd}: a policy is set on a built-in chain, to one target")
        counters = t.chains[chain].partition(" ")[2] or "[0:0]"
        t.chains[chain] = f"{op.args[0].upper()} {counters}"
        return
    pos, spec = _position(t, op)
    canon = canonical(spec, op.v6)
    indices = _chain_rules(t, chain)
    if op.action in ("-A", "-I", "-R") and not canon:
        raise BadInput(f"what-if: {cmd} needs a rule")
    counted = any(r.startswith("[") for _, r in t.rules)
    entry = (chain, ("[0:0] " if counted else "") + _spec_text(canon))
    if op.action == "-A":
        at = indices[-1] + 1 if indices else _chain_start(t, chain)
        t.rules.insert(at, entry)
    elif op.action == "-I":
        n = pos or 1
        if not 1 <= n <= len(indices) + 1:
            raise BadInput(f"what-if: {cmd}: index of insertion too big")
        at = (
            indices[n - 1]
            if n <= len(indices)
            else (indices[-1] + 1 if indices else _chain_start(t, chain))
        )
        t.rules.insert(at, entry)
    elif op.action == "-R":
        if pos is None or not 1 <= pos <= len(indices):
            raise BadInput(f"what-if: {cmd}: index of replacement too big")
        t.rules[indices[pos - 1]] = entry
    elif op.action == "-D":
        if pos is not None and not spec:
            if not 1 <= pos <= len(indices):
                raise BadInput(f"what-if: {cmd}: index of deletion too big")
            del t.rules[indices[pos - 1]]
            return
        for k in indices:
            if _rule_words(t.rules[k][1]) == canon:
                del t.rules[k]
                return
        raise BadInput(f"what-if: {cmd}: bad rule (does a matching rule exist in that chain?)")


def _chain_start(t: _Table, chain: str) -> int:
    """Where rules of an empty chain go: after the rules of the chains declared before it."""
    order = list(t.chains)
    before = set(order[: order.index(chain)])
    last = -1
    for k, (c, _) in enumerate(t.rules):
        if c in before:
            last = k
    return last + 1


# --------------------------------------------------------------------------- iptables-restore


@dataclass(frozen=True)
class RestoreOp:
    """An iptables-restore fragment; without --noflush every table it names is replaced."""

    text: str
    noflush: bool
    v6: bool
    backend: str | None = None
    kind: str = "iptables-restore"
    needs_netns: bool = True

    def apply(self, snap: Snapshot, ns: Netns | None) -> Snapshot:
        assert ns is not None
        backend = self.backend or detect_backend(self.text)
        attr, text = _ruleset_text(ns.ruleset, self.v6, backend)
        save = _Save.parse(text)
        header = _header(text, attr, self.v6)
        command = "ip6tables" if self.v6 else "iptables"
        frag = _Save.parse(self.text)
        for name, ft in frag.tables.items():
            if not self.noflush or name not in save.tables:
                t = save.tables[name] = _Table(name, head=[header])
                t.chains = {c: "ACCEPT [0:0]" for c in BUILTIN.get(name, ())}
            t = save.table(name, header)
            for chain, policy in ft.chains.items():
                if chain in BUILTIN[name]:
                    if not policy.startswith("-"):
                        t.chains[chain] = policy
                else:
                    t.chains[chain] = policy
                    t.rules = [
                        (c, r) for c, r in t.rules if c != chain
                    ]  # a declared chain is flushed
            for chain, rest in ft.rules:
                op = IptablesOp(
                    command, self.v6, backend, name, "-A", chain, tuple(_rule_words(rest))
                )
                _run(save, op, header)
        return with_netns(snap, _set_text(ns, attr, save.render()))


def parse_restore(text: str, *, noflush: bool, v6: bool, backend: str | None = None) -> RestoreOp:
    frag = _Save.parse(text)
    if not frag.tables:
        raise BadInput("what-if: an iptables-restore fragment without a *table")
    for name in frag.tables:
        if name not in BUILTIN:
            raise BadInput(f"what-if: iptables has no table {name!r}")
    return RestoreOp(text, noflush, v6, backend)


def parse_restore_command(command: str, words: list[str], read: Reader) -> RestoreOp:
    v6, backend = RESTORE[command]
    noflush = False
    path: str | None = None
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-n", "--noflush"):
            noflush = True
        elif w == "<" and i + 1 < len(words):
            path = words[i + 1]
            i += 1
        elif w.startswith("<") and len(w) > 1:
            path = w[1:]
        elif w in ("-w", "--wait", "-c", "--counters", "-v", "--verbose"):
            pass
        elif w.startswith("-"):
            raise BadInput(f"what-if: {command} {w} is not supported")
        else:
            path = w
        i += 1
    if path is None:
        raise BadInput(f"what-if: {command} needs a file (or pass the fragment itself)")
    return parse_restore(read(path), noflush=noflush, v6=v6, backend=backend)
