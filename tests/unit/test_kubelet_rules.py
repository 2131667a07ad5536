"""The lab kubelet's pure rules: images, env, files, paths, probes, back-off, IPAM, status."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ironlb.lab.kubelet import spec
from ironlb.lab.kubelet.ipam import IpamExhausted, PodIndexes
from ironlb.lab.kubelet.lifecycle import (
    MAX_PROBE_PERIOD,
    Backoff,
    ContainerView,
    Probe,
    ProbeCounter,
    ProbeError,
    pod_status,
    readiness_probe,
)

POD: dict[str, Any] = {
    "metadata": {
        "name": "speaker-x",
        "namespace": "ironlb-system",
        "uid": "u-1",
        "labels": {"app": "speaker"},
        "annotations": {"a/b": "c"},
    },
    "spec": {"nodeName": "node2", "serviceAccountName": "speaker"},
    "status": {
        "podIP": "198.19.2.11",
        "podIPs": [{"ip": "198.19.2.11"}, {"ip": "fd00:198:19:2::11"}],
        "hostIP": "198.18.0.12",
    },
}


@pytest.mark.parametrize(
    ("image", "ours"),
    [
        ("ironlb:dev", True),
        ("ironlb", True),
        ("ghcr.io/acme/ironlb:0.1.0", True),
        ("localhost:5000/ironlb", True),
        ("ironlb@sha256:abcd", True),
        ("nginx:1.27", False),
        ("ironlb-extra:1", False),
        ("ironlb/podserver:1", False),
        ("", False),
    ],
)
def test_project_image_rule(image: str, ours: bool) -> None:
    assert spec.is_project_image(image) is ours


def test_env_is_resolved_in_order_like_the_kubelet() -> None:
    container = {
        "env": [
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "hb", "key": "key"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "mode"}}},
            {
                "name": "GONE",
                "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
            },
            {"name": "MSG", "value": "$(NODE)/$(LATER)/$$(NODE)"},
            {"name": "LATER", "value": "x"},
        ]
    }
    env = spec.resolve_env(container, POD, {"hb": {"key": "s"}, "nope": None}, {"c": {"mode": "k"}})
    assert env == {
        "NODE": "node2",
        "NS": "ironlb-system",
        "IPS": "198.19.2.11,fd00:198:19:2::11",
        "APP": "speaker",
        "KEY": "s",
        "MODE": "k",
        "MSG": "node2/$(LATER)/$(NODE)",
        "LATER": "x",
    }


@pytest.mark.parametrize(
    ("var", "secrets", "message"),
    [
        (
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "hb", "key": "k"}}},
            {"hb": None},
            'secret "hb" not found',
        ),
        (
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "hb", "key": "k"}}},
            {"hb": {"other": "v"}},
            "couldn't find key k in secret hb",
        ),
        (
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}},
            {},
            "unsupported fieldRef.fieldPath 'spec.hostname'",
        ),
        (
            {"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {},
            "env X: unsupported valueFrom ['resourceFieldRef']",
        ),
    ],
)
def test_env_refusals_name_the_reference(
    var: dict[str, Any], secrets: dict[str, Any], message: str
) -> None:
    with pytest.raises(spec.ConfigError) as caught:
        spec.resolve_env({"env": [var]}, POD, secrets, {})
    assert str(caught.value) == message


def test_secret_data_is_decoded_and_bad_base64_refused() -> None:
    good = {"kind": "Secret", "data": {"k": base64.b64encode(b"v").decode()}}
    assert spec.decode_data(good) == {"k": "v"}
    assert spec.decode_data({"kind": "ConfigMap", "data": {"k": "v"}}) == {"k": "v"}
    bad = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "!!"}}
    with pytest.raises(spec.ConfigError, match="secret 's' key 'k' is not base64"):
        spec.decode_data(bad)


def test_volumes_become_files_and_bad_item_paths_are_refused() -> None:
    pod: dict[str, Any] = {
        "spec": {
            "volumes": [
                {"name": "all", "secret": {"secretName": "s"}},
                {
                    "name": "some",
                    "secret": {"secretName": "s", "items": [{"key": "a", "path": "x/a"}]},
                },
                {"name": "maybe", "configMap": {"name": "absent", "optional": True}},
                {"name": "scratch", "emptyDir": {}},
            ]
        }
    }
    assert spec.referenced_objects(pod) == ({"s"}, {"absent"})
    files = spec.volume_files(pod, {"s": {"a": "1", "b": "2"}}, {"absent": None})
    assert files == {"all": {"a": "1", "b": "2"}, "some": {"x/a": "1"}, "maybe": {}, "scratch": {}}
    pod["spec"]["volumes"][1]["secret"]["items"] = [{"key": "a", "path": "../a"}]
    with pytest.raises(spec.ConfigError, match=r"bad item path '\.\./a'"):
        spec.volume_files(pod, {"s": {"a": "1"}}, {"absent": None})
    with pytest.raises(spec.ConfigError, match='volume all: secret "s" not found'):
        spec.volume_files(pod, {"s": None}, {"absent": None})


def test_mount_paths_are_rewritten_as_whole_path_components() -> None:
    where = spec.mounts(
        {"volumeMounts": [{"name": "hb", "mountPath": "/etc/hb/"}]}, "/state/p", True
    )
    assert [(m.mount_path, m.host_dir) for m in where] == [
        (spec.SERVICE_ACCOUNT_PATH, "/state/p/serviceaccount"),
        ("/etc/hb", "/state/p/volumes/hb"),
    ]
    assert (
        spec.rewrite_paths("--key-file=/etc/hb/key", where) == "--key-file=/state/p/volumes/hb/key"
    )
    assert spec.rewrite_paths("cat /etc/hb; ls /etc/hbx /x/etc/hb", where) == (
        "cat /state/p/volumes/hb; ls /etc/hbx /x/etc/hb"
    )
    token = f"{spec.SERVICE_ACCOUNT_PATH}/token"
    assert spec.rewrite_paths(token, where) == "/state/p/serviceaccount/token"
    assert spec.mounts({}, "/state/p", False) == []


def test_container_argv_runs_entry_points_or_the_pod_server() -> None:
    py = "/venv/bin/python"
    ours = {"image": "ironlb:dev", "command": ["ironlb"], "args": ["speaker", "--node-name=$(N)"]}
    assert spec.container_argv(ours, "p", {"N": "node1"}, py) == [
        py,
        "-m",
        "ironlb.cli",
        "speaker",
        "--node-name=node1",
    ]
    assert spec.container_argv({"image": "ironlb", "args": ["controller"]}, "p", {}, py)[:3] == [
        py,
        "-m",
        "ironlb.cli",
    ]
    lbctl = spec.container_argv(
        {"image": "ironlb", "command": ["/usr/bin/lbctl", "pools"]}, "p", {}, py
    )
    assert lbctl[:2] == [py, "-c"] and lbctl[-1] == "pools"
    assert spec.container_argv({"image": "ironlb", "command": ["sh", "-c", "x"]}, "p", {}, py) == [
        "sh",
        "-c",
        "x",
    ]
    other = {
        "image": "nginx",
        "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
    }
    assert spec.container_argv(other, "web-1", {}, py) == [
        py,
        "-m",
        "ironlb.lab.podserver",
        "--name",
        "web-1",
        "--tcp=80",
        "--udp=80",
        "--tcp=53",
        "--udp=53",
    ]


def test_readiness_probe_rules() -> None:
    assert readiness_probe({}) == Probe("alive")
    udp_only = {"ports": [{"containerPort": 53, "protocol": "UDP"}]}
    assert readiness_probe(udp_only) == Probe("alive")
    assert readiness_probe({"ports": [{"containerPort": 8080}]}) == Probe("tcp", port=8080)
    http = readiness_probe(
        {
            "ports": [{"name": "metrics", "containerPort": 7472}],
            "readinessProbe": {
                "httpGet": {"path": "/healthz", "port": "metrics"},
                "periodSeconds": 10,
                "failureThreshold": 2,
            },
        }
    )
    assert (http.kind, http.port, http.path, http.period, http.failure_threshold) == (
        "http",
        7472,
        "/healthz",
        MAX_PROBE_PERIOD,
        2,
    )
    with pytest.raises(ProbeError, match="names port 'nope'"):
        readiness_probe({"readinessProbe": {"tcpSocket": {"port": "nope"}}})
    with pytest.raises(ProbeError, match="tcpSocket and httpGet only"):
        readiness_probe({"readinessProbe": {"exec": {"command": ["true"]}}})


def test_probe_thresholds_count_consecutive_results() -> None:
    counter = ProbeCounter(Probe("tcp", port=1, failure_threshold=2, success_threshold=1))
    assert counter.record(True) is True
    assert counter.record(False) is True  # one failure of two
    assert counter.record(True) is True  # the run is broken
    assert counter.record(False) is True
    assert counter.record(False) is False
    counter.reset()
    assert counter.ready is False


def test_backoff_doubles_caps_and_resets_after_a_long_run() -> None:
    backoff = Backoff(initial=1.0, cap=5.0)
    delays = []
    for now in range(6):
        backoff.started(float(now))
        delays.append(backoff.next_delay(float(now) + 0.5))
    assert delays == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.started(100.0)
    assert backoff.next_delay(110.0) == 0.0  # ran 2 * cap: the crashes are forgotten
    with pytest.raises(ValueError, match="0 < initial <= cap"):
        Backoff(initial=10, cap=1)


def test_ipam_hands_out_the_lowest_free_index_and_reuses_freed_ones() -> None:
    ipam = PodIndexes(size=3, reserved=frozenset({1}))
    assert [ipam.allocate(o) for o in ("a", "b")] == [2, 3]
    assert ipam.allocate("a") == 2  # same owner, same index
    with pytest.raises(IpamExhausted, match="all 3 pod addresses"):
        ipam.allocate("c")
    assert ipam.release("a") == 2
    assert ipam.release("a") is None
    assert ipam.allocate("c") == 2
    assert ipam.owned() == {"b": 3, "c": 2}


def test_pod_status_keeps_transition_times_while_values_stay() -> None:
    running = ContainerView("web", "nginx", "running", True, 2, pid=42, started_at="T1")
    first = pod_status(
        {},
        now="T1",
        start_time="T0",
        host_ips=["198.18.0.12"],
        pod_ips=["198.19.2.11", "fd00:198:19:2::11"],
        containers=[running],
    )
    assert first["podIP"] == "198.19.2.11" and first["startTime"] == "T0"
    assert first["containerStatuses"][0]["containerID"] == "lab://42"
    assert first["containerStatuses"][0]["restartCount"] == 2
    down = ContainerView(
        "web", "nginx", "waiting", False, 2, reason="CrashLoopBackOff", last_exit_code=137
    )
    second = pod_status(
        first, now="T2", start_time="T9", host_ips=[], pod_ips=[], containers=[down]
    )
    times = {c["type"]: (c["status"], c["lastTransitionTime"]) for c in second["conditions"]}
    assert times["Ready"] == ("False", "T2")
    assert times["PodScheduled"] == ("True", "T1")
    assert second["startTime"] == "T0"
    assert second["containerStatuses"][0]["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert second["containerStatuses"][0]["lastState"] == {
        "terminated": {"exitCode": 137, "reason": "Error"}
    }
    assert first["containerStatuses"][0]["lastState"] == {}
