"""Every number netlink.proto names is the one pyroute2's nla_maps give the same kernel name.

pyroute2 (a test dependency only) declares each attribute space as an ``nla_map``: a tuple of
(name, type) whose position is the attribute number, or of (number, name, type). proto's class
``IFLA_BRPORT`` with attribute ``ISOLATED`` is the kernel's IFLA_BRPORT_ISOLATED, and so on.
"""

from __future__ import annotations

import importlib
import inspect

import pyroute2.netlink as pr_netlink
import pyroute2.netlink.rtnl as pr_rtnl
import pytest

from cntrace.sources.netlink import proto

MODULES = (
    "pyroute2.netlink.rtnl.ifinfmsg",
    "pyroute2.netlink.rtnl.ifinfmsg.plugins.vxlan",
    "pyroute2.netlink.rtnl.ifaddrmsg",
    "pyroute2.netlink.rtnl.rtmsg",
    "pyroute2.netlink.rtnl.fibmsg",
    "pyroute2.netlink.rtnl.ndmsg",
    "pyroute2.netlink.rtnl.nsidmsg",
    "pyroute2.netlink.rtnl.tcmsg",
    "pyroute2.netlink.rtnl.tcmsg.sched_bpf",
    "pyroute2.netlink.nfnetlink.nftsocket",
)
# Names pyroute2 does not map (it decodes IFLA_AF_SPEC's AF_INET as a bare struct, has no
# RTM_GETNETCONF message and stops cls_bpf's options at TCA_BPF_FLAGS): checked by the decoders'
# own tests and the differential test instead.
NOT_IN_PYROUTE2 = {
    "IFLA_INET_CONF",
    "NETCONFA_IFINDEX",
    "NETCONFA_FORWARDING",
    "NETCONFA_RP_FILTER",
    "NETCONFA_PROXY_NEIGH",
    "TCA_BPF_ID",
}


def _pyroute2_numbers() -> dict[str, set[int]]:
    numbers: dict[str, set[int]] = {}
    seen: set[int] = set()

    def walk(cls: type) -> None:
        if id(cls) in seen:
            return
        seen.add(id(cls))
        nla_map = vars(cls).get("nla_map")
        if isinstance(nla_map, tuple) and nla_map:
            explicit = isinstance(nla_map[0][0], int)
            for i, item in enumerate(nla_map):
                num, name = (item[0], item[1]) if explicit else (i, item[0])
                numbers.setdefault(name, set()).add(num)
        for value in vars(cls).values():
            if inspect.isclass(value):
                walk(value)

    for name in MODULES:
        for value in vars(importlib.import_module(name)).values():
            if inspect.isclass(value):
                walk(value)
    return numbers


def _spaces() -> dict[str, int]:
    """Kernel name -> number for every attribute space class in proto."""
    out: dict[str, int] = {}
    for cname, cls in vars(proto).items():
        if not inspect.isclass(cls) or cls.__module__ != proto.__name__:
            continue
        if issubclass(cls, Exception) or cname in ("RTM", "IPV4_DEVCONF"):
            continue
        for attr, value in vars(cls).items():
            if not attr.startswith("_"):
                out[f"{cname}_{attr}"] = value
    return out


NUMBERS = _pyroute2_numbers()
SPACES = _spaces()


@pytest.mark.parametrize("name", sorted(set(SPACES) - NOT_IN_PYROUTE2))
def test_attribute_numbers(name: str) -> None:
    assert SPACES[name] in NUMBERS.get(name, set()), (name, SPACES[name], NUMBERS.get(name))


def test_unmapped_names_are_exactly_the_known_ones() -> None:
    """A new constant pyroute2 lacks must be added here on purpose, not go unchecked."""
    assert {n for n in SPACES if n not in NUMBERS} == NOT_IN_PYROUTE2


def test_message_types_and_flags() -> None:
    for attr, value in vars(proto.RTM).items():
        if not attr.startswith("_"):
            assert getattr(pr_rtnl, f"RTM_{attr}") == value, attr
    for name in ("NLM_F_REQUEST", "NLM_F_ACK", "NLM_F_EXCL", "NLM_F_CREATE", "NLM_F_DUMP"):
        assert getattr(pr_netlink, name) == getattr(proto, name), name
    for name in ("NLMSG_ERROR", "NLMSG_DONE", "NETLINK_ROUTE", "NETLINK_SOCK_DIAG"):
        assert getattr(pr_netlink, name) == getattr(proto, name), name
    assert pr_netlink.NETLINK_NETFILTER == proto.NETLINK_NETFILTER


def test_ipv4_devconf_indexes() -> None:
    """IFLA_INET_CONF is struct ipv4_devconf's u32 array; pyroute2 names its fields in order."""
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    fields = ifinfmsg.af_spec_inet.inet.field_names
    for attr in ("FORWARDING", "RP_FILTER", "ROUTE_LOCALNET"):
        assert fields.index(attr.lower()) == getattr(proto.IPV4_DEVCONF, attr), attr
