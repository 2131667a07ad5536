"""The speaker pod's ``arp-sysctls`` init container command, run in a lab node's namespace.

The chart's init container raises ``net.ipv4.conf.all.arp_ignore`` /
``arp_announce`` to the speaker's minimums (1 / 2, dataplane/vip.py
ARP_SYSCTL_MINIMUMS) and never lowers a stricter value an admin set. Its
command is run exactly as rendered, with the node namespace's own sysctls.
"""

from __future__ import annotations

import pytest

from ironlb.dataplane.vip import ARP_SYSCTL_MINIMUMS
from ironlb.lab.netlab import Lab, LabHost
from tests.chart.chart_support import one, render
from tests.net.conftest import LabFactory

pytestmark = pytest.mark.root

CONF = "/proc/sys/net/ipv4/conf/all"


def init_command() -> list[str]:
    ds = one(render(), "DaemonSet", "ironlb-speaker")
    (init,) = ds["spec"]["template"]["spec"]["initContainers"]
    command: list[str] = init["command"]
    return command


def sysctls(lab: Lab, node: LabHost) -> dict[str, int]:
    return {
        k: int(lab.run(node, "cat", f"{CONF}/{k}").stdout) for k in ("arp_ignore", "arp_announce")
    }


def put(lab: Lab, node: LabHost, **values: int) -> None:
    for key, value in values.items():
        lab.run(node, "sh", "-c", f"echo {value} > {CONF}/{key}")


def test_init_container_raises_arp_sysctls_and_never_lowers(lab_factory: LabFactory) -> None:
    lab = lab_factory(nodes=1, backends=0)
    node = lab.nodes[0]
    command = init_command()

    put(lab, node, arp_ignore=0, arp_announce=0)
    lab.run(node, *command)
    assert sysctls(lab, node) == dict(ARP_SYSCTL_MINIMUMS)

    put(lab, node, arp_ignore=2, arp_announce=2)
    lab.run(node, *command)
    assert sysctls(lab, node) == {"arp_ignore": 2, "arp_announce": 2}
