"""Read a namespace's netfilter rulesets as the tools print them.

Discovery calls ``read_ruleset`` for every namespace, so it skips what is not there cheaply:

- iptables-legacy: only when ``/proc/thread-self/net/ip{,6}_tables_names`` (read inside the
  namespace) lists tables; otherwise iptables-legacy-save would load modules to print nothing.
- nftables: read through libnftables with ctypes from this thread, moved into the namespace with
  setns (no process); ``nft -j list ruleset`` is the fallback when the library is missing, and
  the only reader of a namespace whose tables carry flags (``dormant``): nft 1.0.6 prints a
  table's single flag from freed memory (json.c table_flags_json), which cuts ~10% of dumps short
  and, in-process, corrupts the heap until the process aborts. The flags come from the kernel
  (NFT_MSG_GETTABLE), the JSON is checked, retried once, and otherwise an error of its own.
- iptables-nft: ``iptables-nft-save`` runs only when the nft view shows a table iptables-nft
  manages (ip/ip6 filter, nat, mangle, raw, security); its text is the view users know.
- ipset: ``ipset save`` when the tool exists and the kernel has ipsets.

A failing tool becomes an entry in ``Ruleset.errors``, never an exception.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence

from cntrace.model import Ruleset
from cntrace.netfilter import families
from cntrace.sources import nsenter
from cntrace.sources.libnftables import Libnftables, library
from cntrace.sources.netlink import decode, dumps
from cntrace.sources.netlink.proto import NFT_TABLE_FLAGS
from cntrace.sources.procs import which

TIMEOUT = 20.0
_IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}


def _read_proc(name: str) -> str:
    try:
        with open(f"/proc/thread-self/net/{name}") as f:
            return f.read()
    except OSError:
        return ""


def _run(argv: list[str], path: str) -> tuple[str | None, str | None]:
    """(stdout, None) or (None, error) for a tool run inside the namespace."""
    binary = which(argv[0])
    if binary is None:
        return None, None
    try:
        res = subprocess.run(
            nsenter.command_in(path, [binary, *argv[1:]]),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{argv[0]}: {exc}"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["failed"])[-1]
        return None, f"{argv[0]}: {last}"
    return res.stdout, None


def _nft_tables(text: str) -> set[tuple[str, str]]:
    try:
        doc = json.loads(text)
    except ValueError:
        return set()
    out: set[tuple[str, str]] = set()
    for item in doc.get("nftables", []) if isinstance(doc, dict) else []:
        t = item.get("table") if isinstance(item, dict) else None
        if isinstance(t, dict):
            out.add((str(t.get("family")), str(t.get("name"))))
    return out


def kernel_tables() -> list[tuple[str, str, int]]:
    """(family, name, flags) of this namespace's nf_tables tables, from the kernel (this thread
    is in the namespace); none when nf_tables cannot be asked."""
    try:
        with dumps.Conn.here(nf=True) as conn:
            return decode.parse_nft_tables(dumps.dump(conn, "nft_tables"))
    except OSError:
        return []


def _flag_names(flags: int) -> list[str]:
    return [name for bit, name in NFT_TABLE_FLAGS.items() if flags & bit] + (
        [f"0x{flags & ~sum(NFT_TABLE_FLAGS):x}"] if flags & ~sum(NFT_TABLE_FLAGS) else []
    )


def _with_kernel_flags(text: str, kernel: Sequence[tuple[str, str, int]]) -> str | None:
    """``text`` (nft -j list ruleset) with each table's flags as the kernel holds them, or None
    when it is not a whole JSON document (cut short)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return None
    flags = {(f, n): v for f, n, v in kernel}
    for item in items:
        body = item.get("table")
        if not isinstance(body, dict):
            continue
        key = (str(body.get("family")), str(body.get("name")))
        body.pop("flags", None)  # what nft printed is freed memory when there is one flag
        if flags.get(key):
            body["flags"] = _flag_names(flags[key])
    return json.dumps(doc)


_VERSION = re.compile(r'"version":\s*"([^"]*)"')


def flagged_ruleset(
    path: str, kernel: Sequence[tuple[str, str, int]]
) -> tuple[str | None, str | None]:
    """(nft -j list ruleset, None) or (None, error) for a namespace with flagged tables: from
    the nft binary (a cut-short dump, or nft aborting on the corrupted heap, costs one retry and
    never this process), checked, with the kernel's flags."""
    named = ", ".join(f"{f} {n} ({' '.join(_flag_names(v))})" for f, n, v in kernel if v)
    text = None
    for _attempt in range(2):
        text, err = _run(["nft", "-j", "list", "ruleset"], path)
        if text is None and err is None:
            return None, f"nft: not installed; table {named} is not read in-process"
        fixed = _with_kernel_flags(text, kernel) if text is not None else None
        if fixed is not None:
            return fixed, None
    m = _VERSION.search(text or "")
    return None, (
        f"nft: the JSON of table {named} came out cut short twice (libnftables "
        f"{m.group(1) if m else 'of this host'} prints a table's flag from freed memory); "
        "the nft ruleset is not read"
    )


