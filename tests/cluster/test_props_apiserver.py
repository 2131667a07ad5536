"""Property tests of the lab API server over real HTTP (issue 8, item 13).

Generated request bodies (POST, PUT) and patches (JSON merge, JSON patch,
strategic merge, on the object and on its ``status``) are sent to a real
:class:`~ironlb.lab.apiserver.LocalApiServer` for Services, ConfigMaps and a
CRD-defined kind with a schema. Every answer is a success or a 4xx ``Status``
object, never a 500; after a refused write the stored objects are exactly as
before (and, for Services, the ClusterIPs and NodePorts the refused body asked
for are still free).
"""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from ironlb.lab.apiserver import ServerThread, run_in_thread
from tests.cluster.apiserver_helpers import widget_crd
from tests.props import PROPS, tried

pytestmark = pytest.mark.cluster

NS = "default"
SERVICES = f"/api/v1/namespaces/{NS}/services"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"
WIDGETS = f"/apis/lab.ironlb.io/v1/namespaces/{NS}/widgets"
COLLECTIONS = (SERVICES, CONFIGMAPS, WIDGETS)
PATCH_TYPES = (
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
NAMES = st.one_of(st.sampled_from(["new-a", "web", "Bad_Name", "", "x" * 70]), JSON)
METADATA = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"name": NAMES},
        optional={
            "namespace": st.one_of(st.just(NS), st.just("other"), JSON),
            "generateName": st.one_of(st.just("gen-"), JSON),
            "labels": st.one_of(st.dictionaries(st.text(max_size=6), st.text(max_size=6)), JSON),
            "annotations": JSON,
            "finalizers": st.one_of(st.lists(st.text(max_size=6), max_size=2), JSON),
            "resourceVersion": JSON,
            "ownerReferences": JSON,
            "deletionTimestamp": JSON,
            "uid": JSON,
        },
    ),
)
SERVICE_PORT_OBJ = st.fixed_dictionaries(
    {"port": st.one_of(st.sampled_from([80, 443, 53]), st.integers(0, 70000), JSON)},
    optional={
        "protocol": st.one_of(st.sampled_from(["TCP", "UDP", "HTTP"]), JSON),
        "nodePort": st.one_of(st.sampled_from([30001, 30002]), st.sampled_from([0, 40000]), JSON),
        "targetPort": JSON,
        "name": JSON,
    },
)
SERVICE_PORT = st.one_of(SERVICE_PORT_OBJ, SERVICE_PORT_OBJ, JSON)
SERVICE_SPEC_OBJ = st.fixed_dictionaries(
    {
        "type": st.one_of(
            st.sampled_from(["NodePort", "LoadBalancer"]),
            st.sampled_from(["ClusterIP", "ExternalName", "x"]),
            JSON,
        ),
    },
    optional={
        "clusterIP": st.one_of(
            st.sampled_from(["10.96.0.50", "10.96.0.51"]),
            st.sampled_from(["None", "198.18.0.1", ""]),
            JSON,
        ),
        "ports": st.one_of(st.lists(SERVICE_PORT, min_size=1, max_size=3), JSON),
        "allocateLoadBalancerNodePorts": JSON,
        "selector": JSON,
        "ipFamilies": JSON,
    },
)
SERVICE_SPEC = st.one_of(SERVICE_SPEC_OBJ, JSON)
WIDGET_SPEC = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "size": st.one_of(st.integers(-5, 5), JSON),
            "color": st.one_of(st.sampled_from(["red", "blue", "green"]), JSON),
            "tags": st.one_of(st.lists(st.text(max_size=4), max_size=3), JSON),
        },
    ),
)
BODY = st.fixed_dictionaries(
    {"metadata": METADATA},
    optional={
        "apiVersion": st.one_of(st.sampled_from(["v1", "lab.ironlb.io/v1", "apps/v1"]), JSON),
        "kind": st.one_of(st.sampled_from(["Service", "ConfigMap", "Widget", "Pod"]), JSON),
        "spec": st.one_of(SERVICE_SPEC, WIDGET_SPEC),
        "data": JSON,
        "status": JSON,
    },
)
RAW = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"{", b"[]", b"null", b"1e999", b'{"a": NaN}', b"\xff\xfe", b"- a\n- b"]),
    # YAML (sent as application/yaml) that PyYAML turns into what JSON cannot hold
    st.sampled_from(
        [b"x: !!timestamp nope", b"x: 2001-12-14", b"x: !!binary aGk=", b"x: !!set {a}", b".inf"]
    ).map(lambda tail: b"metadata: {name: new-y}\ndata: {" + tail + b"}\n"),
    st.sampled_from([b"metadata: &m {name: new-y, x: *m}\n", b"&a [*a]", b"{? [a]: b}"]),
)
#: Mostly well-formed Services whose spec varies (where the server's defaulting is).
SERVICE_BODY = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries({"name": st.sampled_from(["new-a", "web"])}),
        "spec": SERVICE_SPEC_OBJ,
    }
)
BODIES = {
    SERVICES: st.one_of(SERVICE_BODY, SERVICE_BODY, SERVICE_BODY, BODY, JSON, RAW),
    CONFIGMAPS: st.one_of(BODY, JSON, RAW),
    WIDGETS: st.one_of(BODY, JSON, RAW),
}
POINTERS = st.one_of(
    st.sampled_from(
        [
            "/metadata/name",
            "/metadata/labels",
            "/metadata/labels/a",
            "/metadata/finalizers/-",
            "/metadata/resourceVersion",
            "/metadata",
            "/spec/ports/0/nodePort",
            "/spec/ports/7",
            "/spec/clusterIP",
            "/spec/size",
            "/status",
            "",
            "/",
            "~",
            "/a~2b",
        ]
    ),
    st.text(max_size=10),
    JSON,
)
JSON_PATCH = st.one_of(
    JSON,
    st.lists(
        st.one_of(
            JSON,
            st.fixed_dictionaries(
                {
                    "op": st.one_of(
                        st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]), JSON
                    )
                },
                optional={"path": POINTERS, "from": POINTERS, "value": JSON},
            ),
        ),
        max_size=3,
    ),
)
MERGE_PATCH = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "metadata": st.one_of(METADATA, JSON),
            "spec": st.one_of(SERVICE_SPEC, WIDGET_SPEC),
            "status": JSON,
            "$patch": st.one_of(st.sampled_from(["replace", "delete", "merge"]), JSON),
            "$retainKeys": JSON,
            "$setElementOrder/ports": JSON,
            "$deleteFromPrimitiveList/finalizers": JSON,
        },
    ),
)


