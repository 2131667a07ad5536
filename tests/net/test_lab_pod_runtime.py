"""Pods added to and removed from a running lab (what the lab kubelet builds on)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ironlb.lab.netlab import Lab, LabError
from ironlb.lab.netlab.nsutil import list_netns

pytestmark = pytest.mark.root

LabFactory = Callable[..., Lab]


def test_a_pod_added_at_run_time_is_routed_like_a_static_one(lab_factory: LabFactory) -> None:
    lab = lab_factory(nodes=2, backends=0, pod_network=True)
    assert lab.pods == []
    pod = lab.add_pod("node2", 3)
    assert (pod.name, pod.netns, str(pod.ipv4), str(pod.ipv6)) == (
        "node2-pod3",
        f"{lab.prefix}-node2-pod3",
        "198.19.2.13",
        "fd00:198:19:2::13",
    )
    assert lab.pods_on("node2") == [pod]
    for dst in (str(pod.ipv4), str(pod.ipv6)):
        for src in (lab.client, lab.host("node1")):
            res = lab.run(src, "ping", "-c", "1", "-W", "3", dst, check=False)
            assert res.returncode == 0, (src.name, dst, res.stdout, res.stderr)
    with pytest.raises(LabError, match="already exists"):
        lab.add_pod("node2", 3)
    with pytest.raises(LabError, match="pod index must be"):
        lab.add_pod("node2", 0)
    with pytest.raises(KeyError, match="no lab node"):
        lab.add_pod("client", 1)
    assert pod.netns in list_netns(lab.prefix)

    lab.remove_pod(pod)
    assert pod.netns not in list_netns(lab.prefix)
    links = json.loads(lab.run(lab.host("node2"), "ip", "-j", "link", "show").stdout)
    assert "p3" not in {link["ifname"] for link in links}
    lab.remove_pod(pod)  # already gone: no-op
    # The same index again at once (the veth pair went with the pod).
    again = lab.add_pod("node2", 3)
    res = lab.run(lab.client, "ping", "-c", "1", "-W", "3", str(again.ipv4), check=False)
    assert res.returncode == 0, res.stderr


def test_a_lab_without_pod_networks_refuses_run_time_pods(lab_factory: LabFactory) -> None:
    lab = lab_factory(nodes=1, backends=0)
    with pytest.raises(KeyError, match="has no pods"):
        lab.add_pod("node1", 1)
    assert list_netns(lab.prefix) == sorted(
        [lab.switch_netns, lab.client.netns, lab.nodes[0].netns]
    )
