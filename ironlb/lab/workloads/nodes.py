"""The lab's Node objects: one per net-lab node, as a kubelet would register it.

:func:`node_object` is pure (from :func:`ironlb.lab.netlab.plan.pod_network`):
name ``nodeN`` (the lab's role name, what speakers run with as their node
name), labels ``kubernetes.io/hostname``, ``kubernetes.io/os`` and
``kubernetes.io/arch`` (well-known labels the kubelet sets),
``spec.podCIDR``/``podCIDRs`` (IPv4 first, as the node IPAM controller
writes them), ``status.addresses`` ``InternalIP`` (both families) and
``Hostname``, and a ``Ready`` condition. :func:`register_nodes` creates the
missing ones and patches existing ones back to that shape without touching
what users changed elsewhere (``kubectl label``/``cordon`` survive a
re-registration): it is idempotent.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ironlb.lab.netlab.plan import pod_network
from ironlb.lab.workloads.api import ApiError, WorkloadApi
from ironlb.lab.workloads.podstate import Obj

if TYPE_CHECKING:
    from ironlb.lab.netlab import Lab

HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}
_NODE_NETNS = re.compile(r"^(?P<prefix>[a-z0-9]+)-node(?P<index>[0-9]+)$")


def node_object(index: int) -> Obj:
    """The Node body of lab node ``index`` (1-based). Raises ``LabError`` outside 1..89."""
    net = pod_network(index)
    machine = platform.machine()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": net.node,
            "labels": {
                HOSTNAME_LABEL: net.node,
                OS_LABEL: "linux",
                ARCH_LABEL: _ARCH.get(machine, machine or "amd64"),
            },
        },
        "spec": {"podCIDR": str(net.ipv4), "podCIDRs": [str(net.ipv4), str(net.ipv6)]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": str(net.node_ipv4)},
                {"type": "InternalIP", "address": str(net.node_ipv6)},
                {"type": "Hostname", "address": net.node},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "lab node is ready",
                }
            ],
            # what `kubectl get nodes` shows as VERSION (the lab kubelet's, not a real one)
            "nodeInfo": {
                "kubeletVersion": "v1.32.0-ironlb-lab",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "lab://processes",
            },
        },
    }


def lab_node_indexes(lab: Lab) -> list[int]:
    """The node indexes (``node2`` -> 2) of a net lab."""
    return [int(host.name.removeprefix("node")) for host in lab.nodes]


def netns_node_indexes(prefix: str, netns_dir: str = "/run/netns") -> list[int]:
    """Node indexes of a running net lab found by its namespaces ``<prefix>-nodeN``."""
    try:
        names = os.listdir(netns_dir)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = _NODE_NETNS.match(name)
        if match and match["prefix"] == prefix:
            found.append(int(match["index"]))
    return sorted(found)


async def register_nodes(api: WorkloadApi, indexes: Iterable[int]) -> list[str]:
    """Create or refresh the Nodes of lab nodes ``indexes``; returns their names.

    An existing Node keeps its other labels, ``spec.unschedulable`` and
    anything else; its lab labels, pod CIDRs, addresses and Ready condition
    are set again. Raises :class:`~ironlb.lab.workloads.api.ApiError`.
    """
    names = []
    for index in indexes:
        body = node_object(index)
        name = body["metadata"]["name"]
        names.append(name)
        try:
            await api.create("/api/v1/nodes", body)
            continue
        except ApiError as exc:
            if exc.status != 409:
                raise
        path = f"/api/v1/nodes/{name}"
        await api.patch(
            path, {"metadata": {"labels": body["metadata"]["labels"]}, "spec": body["spec"]}
        )
        await api.patch(f"{path}/status", {"status": body["status"]})
    return names