class Api:
    """One keep-alive HTTP connection to the server; requests return (status, JSON body)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": content_type} if content_type else {}
        self.conn.request(method, path, body=body, headers=headers)
        rsp = self.conn.getresponse()
        raw = rsp.read()
        assert rsp.getheader("Content-Type", "").startswith("application/json"), raw
        return rsp.status, json.loads(raw)

    def send(self, method: str, path: str, body: Any, content_type: str) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request(method, path, data, content_type)

    def items(self, collection: str) -> list[Any]:
        status, body = self.request("GET", collection)
        assert status == 200, body
        return sorted(body["items"], key=lambda o: o["metadata"]["name"])


def _widget_crd() -> dict[str, Any]:
    crd = widget_crd()
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "size": {"type": "integer", "minimum": 0},
                    "color": {"type": "string", "enum": ["red", "blue"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            },
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    for version in crd["spec"]["versions"]:
        version["schema"] = {"openAPIV3Schema": schema}
    return crd


BASE_OBJECTS: dict[str, dict[str, Any]] = {
    SERVICES: {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}]},
    },
    CONFIGMAPS: {"metadata": {"name": "web"}, "data": {"a": "1"}},
    WIDGETS: {"metadata": {"name": "web"}, "spec": {"size": 1, "color": "red"}},
}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with run_in_thread() as api:
        yield api


@pytest.fixture(scope="module")
def api(server: ServerThread) -> Iterator[Api]:
    client = Api(server.url)
    status, body = client.send(
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        _widget_crd(),
        "application/json",
    )
    assert status == 201, body
    for collection, obj in BASE_OBJECTS.items():
        status, body = client.send("POST", collection, obj, "application/json")
        assert status == 201, body
    try:
        yield client
    finally:
        client.conn.close()


def _assert_refusal(status: int, body: Any) -> None:
    event(f"HTTP {status}")
    assert status < 500, body
    if status >= 400:
        assert isinstance(body, dict) and body.get("kind") == "Status", body
        assert body.get("code") == status, body
        assert body.get("status") == "Failure", body


def _requested_ips_and_ports(body: Any) -> tuple[list[str], list[int]]:
    """The ClusterIP and NodePorts a Service body asked for (to check they stay free)."""
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        return [], []
    ip = spec.get("clusterIP")
    ips = [ip] if ip in ("10.96.0.50", "10.96.0.51") else []
    raw = spec.get("ports")
    ports: list[Any] = raw if isinstance(raw, list) else []
    wanted = [p.get("nodePort") for p in ports if isinstance(p, dict)]
    return ips, [p for p in wanted if p in (30001, 30002)]


def _assert_still_free(api: Api, ips: list[str], ports: list[int]) -> None:
    """A Service asking for ``ips``/``ports`` is created (they were not leaked), then deleted."""
    if not ips and not ports:
        return
    spec: dict[str, Any] = {"type": "NodePort", "ports": []}
    if ips:
        spec["clusterIP"] = ips[0]
    for n, port in enumerate(sorted(set(ports))):
        spec["ports"].append({"port": 1000 + n, "nodePort": port})
    if not spec["ports"]:
        spec["type"] = "ClusterIP"
    probe = {"metadata": {"name": "probe-free"}, "spec": spec}
    status, body = api.send("POST", SERVICES, probe, "application/json")
    assert status == 201, body.get("message")
    status, body = api.request("DELETE", f"{SERVICES}/probe-free")
    assert status == 200, body


def _cleanup_created(api: Api, collection: str, before: list[Any]) -> None:
    names = {o["metadata"]["name"] for o in before}
    for obj in api.items(collection):
        if obj["metadata"]["name"] not in names:
            # objects with finalizers need them removed before they go
            path = f"{collection}/{obj['metadata']['name']}"
            status, body = api.send(
                "PATCH", path, {"metadata": {"finalizers": None}}, PATCH_TYPES[0]
            )
            assert status == 200, body.get("message")
            status, body = api.request("DELETE", path)
            assert status in (200, 404), body
    assert [o["metadata"]["name"] for o in api.items(collection)] == sorted(names)


@PROPS
@given(collection=st.sampled_from(COLLECTIONS), data=st.data())
def test_created_bodies_are_stored_or_refused_with_a_status_and_no_change(
    api: Api, collection: str, data: st.DataObject
) -> None:
    tried("lab API request bodies")
    body = data.draw(BODIES[collection], label="body")
    media = data.draw(st.sampled_from(["application/json", "application/yaml"]), label="type")
    before = api.items(collection)
    status, reply = api.send("POST", collection, body, media)
    _assert_refusal(status, reply)
    if status >= 400:
        assert api.items(collection) == before
        if collection == SERVICES:
            _assert_still_free(api, *_requested_ips_and_ports(body))
    else:
        assert status == 201, reply
        _cleanup_created(api, collection, before)


@PROPS
@given(collection=st.sampled_from(COLLECTIONS), data=st.data())
def test_replaced_bodies_are_stored_or_refused_with_a_status_and_no_change(
    api: Api, collection: str, data: st.DataObject
) -> None:
    tried("lab API request bodies")
    body = data.draw(BODIES[collection], label="body")
    path = f"{collection}/web"
    before = api.items(collection)
    if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
        body = copy.deepcopy(body)
        body["metadata"].setdefault("name", "web")
    status, reply = api.send("PUT", path, body, "application/json")
    _assert_refusal(status, reply)
    if status >= 400:
        assert api.items(collection) == before
        if collection == SERVICES:
            _assert_still_free(api, *_requested_ips_and_ports(body))
    else:
        _restore(api, collection)


def _restore(api: Api, collection: str) -> None:
    """Put ``web`` back as it started (a successful write may have changed it)."""
    status, current = api.request("GET", f"{collection}/web")
    if status == 404:
        status, body = api.send("POST", collection, BASE_OBJECTS[collection], "application/json")
        assert status == 201, body
        return
    assert status == 200, current
    fresh = copy.deepcopy(BASE_OBJECTS[collection])
    fresh["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    fresh["metadata"]["finalizers"] = []
    status, body = api.send("PUT", f"{collection}/web", fresh, "application/json")
    assert status == 200, body


@PROPS
@given(
    collection=st.sampled_from(COLLECTIONS),
    content_type=st.sampled_from(PATCH_TYPES),
    status_subresource=st.booleans(),
    patch=st.one_of(JSON_PATCH, MERGE_PATCH, RAW),
)
def test_patches_apply_or_are_refused_with_a_status_and_no_change(
    api: Api, collection: str, content_type: str, status_subresource: bool, patch: Any
) -> None:
    tried("lab API patches")
    path = f"{collection}/web" + (
        "/status" if status_subresource and collection != CONFIGMAPS else ""
    )
    before = api.items(collection)
    status, reply = api.send("PATCH", path, patch, content_type)
    _assert_refusal(status, reply)
    if status >= 400:
        assert api.items(collection) == before
    else:
        _restore(api, collection)


@PROPS
@given(body=SERVICE_BODY)
def test_service_specs_are_defaulted_or_refused_without_holding_addresses(
    api: Api, body: Any
) -> None:
    """Service defaulting reserves ClusterIPs and NodePorts; a refusal must hold none."""
    tried("lab API request bodies")
    before = api.items(SERVICES)
    body["metadata"]["name"] = "new-a"
    status, reply = api.send("POST", SERVICES, body, "application/json")
    _assert_refusal(status, reply)
    if status >= 400:
        assert api.items(SERVICES) == before
        _assert_still_free(api, *_requested_ips_and_ports(body))
    else:
        _cleanup_created(api, SERVICES, before)


SELECTOR_TEXT = st.one_of(
    st.text(alphabet="abc=!,()/ .-_in notexists", max_size=30),
    st.sampled_from(["a in (x,y)", "a notin ()", "!a", "a==b,c!=d", "a in x", "metadata.name=web"]),
    st.text(max_size=15),
)


@PROPS
@given(
    collection=st.sampled_from(COLLECTIONS),
    label=st.one_of(st.none(), SELECTOR_TEXT),
    field=st.one_of(st.none(), SELECTOR_TEXT),
    method=st.sampled_from(["GET", "DELETE"]),
)
def test_list_selectors_filter_or_are_refused_with_a_status(
    api: Api, collection: str, label: str | None, field: str | None, method: str
) -> None:
    """``labelSelector``/``fieldSelector`` text is parsed too (lists and deletecollection)."""
    tried("lab API selectors")
    query = {k: v for k, v in (("labelSelector", label), ("fieldSelector", field)) if v is not None}
    before = api.items(collection)
    if method == "DELETE":
        # deletecollection with a selector that can match nothing but a name not present
        query["fieldSelector"] = (field + "," if field else "") + "metadata.name=absent"
    status, reply = api.request(method, f"{collection}?{urlencode(query)}")
    _assert_refusal(status, reply)
    assert api.items(collection) == before