def _managed(tables: set[tuple[str, str]], family: str) -> bool:
    return any(f == family and n in _IPTABLES_TABLES for f, n in tables)


def read_ruleset(
    netns_path: str, nft_tables: Sequence[tuple[str, str, int]] | None = None
) -> Ruleset:
    """Every back end's rules in the namespace at ``netns_path`` (a name or a path).

    ``nft_tables``: (family, name, flags) of its nf_tables tables, as discovery dumped them over
    netlink; read here when not given.

    nft's JSON holds the native tables in full; of the tables iptables-nft wrote (and
    iptables-nft-save printed) it keeps only the chains, whose handles tell the evaluator when
    they were registered: their rules are read from iptables-save, the view users know, and
    parsing them twice would double the cost on a 10,000-rule node.
    """
    path = nsenter.netns_path(netns_path)
    found: dict[str, str | None] = {}
    errors: list[str] = []
    lib = library()

    def probe() -> tuple[str, str, str | None, str | None, bool, list[tuple[str, str, int]]]:
        legacy4 = _read_proc("ip_tables_names")
        legacy6 = _read_proc("ip6_tables_names")
        kernel = list(nft_tables) if nft_tables is not None else kernel_tables()
        tables_json = err = None
        if lib is not None and not any(flags for _f, _n, flags in kernel):
            try:
                (tables_json,) = lib.json("list tables")
            except OSError as exc:
                err = f"libnftables: {exc}"
        has_ipset = os.path.exists("/proc/thread-self/net/ip_set") or os.path.isdir(
            "/sys/module/ip_set"
        )
        return legacy4, legacy6, tables_json, err, has_ipset, kernel

    try:
        legacy4, legacy6, tables_json, nft_err, has_ipset, kernel = nsenter.run_in(path, probe)
    except OSError as exc:
        return Ruleset(errors=(f"cannot enter {netns_path}: {exc}",))
    if nft_err:
        errors.append(nft_err)
    flagged = [t for t in kernel if t[2]]
    use_lib = lib is not None and not nft_err and not flagged
    if use_lib:
        tables = _nft_tables(tables_json or "")
    elif flagged:
        full, err = flagged_ruleset(path, kernel)
        if err:
            errors.append(err)
        tables = {(f, n) for f, n, _flags in kernel}
    else:
        full, err = _run(["nft", "-j", "list", "ruleset"], path)
        if err:
            errors.append(err)
        tables = _nft_tables(full) if full else set()
    printed: set[tuple[str, str]] = set()
    for key, argv, present in (
        ("iptables_legacy", ["iptables-legacy-save", "-c"], bool(legacy4.strip())),
        ("ip6tables_legacy", ["ip6tables-legacy-save", "-c"], bool(legacy6.strip())),
        ("iptables_nft", ["iptables-nft-save", "-c"], _managed(tables, "ip")),
        ("ip6tables_nft", ["ip6tables-nft-save", "-c"], _managed(tables, "ip6")),
    ):
        if not present:
            continue
        text, err = _run(argv, path)
        if err:
            errors.append(err)
        elif text and any(ln.startswith("*") for ln in text.splitlines()):
            found[key] = text
            if key.endswith("_nft"):
                fam = "ip6" if key.startswith("ip6") else "ip"
                printed |= {(fam, ln[1:].strip()) for ln in text.splitlines() if ln[:1] == "*"}
    if tables:
        if use_lib and lib is not None:
            try:
                found["nft_json"] = nsenter.run_in(
                    path, _nft_view, lib, tables_json or "", tables, printed
                )
            except OSError as exc:
                errors.append(f"libnftables: {exc}")
        else:
            found["nft_json"] = full
    if found.get("nft_json") and _HOOK_ON_DEVICE.search(found["nft_json"] or ""):
        found["nft_json"] = _chain_devices(found["nft_json"] or "", path, lib if use_lib else None)
    if has_ipset and which("ipset"):
        text, err = _run(["ipset", "save"], path)
        if err:
            errors.append(err)
        elif text and text.strip():
            found["ipsets"] = text
    state: tuple[tuple[str, str], ...] = ()
    if any(k in text for k in _STATEFUL for text in found.values() if text):
        try:
            state = nsenter.run_in(path, kernel_state, found)
        except OSError as exc:
            errors.append(f"stateful match state: {exc}")
    return Ruleset(**found, errors=tuple(errors), kernel_state=state)


