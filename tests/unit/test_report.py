"""`cntrace report`: the document, its schema and replay; `--redact` on every lab fault and on the
recorded Docker and Kubernetes snapshots replays to the same answers and holds none of the
original addresses, MACs or names."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from clirun import run
from labcases import CASES, IDS, LabCase

from cntrace import redact
from cntrace.errors import BadInput
from cntrace.model import Snapshot
from cntrace.path import predict
from cntrace.sources import recorded

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "fixtures" / "snapshots" / "lab"
DISCOVERY = REPO / "fixtures" / "discovery"
SCHEMA = json.loads((REPO / "docs" / "schemas" / "report.schema.json").read_text())
PATH_SCHEMA = json.loads((REPO / "docs" / "schemas" / "path.schema.json").read_text())
_IP = re.compile(r"[0-9A-Fa-f.:]+")


def cntrace(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (a subprocess per case would triple the run time)."""
    return run(*args, inproc=True)


def originals(snap: Snapshot) -> tuple[set[str], set[str], set[str]]:
    """What identifies the site: its addresses (beyond loopback and the like), MACs, names."""
    addrs: set[str] = set()
    macs: set[str] = set()
    for ns in snap.netns:
        for lk in ns.links:
            if lk.mac and lk.mac not in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"):
                macs.add(lk.mac.lower())
            for a in lk.addresses:
                ip = ipaddress.ip_address(a.address)
                if not (ip.is_loopback or ip.is_unspecified):
                    addrs.add(a.address)
    names = {c.name for c in snap.containers} | {ns.name for ns in snap.netns if ns.name}
    names |= {n.name for c in snap.containers for n in c.networks} - redact.VOCABULARY
    names |= {c.image for c in snap.containers if c.image}
    names |= {snap.hostname} if snap.hostname else set()
    return addrs, macs, {n for n in names if n}


def strings(value: object, key: str = "") -> list[str]:
    """Every string a document holds: values, and the keys that are data (not field names)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        out = [k for k in value if key in ("sysctls", "hosts", "labels")]
        for k, v in value.items():
            out += strings(v, k)
        return out
    if isinstance(value, list):
        return [s for v in value for s in strings(v, key)]
    return []


def assert_clean(doc: object, snap: Snapshot) -> None:
    text = "\n".join(strings(doc))
    addrs, macs, names = originals(snap)
    tokens = set(_IP.findall(text))
    assert not addrs & tokens, sorted(addrs & tokens)[:5]
    low = text.lower()
    assert not [m for m in macs if m in low]
    # A pseudonym address may hold a group that spells a name (``db``): look for names in the
    # words, not inside the addresses.
    words = _ADDR.sub(lambda m: " " if _is_address(m.group(0)) else m.group(0), text)
    for name in names:
        assert not re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", words), name


_ADDR = re.compile(r"(?<![\w:.])[0-9A-Fa-f.:]+(?:/\d+)?(?![\w:])")
_MAC = re.compile(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}", re.I)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return bool(_MAC.fullmatch(text))
    return True


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_redacted_report_of_each_lab_case_replays_the_same(case: LabCase, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["report", "--snapshot", str(LAB / f"{case.state}.json"), case.src, case.recorded_dst]
    res = cntrace(
        *args, *case.argv, "--redact", "-o", str(out), "--redact-map", str(tmp_path / "m")
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    jsonschema.validate(doc["path"], PATH_SCHEMA)
    assert doc["redacted"] is True
    snap = recorded.load(str(LAB / f"{case.state}.json"))
    assert_clean(doc, snap)
    argv = doc["replay"]["argv"][1:]
    assert argv[2] == "report.json"
    argv[2] = str(out)
    replay = cntrace(*argv, "--json")
    assert replay.returncode == (0 if case.status == "delivered" else 1), replay.stderr
    again = json.loads(replay.stdout)
    original = predict(snap, case.src, case.recorded_dst, **case.options)  # type: ignore[arg-type]
    assert again["verdict"]["status"] == original.verdict.status == case.status
    assert [f["code"] for f in again["findings"]] == [f.code for f in original.findings]
    assert [h["kind"] for h in again["hops"]] == [h.kind for h in original.hops]
    # The map translates the answer back.
    mapping = json.loads((tmp_path / "m").read_text())
    back = redact.reverse(again["verdict"]["summary"], mapping)
    assert back == original.verdict.summary


@pytest.mark.parametrize("name", ["docker-iptables", "docker-nftables", "k8s-node"])
def test_redacted_recorded_runtime_snapshots_keep_every_answer(name: str) -> None:
    """Every endpoint pair of the golden set gives the same verdict, hop count and codes."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_golden import cases

    snap = recorded.load(str(DISCOVERY / f"{name}.json"))
    pairs = cases(snap)
    red = redact.redact(snap, [[a, b] for a, b, _ in pairs], key=b"test")
    assert_clean([red.documents, _plain(red.snapshot)], snap)
    for (src, dst, opts), (rsrc, rdst) in zip(pairs, red.documents[0], strict=True):
        try:
            a = predict(snap, src, dst, **opts)  # type: ignore[arg-type]
        except BadInput:
            with pytest.raises(BadInput):
                predict(red.snapshot, rsrc, rdst, **opts)  # type: ignore[arg-type]
            continue
        b = predict(red.snapshot, rsrc, rdst, **opts)  # type: ignore[arg-type]
        assert (b.verdict.status, b.verdict.at_hop, len(b.hops)) == (
            a.verdict.status, a.verdict.at_hop, len(a.hops)
        ), (src, dst)  # fmt: skip
        assert [f.code for f in b.findings] == [f.code for f in a.findings], (src, dst)


