"""Read a namespace's netfilter rulesets as the tools print them (a minimal reader).

Discovery needs the raw text of each back end so a Snapshot carries exactly what the host said;
parsing is the netfilter package's business. The tools are the only complete readers of their
back ends (iptables-legacy has no netlink dump; nft's JSON includes sets and maps), so each runs
once with its process moved into the namespace. The live reader calls this only for namespaces
that have tables at all.
"""

from __future__ import annotations

import shutil
import subprocess

from cntrace.model import Ruleset
from cntrace.sources import nsenter

TIMEOUT = 20.0

_TOOLS = (
    ("iptables_legacy", ("iptables-legacy-save",)),
    ("ip6tables_legacy", ("ip6tables-legacy-save",)),
    ("iptables_nft", ("iptables-nft-save",)),
    ("ip6tables_nft", ("ip6tables-nft-save",)),
    ("nft_json", ("nft", "-j", "list", "ruleset")),
)


def _legacy_present(path: str, v6: bool) -> bool:
    name = "ip6_tables_names" if v6 else "ip_tables_names"

    def check() -> bool:
        try:
            with open(f"/proc/thread-self/net/{name}") as f:
                return bool(f.read().strip())
        except OSError:
            return False

    return nsenter.run_in(path, check)


def read_ruleset(netns_path: str) -> Ruleset:
    """Every back end's rules in the namespace at ``netns_path``; a failing tool is an error
    entry, not an exception."""
    path = nsenter.netns_path(netns_path)
    found: dict[str, str | None] = {}
    errors: list[str] = []
    for key, argv in _TOOLS:
        if key.endswith("_legacy") and not _legacy_present(path, key.startswith("ip6")):
            continue  # iptables-legacy-save would load modules to print nothing
        binary = shutil.which(argv[0])
        if binary is None:
            continue
        try:
            res = subprocess.run(
                [binary, *argv[1:]],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                preexec_fn=nsenter.preexec_enter(path),
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{argv[0]}: {exc}")
            continue
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["failed"])[-1]
            errors.append(f"{argv[0]}: {last}")
            continue
        text = res.stdout
        if key != "nft_json" and not any(ln.startswith("*") for ln in text.splitlines()):
            continue  # no tables for this back end
        found[key] = text
    return Ruleset(**found, errors=tuple(errors))
