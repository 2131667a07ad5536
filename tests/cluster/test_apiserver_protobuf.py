"""Protobuf bodies against the local API: real kubectl 1.32 typed commands (which send
``application/vnd.kubernetes.protobuf``) store the same objects as the JSON path, protobuf
answers for clients that prefer it, and an unreadable body is one Status that stores nothing.
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ironlb.lab.apiserver.protobody import MAGIC, MEDIA_TYPE, decode, encode
from ironlb.lab.apiserver.protoschema import unknown_class
from tests.cluster.apiserver_helpers import call, run_kubectl

pytestmark = pytest.mark.cluster
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl")

PROTOBUF_OUT = f"Content-Type: {MEDIA_TYPE}"


def run(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_kubectl(kubeconfig, *args, stdin=stdin)


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    result = run(kubeconfig, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def create_both_ways(kc: Path, namespace: str, *command: str) -> None:
    """``kubectl COMMAND`` in ``namespace`` (protobuf, checked in kubectl's log), and the same
    object's JSON form (``--dry-run=client -o json | kubectl create -f -``) in ``json-ns``."""
    sent = run(kc, *command, "-n", namespace, "-v=8")
    assert sent.returncode == 0, sent.stderr
    writes = [line for line in sent.stderr.splitlines() if PROTOBUF_OUT in line]
    assert writes, f"kubectl {' '.join(command)} sent no protobuf body"
    as_json = kubectl(kc, *command, "-n", "json-ns", "--dry-run=client", "-o", "json")
    kubectl(kc, "create", "-n", "json-ns", "-f", "-", stdin=as_json)


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without what differs between two creations (identity, time, allocations)."""
    obj = json.loads(json.dumps(obj))
    for key in ("namespace", "uid", "resourceVersion", "creationTimestamp"):
        obj["metadata"].pop(key, None)
    spec = obj.get("spec", {})
    if obj["kind"] == "Service":
        for key in ("clusterIP", "clusterIPs"):
            spec.pop(key, None)
        for port in spec.get("ports", []):
            port.pop("nodePort", None)
    return obj


def get(kc: Path, namespace: str, *what: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(kubectl(kc, "get", *what, "-n", namespace, "-o", "json"))
    return found


@needs_kubectl
def test_kubectl_typed_creates_store_what_the_json_path_stores(
    api_thread_kubeconfig: Path,
) -> None:
    kc = api_thread_kubeconfig
    sent = run(kc, "create", "namespace", "proto-ns", "-v=8")
    assert sent.returncode == 0, sent.stderr
    assert PROTOBUF_OUT in sent.stderr  # the request body ...
    assert sent.stderr.count(PROTOBUF_OUT) >= 2  # ... and the 201 answer
    as_json = kubectl(kc, "create", "namespace", "json-ns", "--dry-run=client", "-o", "json")
    kubectl(kc, "create", "-f", "-", stdin=as_json)
    proto_ns, json_ns = get(kc, "", "namespace", "proto-ns"), get(kc, "", "namespace", "json-ns")
    assert proto_ns["metadata"].pop("name") == "proto-ns"
    assert json_ns["metadata"].pop("name") == "json-ns"
    assert comparable(proto_ns) == comparable(json_ns)

    commands = [
        ("secret", "s", ("create", "secret", "generic", "s", "--from-literal=a=b")),
        ("configmap", "c", ("create", "configmap", "c", "--from-literal=k=v", "--from-literal=e=")),
        (
            "deployment",
            "web",
            ("create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=8080"),
        ),
        ("deployment", "idle", ("create", "deployment", "idle", "--image=nginx", "--replicas=0")),
        ("serviceaccount", "sa", ("create", "serviceaccount", "sa")),
        ("service", "lb", ("create", "service", "loadbalancer", "lb", "--tcp=80:8080")),
    ]
    for kind, name, command in commands:
        create_both_ways(kc, "proto-ns", *command)
        stored = get(kc, "proto-ns", kind, name)
        assert comparable(stored) == comparable(get(kc, "json-ns", kind, name)), kind
    secret = get(kc, "proto-ns", "secret", "s")
    assert secret["data"] == {"a": base64.b64encode(b"b").decode()}
    configmap = get(kc, "proto-ns", "configmap", "c")
    assert configmap["data"] == {"k": "v", "e": ""}
    web = get(kc, "proto-ns", "deployment", "web")
    assert web["spec"]["replicas"] == 3
    assert web["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 8080}]
    assert get(kc, "proto-ns", "deployment", "idle")["spec"]["replicas"] == 0

    for namespace in ("proto-ns", "json-ns"):
        kubectl(kc, "expose", "deployment", "web", "-n", namespace, "--type=LoadBalancer")
    service = get(kc, "proto-ns", "service", "web")
    assert service["spec"]["selector"] == {"app": "web"}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8080, 8080)]
    assert comparable(service) == comparable(get(kc, "json-ns", "service", "web"))


@needs_kubectl
def test_kubectl_reads_errors_and_protobuf_answers(api_thread_kubeconfig: Path) -> None:
    kc = api_thread_kubeconfig
    kubectl(kc, "create", "namespace", "twice")
    again = run(kc, "create", "namespace", "twice")
    assert again.returncode != 0
    assert 'namespaces "twice" already exists' in again.stderr
    assert "AlreadyExists" in again.stderr
    kubectl(kc, "create", "configmap", "c", "--from-literal=a=b", "-n", "twice")
    # kubectl decodes the protobuf 201 answer: -o json prints the server's object
    printed = json.loads(
        kubectl(kc, "create", "secret", "generic", "s", "--from-literal=x=y", "-o", "json")
    )
    assert printed["metadata"]["uid"] and printed["data"] == {"x": "eQ=="}


def _configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def _with_raw(api_version: str, kind: str, raw: bytes) -> bytes:
    envelope = unknown_class()()
    envelope.typeMeta.apiVersion = api_version  # type: ignore[attr-defined]
    envelope.typeMeta.kind = kind  # type: ignore[attr-defined]
    envelope.raw = raw  # type: ignore[attr-defined]
    return MAGIC + envelope.SerializeToString()


CM = "/api/v1/namespaces/default/configmaps"
PROTOBUF = {"Content-Type": MEDIA_TYPE, "Accept": f"{MEDIA_TYPE}, application/json"}


async def test_protobuf_answers_only_where_the_kind_fits(http: aiohttp.ClientSession) -> None:
    body = encode(_configmap("pb", a="b"))
    async with http.post(CM, data=body, headers=PROTOBUF) as rsp:
        assert rsp.status == 201 and rsp.content_type == MEDIA_TYPE
        created = decode(await rsp.read())
    assert created["data"] == {"a": "b"} and created["metadata"]["uid"]
    as_json = await call(http, "GET", f"{CM}/pb", 200)
    # managedFields (fieldsV1) postdate the 1.14 definitions: JSON only
    assert as_json["metadata"].pop("managedFields")[0]["operation"] == "Update"
    async with http.get(f"{CM}/pb", headers=PROTOBUF) as rsp:
        assert rsp.content_type == MEDIA_TYPE
        assert decode(await rsp.read()) == as_json
    async with http.get(CM, headers=PROTOBUF) as rsp:  # lists too: ConfigMapList
        assert rsp.content_type == MEDIA_TYPE
        listed = decode(await rsp.read())
    assert listed["kind"] == "ConfigMapList"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["pb"]
    # defaulted Services carry fields newer than the definitions (ipFamilies): JSON
    service = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    await call(http, "POST", "/api/v1/namespaces/default/services", 201, json=service)
    async with http.get("/api/v1/namespaces/default/services/web", headers=PROTOBUF) as rsp:
        assert rsp.content_type == "application/json"
        assert (await rsp.json())["spec"]["ipFamilies"] == ["IPv4"]
    # kinds without definitions (CRDs, DaemonSets) and Tables stay JSON
    async with http.get("/apis/apps/v1/namespaces/default/daemonsets", headers=PROTOBUF) as rsp:
        assert rsp.content_type == "application/json"
    table = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io, application/json"}
    async with http.get(f"{CM}/pb", headers=table) as rsp:
        assert (await rsp.json())["kind"] == "Table"
    # a protobuf PUT replaces like a JSON one
    updated = dict(as_json, data={"a": "c"})
    async with http.put(f"{CM}/pb", data=encode(updated), headers=PROTOBUF) as rsp:
        assert rsp.status == 200
        assert decode(await rsp.read())["data"] == {"a": "c"}
    # DeleteOptions as protobuf (client-go's typed Delete, e.g. Helm): preconditions hold
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": "nope"}}
    await call(http, "DELETE", f"{CM}/pb", 409, data=encode(options), headers=PROTOBUF)
    options["preconditions"] = {"uid": as_json["metadata"]["uid"]}
    async with http.delete(f"{CM}/pb", data=encode(options), headers=PROTOBUF) as rsp:
        assert rsp.status == 200
    await call(http, "GET", f"{CM}/pb", 404)


async def test_unreadable_protobuf_bodies_are_refused_and_store_nothing(
    http: aiohttp.ClientSession,
) -> None:
    good = encode(_configmap("refused"))
    assert good is not None
    raw = bytes(unknown_class().FromString(good[len(MAGIC) :]).raw)  # type: ignore[attr-defined]
    cases = [
        (b'{"metadata": {"name": "refused"}}', 400, "magic"),
        (MAGIC + b"\xff\xff", 400, "not a runtime.Unknown"),
        (_with_raw("v1", "ConfigMap", raw[:-1]), 400, "not a valid ConfigMap"),
        (_with_raw("apps/v1", "DaemonSet", raw), 415, "apps/v1 DaemonSet"),
        (_with_raw("v1", "ConfigMap", raw + b"\x20\x01"), 415, "field number 4 of ConfigMap"),
        (_with_raw("v1", "Secret", raw), 400, "kind"),  # not the kind the URL names
        (_with_raw("v1", "ConfigMap", b"\x0a\x03\x0a\x01\xff"), 400, "not UTF-8"),
    ]
    for body, code, problem in cases:
        status = await call(http, "POST", CM, code, data=body, headers=PROTOBUF)
        assert status["kind"] == "Status" and status["code"] == code, status
        assert problem in status["message"], status
    # a merge patch cannot be protobuf
    await call(http, "POST", CM, 201, json=_configmap("kept", a="b"))
    patch = {"Content-Type": MEDIA_TYPE}
    await call(http, "PATCH", f"{CM}/kept", 415, data=good, headers=patch)
    listed = await call(http, "GET", CM, 200)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["kept"]
    assert listed["items"][0]["data"] == {"a": "b"}


async def test_helm_shaped_release_storage_in_protobuf(http: aiohttp.ClientSession) -> None:
    """Helm's Secret storage driver as client-go sends it: create, list by label, update."""
    secrets = "/api/v1/namespaces/default/secrets"
    payload = base64.b64encode(gzip.compress(b'{"name": "web", "version": 1}'))
    release = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "sh.helm.release.v1.web.v1",
            "labels": {"name": "web", "owner": "helm", "status": "pending-install", "version": "1"},
        },
        "type": "helm.sh/release.v1",
        "data": {"release": base64.b64encode(payload).decode()},
    }
    async with http.post(secrets, data=encode(release), headers=PROTOBUF) as rsp:
        assert rsp.status == 201, await rsp.text()
        created = decode(await rsp.read())
    as_json = await call(http, "GET", f"{secrets}/sh.helm.release.v1.web.v1", 200)
    assert base64.b64decode(as_json["data"]["release"]) == payload
    assert as_json["type"] == "helm.sh/release.v1"
    other = dict(release, metadata={"name": "unrelated", "labels": {"owner": "someone"}})
    async with http.post(secrets, data=encode(other), headers=PROTOBUF) as rsp:
        assert rsp.status == 201
    query = {"labelSelector": "owner=helm,name=web"}
    async with http.get(secrets, params=query, headers=PROTOBUF) as rsp:
        assert rsp.content_type == MEDIA_TYPE
        listed = decode(await rsp.read())
    assert [item["metadata"]["name"] for item in listed["items"]] == [created["metadata"]["name"]]
    assert base64.b64decode(listed["items"][0]["data"]["release"]) == payload
    created["metadata"]["labels"]["status"] = "deployed"
    url = f"{secrets}/sh.helm.release.v1.web.v1"
    async with http.put(url, data=encode(created), headers=PROTOBUF) as rsp:
        assert rsp.status == 200
    assert (await call(http, "GET", url, 200))["metadata"]["labels"]["status"] == "deployed"
