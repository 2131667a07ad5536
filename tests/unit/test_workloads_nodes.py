"""Lab Node objects, finding a running net lab's nodes, kubeconfig reading and the
write expectations of the lab controllers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from ironlb.lab.netlab.plan import LabError
from ironlb.lab.workloads.api import ApiError, ClientConfig, WorkloadApi
from ironlb.lab.workloads.nodes import netns_node_indexes, node_object
from ironlb.lab.workloads.runner import EXPECTATION_TTL, Expectations, Informer, resolve_config


def test_node_object_follows_the_net_lab_plan() -> None:
    node = node_object(3)
    assert node["metadata"]["name"] == "node3"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node3"
    assert node["spec"] == {
        "podCIDR": "198.19.3.0/24",
        "podCIDRs": ["198.19.3.0/24", "fd00:198:19:3::/64"],
    }
    assert node["status"]["addresses"] == [
        {"type": "InternalIP", "address": "198.18.0.13"},
        {"type": "InternalIP", "address": "fd00:198:18::13"},
        {"type": "Hostname", "address": "node3"},
    ]


@pytest.mark.parametrize("index", [0, 90])
def test_node_object_refuses_indexes_outside_the_plan(index: int) -> None:
    with pytest.raises(LabError, match=r"node index must be 1\.\.89"):
        node_object(index)


def test_netns_node_indexes_picks_this_prefix_nodes_only(tmp_path: Path) -> None:
    for name in (
        "demo-node1",
        "demo-node12",
        "demo-client",
        "demo-node2-pod1",
        "other-node3",
        "demo-nodex",
    ):
        (tmp_path / name).touch()
    assert netns_node_indexes("demo", str(tmp_path)) == [1, 12]
    assert netns_node_indexes("demo", str(tmp_path / "missing")) == []


def test_client_config_from_kubeconfig_current_context(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text(
        """
current-context: b
contexts:
- {name: a, context: {cluster: one, user: u}}
- {name: b, context: {cluster: two, user: u}}
clusters:
- {name: one, cluster: {server: "http://127.0.0.1:1"}}
- {name: two, cluster: {server: "http://127.0.0.1:2/"}}
users:
- {name: u, user: {token: secret}}
"""
    )
    assert ClientConfig.from_kubeconfig(path) == ClientConfig("http://127.0.0.1:2", "secret")
    assert resolve_config(path) == ClientConfig("http://127.0.0.1:2", "secret")
    assert resolve_config("http://127.0.0.1:9/") == ClientConfig("http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "is not a mapping"),
        ("a: [", "is not YAML"),
        ("current-context: x\ncontexts: []", "has no current context 'x'"),
        ("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]", "names no server"),
    ],
)
def test_client_config_refusals(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "kc"
    path.write_text(text)
    with pytest.raises(ApiError, match=message) as caught:
        ClientConfig.from_kubeconfig(path)
    assert caught.value.status == 0 and "\n" not in str(caught.value).strip()


def _informers() -> dict[str, Informer]:
    api = WorkloadApi(ClientConfig("http://127.0.0.1:1"))
    wake = asyncio.Event()
    return {"pods": Informer(api, "/api/v1/pods", wake)}


def _obj(name: str, rv: int, uid: str = "u1") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "default", "name": name, "resourceVersion": str(rv), "uid": uid}
    }


def test_expectations_wait_for_the_written_version_or_a_later_event() -> None:
    caches, expect = _informers(), Expectations()
    pods = caches["pods"]
    expect.written("pods", _obj("a", 7))
    assert not expect.satisfied(caches)
    pods.objects[("default", "a")] = _obj("a", 6)  # an older version
    pods.seen_rv = 6
    assert not expect.satisfied(caches)
    pods.objects[("default", "a")] = _obj("a", 7)
    assert expect.satisfied(caches)
    # created then deleted by someone else before the pass: the later event counts
    expect.written("pods", _obj("b", 9))
    pods.seen_rv = 10
    assert expect.satisfied(caches)


def test_expectations_for_deletes_and_their_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    caches, expect = _informers(), Expectations()
    pods = caches["pods"]
    pods.objects[("default", "a")] = _obj("a", 3)
    expect.deleted("pods", _obj("a", 3))
    assert not expect.satisfied(caches)
    pods.objects[("default", "a")] = _obj("a", 5, uid="u2")  # a new pod of the same name
    assert expect.satisfied(caches)
    expect.written("pods", _obj("c", 50))
    later = time.monotonic() + EXPECTATION_TTL + 1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert expect.satisfied(caches)  # given up on after the TTL