_STATEFUL = ("-m recent", "-m connlimit", '"ct count"', "-m hashlimit")
_RECENT_NAME = re.compile(r"-m recent\b[^\n]*?--name (\S+)")
_HASHLIMIT_NAME = re.compile(r"-m hashlimit\b[^\n]*?--hashlimit-name (\S+)")


def kernel_state(found: dict[str, str | None]) -> tuple[tuple[str, str], ...]:
    """What the stateful matches of ``found`` read, from inside the namespace (this thread is
    in it): the xt_recent lists and hashlimit tables they name, the conntrack table for
    connlimit and ct count, and the kernel's clock for ``recent --seconds`` and hashlimit's
    byte buckets. Nothing when no rule uses them."""
    texts = [t for k, t in found.items() if t and k != "ipsets"]
    names: set[str] = set()
    buckets: set[str] = set()
    for text in texts:
        for line in text.splitlines():
            if "-m recent" in line:
                m = _RECENT_NAME.search(line)
                names.add(m.group(1) if m else "DEFAULT")
            if "-m hashlimit" in line and (h := _HASHLIMIT_NAME.search(line)):
                buckets.add(h.group(1))
    out = [(f"xt_recent/{n}", _read_proc(f"xt_recent/{n}")) for n in sorted(names)]
    for name in sorted(buckets):  # a table exists for each family a rule uses the name in
        for where in (f"ipt_hashlimit/{name}", f"ip6t_hashlimit/{name}"):
            if os.path.exists(f"/proc/thread-self/net/{where}"):
                out.append((where, _read_proc(where)))
    if any("-m connlimit" in t or '"ct count"' in t for t in texts):
        out.append(("nf_conntrack", _read_proc("nf_conntrack")))
    if names or buckets:
        clock = _jiffies()
        if clock:
            out.append(("jiffies", clock))
    return tuple(out)


def _jiffies() -> str:
    """ "NOW HZ": jiffies from /proc/timer_list; HZ from it and the uptime, since a 64-bit
    kernel starts at INITIAL_JIFFIES = 2**32 - 300 * HZ."""
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        with open("/proc/timer_list") as f:
            for n, line in enumerate(f):
                if line.startswith("jiffies:"):
                    now = int(line.split()[1])
                    break
                if n > 20000:
                    return ""
            else:
                return ""
    except (OSError, ValueError, IndexError):
        return ""
    if uptime <= 300:
        return ""
    raw = (now - 2**32) / (uptime - 300)
    hz = min((100, 250, 300, 1000), key=lambda h: abs(h - raw))
    return f"{now} {hz}"


_HOOK_ON_DEVICE = re.compile(r'"hook":\s*"(?:ingress|egress)"')


def _chain_devices(nft_json: str, path: str, lib: Libnftables | None) -> str:
    """nft 1.0.6 leaves the devices of ingress/egress chains out of its JSON: take them from
    ``nft list chains`` text (families.with_devices), so netdev chains can be evaluated."""
    text: str | None
    if lib is not None:
        try:
            text = nsenter.run_in(path, lambda: lib.run("list chains")[0][1])
        except OSError:
            return nft_json
    else:
        text, _ = _run(["nft", "list", "chains"], path)
    return families.with_devices(nft_json, text) if text else nft_json


def _nft_view(
    lib: Libnftables, tables_json: str, tables: set[tuple[str, str]], skip: set[tuple[str, str]]
) -> str:
    """One `nft -j` document: every native table in full, iptables-nft's tables as chains only."""
    if not skip:
        (text,) = lib.json("list ruleset")
        return text
    native = sorted(tables - skip)
    outputs = lib.json("list chains", *(f"list table {f} {n}" for f, n in native))
    items: list[object] = []
    seen_tables: set[tuple[str, str]] = set()
    table_items = {}
    for item in json.loads(tables_json).get("nftables", []):
        t = item.get("table") if isinstance(item, dict) else None
        if isinstance(t, dict):
            table_items[(str(t.get("family")), str(t.get("name")))] = item
    for i, text in enumerate(outputs):
        doc = json.loads(text) if text.strip() else {"nftables": []}
        for item in doc.get("nftables", []):
            if not isinstance(item, dict):
                continue
            if "metainfo" in item:
                if not items:
                    items.append(item)
                continue
            body = next(iter(item.values()))
            key = (str(body.get("family")), str(body.get("table", body.get("name"))))
            if i == 0:  # `list chains`: keep the chains of the skipped tables (and their tables)
                if key not in skip or "chain" not in item:
                    continue
                if key not in seen_tables:
                    items.append(
                        table_items.get(key, {"table": {"family": key[0], "name": key[1]}})
                    )
                    seen_tables.add(key)
            items.append(item)
    return json.dumps({"nftables": items})
