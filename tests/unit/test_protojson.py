"""Kubernetes JSON <-> protobuf conversion (protojson, protobody): each kind round-trips,
the Go JSON rules hold (times, IntOrString, Quantity, base64 bytes, int64 numbers, pointer
zeros, inline structs), and every refusal names what it refused."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironlb.lab.apiserver import errors
from ironlb.lab.apiserver.protobody import MAGIC, decode, encode, prefers_protobuf
from ironlb.lab.apiserver.protojson import ConversionError, from_json, to_json
from ironlb.lab.apiserver.protoschema import message_class, unknown_class

META = {
    "name": "web",
    "namespace": "default",
    "uid": "3ef997cd-0a9c-4d27-a4da-40358611371c",
    "resourceVersion": "42",
    "generation": 9007199254740993,  # int64 beyond a double's exact range
    "creationTimestamp": "2026-12-03T09:05:43Z",
    "labels": {"app": "web"},
    "annotations": {"ironlb.io/address-pool": "lab"},
    "ownerReferences": [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-1",
            "uid": "11111111-2222-3333-4444-555555555555",
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ],
    "finalizers": ["ironlb.io/finalizer"],
}

POD_SPEC = {
    "containers": [
        {
            "name": "nginx",
            "image": "nginx:1.27",
            "args": ["-g", "daemon off;"],
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
            "env": [
                {"name": "MODE", "value": "lab"},
                {
                    "name": "TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "a", "optional": False}},
                },
            ],
            "envFrom": [{"configMapRef": {"name": "c"}}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "1"}},
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
            "livenessProbe": {"tcpSocket": {"port": 80}},
            "volumeMounts": [{"name": "conf", "mountPath": "/etc/nginx/conf.d"}],
            "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False},
        }
    ],
    "volumes": [
        {"name": "conf", "configMap": {"name": "c", "defaultMode": 420}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ],
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 0,
    "automountServiceAccountToken": False,
    "serviceAccountName": "sa",
    "tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 30}],
}

OBJECTS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}, "spec": {}},
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {**META, "name": "sh.helm.release.v1.web.v1"},
        "type": "helm.sh/release.v1",
        "data": {"release": base64.b64encode(bytes(range(256))).decode()},
    },
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": META,
        "data": {"a": "b", "empty": ""},
        "binaryData": {"bin": base64.b64encode(b"\x00\xff").decode()},
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": META,
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": "https", "nodePort": 30443},
            ],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}},
            "loadBalancerSourceRanges": ["198.18.0.0/15"],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "198.18.10.1"}]}},
    },
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": META,
        "spec": {
            "replicas": 0,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}],
            },
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {
            "observedGeneration": 9007199254740993,
            "replicas": 3,
            "readyReplicas": 2,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "lastUpdateTime": "2026-12-03T09:05:43Z",
                    "lastTransitionTime": "2026-12-03T09:05:44Z",
                }
            ],
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": META,
        "spec": POD_SPEC,
        "status": {"phase": "Running", "podIP": "198.19.1.11", "startTime": "2026-12-03T09:05:43Z"},
    },
    {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": META,
        "secrets": [{"name": "sa-token"}],
        "automountServiceAccountToken": False,
    },
    {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": META,
        "involvedObject": {"kind": "Service", "name": "web", "namespace": "default"},
        "reason": "IPAllocated",
        "message": "Assigned IP 198.18.10.1",
        "count": 2,
        "eventTime": "2026-12-03T09:05:43.123456Z",
        "type": "Normal",
    },
    {
        "apiVersion": "v1",
        "kind": "SecretList",
        "metadata": {"resourceVersion": "42"},
        "items": [{"metadata": {"name": "a"}, "data": {"k": "dg=="}, "type": "Opaque"}],
    },
]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda obj: str(obj["kind"]))
def test_each_kind_round_trips_json_proto_json(obj: dict[str, Any]) -> None:
    body = encode(copy.deepcopy(obj))
    assert body is not None and body.startswith(MAGIC)
    assert decode(body) == obj


def test_kinds_without_definitions_and_parts_are_not_classes() -> None:
    assert message_class("apps/v1", "DaemonSet") is None
    assert message_class("ironlb.io/v1alpha1", "IPAddressPool") is None
    assert message_class("v1", "PodSpec") is None  # a part, not an object kind
    assert message_class("v1", "no such kind") is None
    assert message_class("v1", "Secret") is not None


def test_go_zero_values_are_omitempty_except_pointers() -> None:
    """Go writes value fields even when zero; JSON leaves them out unless they are pointers."""
    pod = message_class("v1", "Pod")
    assert pod is not None
    message = pod()
    container = message.spec.containers.add()  # type: ignore[attr-defined]
    container.name, container.image, container.stdin, container.workingDir = "c", "i", False, ""
    container.ports.add(containerPort=80, hostPort=0)
    container.resources.SetInParent()  # an empty struct Go wrote stays {}
    message.spec.terminationGracePeriodSeconds = 0  # type: ignore[attr-defined]
    message.spec.hostNetwork = False  # type: ignore[attr-defined]
    message.metadata.creationTimestamp.SetInParent()  # type: ignore[attr-defined]
    assert to_json(message) == {
        "metadata": {"creationTimestamp": None},
        "spec": {
            "containers": [
                {"name": "c", "image": "i", "ports": [{"containerPort": 80}], "resources": {}}
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }


def test_int64_are_numbers_and_times_are_rfc3339() -> None:
    obj = decode(encode(OBJECTS[4]) or b"")
    assert obj["metadata"]["generation"] == 9007199254740993
    assert obj["metadata"]["creationTimestamp"] == "2026-12-03T09:05:43Z"
    event = decode(encode(OBJECTS[7]) or b"")
    assert event["eventTime"] == "2026-12-03T09:05:43.123456Z"


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        ({"metadata": {"name": "x"}, "immutable": True}, "immutable: not a field of ConfigMap"),
        ({"metadata": {"name": 5}}, "metadata.name: int does not fit a string"),
        ({"data": ["a"]}, "data: expected an object"),
        ({"metadata": {"finalizers": "x"}}, "metadata.finalizers: expected a list"),
        ({"metadata": {"generation": 2**63}}, "metadata.generation: 9223372036854775808 is out"),
        ({"binaryData": {"b": "not base64!"}}, "binaryData.b: not base64"),
        ({"metadata": {"creationTimestamp": "yesterday"}}, "not an RFC 3339 time"),
        ({"metadata": "x"}, "metadata: expected an object"),
    ],
)
def test_json_that_does_not_fit_is_refused_by_path(obj: dict[str, Any], problem: str) -> None:
    cls = message_class("v1", "ConfigMap")
    assert cls is not None
    with pytest.raises(ConversionError, match=problem.replace("!", ".")):
        from_json(obj, cls())


def test_list_items_type_meta_is_not_in_the_message() -> None:
    listed = copy.deepcopy(OBJECTS[-1])
    listed["items"][0].update(apiVersion="v1", kind="Secret")  # as the lab renders items
    assert decode(encode(listed) or b"") == OBJECTS[-1]


def test_encode_answers_none_for_what_protobuf_cannot_carry() -> None:
    service = copy.deepcopy(OBJECTS[3])
    service["spec"]["ipFamilies"] = ["IPv4"]  # newer than the 1.14 definitions
    assert encode(service) is None
    assert encode({"apiVersion": "ironlb.io/v1alpha1", "kind": "IPAddressPool"}) is None
    assert encode({"kind": "Secret"}) is None
    assert encode({"apiVersion": "v1", "kind": "Secret", "data": {"a": 1}}) is None


def _envelope(api_version: str, kind: str, raw: bytes, encoding: str = "") -> bytes:
    envelope = unknown_class()()
    envelope.typeMeta.apiVersion = api_version  # type: ignore[attr-defined]
    envelope.typeMeta.kind = kind  # type: ignore[attr-defined]
    envelope.raw = raw  # type: ignore[attr-defined]
    envelope.contentEncoding = encoding  # type: ignore[attr-defined]
    return MAGIC + envelope.SerializeToString()


def _far_future_configmap() -> bytes:
    cls = message_class("v1", "ConfigMap")
    assert cls is not None
    message = cls()
    message.metadata.creationTimestamp.seconds = 2**62  # type: ignore[attr-defined]
    return message.SerializeToString()


def _configmap_raw() -> bytes:
    body = encode({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert body is not None
    return bytes(unknown_class().FromString(body[4:]).raw)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "code", "problem"),
    [
        (b'{"kind": "ConfigMap"}', 400, 'does not start with the "k8s\\x00" magic'),
        (MAGIC + b"\xff\xff\xff", 400, "is not a runtime.Unknown"),
        (_envelope("v1", "ConfigMap", b"\x0a\x05ab"), 400, "is not a valid ConfigMap"),
        (_envelope("apps/v1", "DaemonSet", b""), 415, "cannot read protobuf apps/v1 DaemonSet"),
        (MAGIC, 415, "cannot read protobuf (no apiVersion) (no kind)"),
        (_envelope("v1", "ConfigMap", b"", "gzip"), 415, "content encoding 'gzip'"),
        # ConfigMap.immutable (field 4, Kubernetes 1.18) is newer than the definitions
        (
            _envelope("v1", "ConfigMap", _configmap_raw() + b"\x20\x01"),
            415,
            "field number 4 of ConfigMap (ConfigMap), newer than",
        ),
        (_envelope("v1", "ConfigMap", b"\x0a\x03\x0a\x01\xff"), 400, "Map.metadata.name: a str"),
        (MAGIC + b"\x0a\x05\x12\x03\xff\xfe\x00", 400, "apiVersion or kind is not UTF-8"),
        # metadata.creationTimestamp.seconds = 2**62: far past year 9999
        (
            _envelope("v1", "ConfigMap", _far_future_configmap()),
            400,
            "ConfigMap.metadata.creationTimestamp: not a time",
        ),
        (
            _envelope("v1", "Pod", b"\x12\x03\xd0\x02\x01"),  # spec: {field 42: 1}
            415,
            "field number 42 of Pod.spec (PodSpec)",
        ),
    ],
)
def test_bodies_that_cannot_be_read_are_one_clear_status(
    body: bytes, code: int, problem: str
) -> None:
    with pytest.raises(errors.ApiError) as caught:
        decode(body)
    assert caught.value.code == code
    assert problem in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/vnd.kubernetes.protobuf,application/json", True),  # kubectl 1.32
        ("application/vnd.kubernetes.protobuf, */*", True),
        ("application/json, application/vnd.kubernetes.protobuf", False),
        ("application/json;q=0.5, application/vnd.kubernetes.protobuf", True),
        ("application/vnd.kubernetes.protobuf;q=0, application/json", False),
        ("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, */*", False),
        ("*/*", False),
        ("", False),
        (None, False),
        ("text/plain, application/vnd.kubernetes.protobuf", True),
    ],
)
def test_accept_negotiation(accept: str | None, expected: bool) -> None:
    assert prefers_protobuf(accept) is expected


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


_NUMBERS = st.integers(min_value=1, max_value=40)
_LEAF = st.one_of(
    st.builds(_field, _NUMBERS, st.integers(min_value=0, max_value=2**64 - 1)),
    st.builds(_field, _NUMBERS, st.binary(max_size=12)),
    st.builds(_field, _NUMBERS, st.text(max_size=12).map(str.encode)),
)
# well-formed wire data of random fields, nested: unknown numbers, wrong types, bad UTF-8
_WIRE = st.recursive(
    st.lists(_LEAF, max_size=4).map(b"".join),
    lambda inner: st.lists(st.one_of(_LEAF, st.builds(_field, _NUMBERS, inner)), max_size=4).map(
        b"".join
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(["ConfigMap", "Secret", "Pod", "Service", "Namespace", "Deployment"]),
    raw=st.one_of(st.binary(max_size=200), _WIRE),
)
def test_any_object_bytes_decode_to_plain_json_or_one_status(kind: str, raw: bytes) -> None:
    """Whatever bytes a client sends as an object, the answer is a JSON dict or a 400/415."""
    api_version = "apps/v1" if kind == "Deployment" else "v1"
    try:
        obj = decode(_envelope(api_version, kind, raw))
    except errors.ApiError as exc:
        assert exc.code in (400, 415) and "\n" not in exc.message
        return
    assert json.loads(json.dumps(obj, allow_nan=False)) == obj
    assert obj["kind"] == kind
