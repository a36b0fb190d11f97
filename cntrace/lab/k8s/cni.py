"""Running the reference CNI plugins the way a CRI runtime (containerd's CRI, via libcni) does.

For ADD, each plugin of the network configuration list runs in order with the CNI_* variables
(CNI_COMMAND, CNI_CONTAINERID = the sandbox id, CNI_NETNS = the pod's namespace, CNI_IFNAME=eth0,
CNI_PATH) and its own config on stdin: the list's ``cniVersion`` and ``name``, the plugin's keys,
``runtimeConfig`` for the capabilities it declares (portMappings for portmap) and the previous
plugin's result as ``prevResult``. DEL runs the list in reverse with the cached ADD result, as
libcni does. The plugins run inside the node's network namespace: they create the host side of
the pod's link (bridge or ptp veth, iptables rules) in the namespace they are run in. CNI's
``loopback`` plugin brings the pod's lo up first, as containerd does.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from cntrace.errors import CntraceError
from cntrace.sources import nsenter


class CniError(CntraceError):
    """A plugin failed; the message carries its CNI error (code, msg, details)."""


def _env(command: str, sandbox: str, netns_path: str, cni_path: str, ifname: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": sandbox,
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": ifname,
        "CNI_PATH": cni_path,
    }


def plugin_config(
    conflist: dict[str, Any],
    plugin: dict[str, Any],
    runtime: dict[str, Any],
    prev: dict[str, Any] | None,
) -> dict[str, Any]:
    """One plugin's stdin config, built from the list as libcni builds it."""
    conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}
    caps = plugin.get("capabilities") or {}
    wanted = {k: v for k, v in runtime.items() if caps.get(k)}
    if wanted:
        conf["runtimeConfig"] = wanted
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def exec_plugin(
    node_netns: str,
    plugin_type: str,
    conf: dict[str, Any],
    env: dict[str, str],
    cni_path: str,
) -> dict[str, Any] | None:
    """Run one plugin binary in ``node_netns``; its JSON result (None for DEL)."""
    binary = os.path.join(cni_path, plugin_type)
    if not os.access(binary, os.X_OK):
        raise CniError(f"CNI plugin {binary} is missing (install containernetworking-plugins)")
    res = subprocess.run(
        nsenter.command_in(node_netns, [binary]),
        input=json.dumps(conf),
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    if res.returncode != 0:
        detail = res.stdout.strip() or res.stderr.strip()
        try:
            err = json.loads(detail)
            detail = f"{err.get('msg')}" + (f": {err['details']}" if err.get("details") else "")
        except ValueError:
            pass
        raise CniError(f"CNI {env['CNI_COMMAND']} {plugin_type}: {detail}")
    if env["CNI_COMMAND"] == "DEL" or not res.stdout.strip():
        return None
    result: dict[str, Any] = json.loads(res.stdout)
    return result


def add(
    node_netns: str,
    conflist: dict[str, Any],
    sandbox: str,
    netns_path: str,
    runtime: dict[str, Any],
    cni_path: str,
    ifname: str = "eth0",
) -> dict[str, Any]:
    """CNI ADD of the whole list for one pod sandbox; the final result."""
    loopback = {"cniVersion": conflist["cniVersion"], "name": "cni-loopback", "type": "loopback"}
    exec_plugin(
        node_netns, "loopback", loopback, _env("ADD", sandbox, netns_path, cni_path, "lo"), cni_path
    )
    prev: dict[str, Any] | None = None
    env = _env("ADD", sandbox, netns_path, cni_path, ifname)
    for plugin in conflist["plugins"]:
        conf = plugin_config(conflist, plugin, runtime, prev)
        prev = exec_plugin(node_netns, plugin["type"], conf, env, cni_path) or prev
    assert prev is not None
    return prev


def delete(
    node_netns: str,
    conflist: dict[str, Any],
    sandbox: str,
    netns_path: str,
    runtime: dict[str, Any],
    cached: dict[str, Any] | None,
    cni_path: str,
    ifname: str = "eth0",
) -> None:
    """CNI DEL of the list in reverse order (with the ADD result as prevResult), then loopback."""
    env = _env("DEL", sandbox, netns_path, cni_path, ifname)
    errors = []
    for plugin in reversed(conflist["plugins"]):
        conf = plugin_config(conflist, plugin, runtime, cached)
        try:
            exec_plugin(node_netns, plugin["type"], conf, env, cni_path)
        except CniError as e:  # keep going: DEL must release everything it can
            errors.append(str(e))
    if errors:
        raise CniError("; ".join(errors))


def pod_address(result: dict[str, Any], ifname: str = "eth0") -> tuple[str, str | None]:
    """(the pod's IPv4 address, the host-side interface name) from a CNI result."""
    ifaces = result.get("interfaces") or []
    host_if = None
    for iface in ifaces:
        if not iface.get("sandbox") and iface.get("name", "").startswith("veth"):
            host_if = iface["name"]
    for ip in result.get("ips") or []:
        addr = str(ip.get("address", ""))
        if ":" not in addr.split("/", maxsplit=1)[0]:
            return addr.split("/", maxsplit=1)[0], host_if
    raise CniError(f"CNI result has no IPv4 address for {ifname}: {json.dumps(result)[:200]}")
