"""What-if: the Snapshot as it would be after a proposed change, without touching the host.

A change is what a person would type (``iptables -I DOCKER-USER ...``, ``ip link set X up``,
``sysctl -w ...``, ``nft add rule ...``, ``docker network connect NET C`` ...), optionally behind
the namespace prefix they would type too (``ip netns exec NAME``, ``nsenter -t PID -n``,
``docker exec C``, ``netns:NAME``, ``C:``). ``parse`` turns the text into a typed Change;
``apply`` returns a new Snapshot. Both are pure: a file a change names (``nft -f FILE``) is read by
the ``read`` callable the caller passes in.

One module per kind of change: iptables (commands and iptables-restore fragments), nft (commands
and ``nft -f`` files), iproute (``ip route``, ``ip rule``, ``ip link set``), sysctl, runtime
(``docker network connect``, ``docker run -p``, a listener). compare puts two Paths side by side;
fixes turns a finding's fix into changes and checks that they make the path deliver.
"""

from __future__ import annotations

from cntrace.whatif.change import Applied, Change, apply, apply_all, host_of_path, parse

__all__ = ["Applied", "Change", "apply", "apply_all", "host_of_path", "parse"]