def _plain(snap: Snapshot) -> object:
    from cntrace import codec

    return codec.to_plain(snap)


def test_the_leak_check_finds_an_unredacted_report() -> None:
    snap = recorded.load(str(LAB / "healthy.json"))
    with pytest.raises(AssertionError):
        assert_clean(_plain(snap), snap)


def test_subnets_and_gateways_keep_their_relationships() -> None:
    snap = recorded.load(str(LAB / "healthy.json"))
    red = redact.redact(snap, key=b"k").snapshot
    for ns, rns in zip(snap.netns, red.netns, strict=True):
        for lk, rlk in zip(ns.links, rns.links, strict=True):
            for a, ra in zip(lk.addresses, rlk.addresses, strict=True):
                assert a.prefixlen == ra.prefixlen
        for r, rr in zip(ns.routes, rns.routes, strict=True):
            if r.gateway and r.family == 4:
                gw = ipaddress.ip_address(rr.gateway or "")
                on_link = [ra for lk in rns.links for ra in lk.addresses if ra.family == 4]
                assert any(gw in ipaddress.ip_network(ra.cidr, strict=False) for ra in on_link)


def test_a_name_spelled_like_an_address_group_leaves_addresses_whole() -> None:
    """A container called ``fe80`` (the kept first group of every link-local pseudonym) is
    renamed, and every address stays an address that replays."""
    import dataclasses

    snap = recorded.load(str(LAB / "healthy.json"))
    ctrs = list(snap.containers)
    ctrs[0] = dataclasses.replace(ctrs[0], name="fe80")
    snap = dataclasses.replace(snap, containers=tuple(ctrs))
    red = redact.redact(snap, key=b"k")
    kept = [a.address for ns in red.snapshot.netns for lk in ns.links for a in lk.addresses]
    assert any(a.startswith("fe80:") for a in kept)
    for a in kept:
        ipaddress.ip_address(a)
    assert red.mapping["names"]["fe80"].startswith("ctr-")
    assert red.snapshot.containers[0].name == red.mapping["names"]["fe80"]


def test_report_without_redaction_keeps_everything_and_the_path(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = cntrace("report", "--snapshot", str(LAB / "forward-drop.json"), "client",
                  "203.0.113.10:80", "-o", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["redacted"] is False and doc["replay"]["argv"][3] == "r.json"
    assert recorded.load(str(out)) == recorded.load(str(LAB / "forward-drop.json"))
    assert any("fix for forward-drop checked" in n for n in doc["path"]["notes"])


def test_printed_fixes_are_checked_and_the_json_stays_the_prediction() -> None:
    args = ["path", "--snapshot", str(LAB / "forward-drop.json"), "client", "203.0.113.10:80"]
    doc = json.loads(cntrace(*args, "--json").stdout)
    assert doc["notes"] == []
    text = cntrace(*args).stdout
    assert "fix for forward-drop checked as a what-if" in " ".join(text.split())


def test_report_bad_input_is_one_line() -> None:
    res = cntrace("report", "--snapshot", str(LAB / "healthy.json"), "nosuch", "web:80")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    res = cntrace(
        "report", "--snapshot", str(LAB / "healthy.json"), "client", "web", "--redact-map", "x"
    )
    assert res.returncode == 2 and "--redact" in res.stderr
