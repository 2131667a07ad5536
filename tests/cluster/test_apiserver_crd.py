"""CustomResourceDefinitions on the local API server: registration in discovery and
routing, versions, scope, the status subresource, validation, and unregistration."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.cluster.apiserver_helpers import call, widget_crd

pytestmark = pytest.mark.cluster

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/lab.ironlb.io/v1/namespaces/default/widgets"
MERGE = {"Content-Type": "application/merge-patch+json"}


def widget(name: str, size: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "lab.ironlb.io/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }


async def test_crd_registers_types_in_discovery(http: aiohttp.ClientSession) -> None:
    await call(http, "GET", "/apis/lab.ironlb.io/v1", 404)
    created = await call(http, "POST", CRDS, 201, json=widget_crd())
    conditions = {c["type"]: c["status"] for c in created["status"]["conditions"]}
    assert conditions == {"Established": "True", "NamesAccepted": "True"}
    assert created["status"]["acceptedNames"]["kind"] == "Widget"
    assert created["status"]["storedVersions"] == ["v1"]

    groups = await call(http, "GET", "/apis", 200)
    group = next(g for g in groups["groups"] if g["name"] == "lab.ironlb.io")
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    assert group["preferredVersion"]["version"] == "v1"
    assert (await call(http, "GET", "/apis/lab.ironlb.io", 200))["name"] == "lab.ironlb.io"
    for version in ("v1", "v1beta1"):
        listing = await call(http, "GET", f"/apis/lab.ironlb.io/{version}", 200)
        assert listing["groupVersion"] == f"lab.ironlb.io/{version}"
        resources = {r["name"]: r for r in listing["resources"]}
        assert resources["widgets"]["namespaced"] is True
        assert resources["widgets"]["kind"] == "Widget"
        assert resources["widgets"]["singularName"] == "widget"
        assert resources["widgets"]["shortNames"] == ["wd"]
        assert "widgets/status" in resources


async def test_custom_objects_lifecycle(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CRDS, 201, json=widget_crd())
    made = await call(http, "POST", WIDGETS, 201, json=widget("w"))
    assert made["apiVersion"] == "lab.ironlb.io/v1" and made["kind"] == "Widget"

    # The same object is served under every served version.
    beta = await call(http, "GET", "/apis/lab.ironlb.io/v1beta1/namespaces/default/widgets/w", 200)
    assert beta["apiVersion"] == "lab.ironlb.io/v1beta1"
    assert beta["metadata"]["uid"] == made["metadata"]["uid"]

    listed = await call(http, "GET", "/apis/lab.ironlb.io/v1/widgets", 200)
    assert listed["kind"] == "WidgetList"
    assert [i["kind"] for i in listed["items"]] == ["Widget"]

    # Status is a subresource: dropped on create, separate on patch; generation tracks spec.
    with_status = dict(widget("s"), status={"phase": "x"})
    assert "status" not in await call(http, "POST", WIDGETS, 201, json=with_status)
    status = await call(
        http, "PATCH", f"{WIDGETS}/w/status", 200, headers=MERGE, json={"status": {"ok": True}}
    )
    assert status["status"] == {"ok": True} and status["metadata"]["generation"] == 1
    spec = await call(
        http,
        "PATCH",
        f"{WIDGETS}/w",
        200,
        headers=MERGE,
        json={"spec": {"size": 2}, "status": {"ok": False}},
    )
    assert spec["status"] == {"ok": True} and spec["metadata"]["generation"] == 2

    wrong = dict(widget("x"), apiVersion="lab.ironlb.io/v2")
    assert (await call(http, "POST", WIDGETS, 400, json=wrong))["reason"] == "BadRequest"


async def test_crd_without_status_subresource(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CRDS, 201, json=widget_crd(status=False))
    await call(http, "POST", WIDGETS, 201, json=widget("w"))
    await call(http, "GET", f"{WIDGETS}/w/status", 404)
    patched = await call(
        http, "PATCH", f"{WIDGETS}/w", 200, headers=MERGE, json={"status": {"ok": True}}
    )
    # Without the subresource, status is ordinary content and bumps generation.
    assert patched["status"] == {"ok": True} and patched["metadata"]["generation"] == 2


async def test_cluster_scoped_crd(http: aiohttp.ClientSession) -> None:
    crd = widget_crd(scope="Cluster", group="pools.ironlb.io")
    await call(http, "POST", CRDS, 201, json=crd)
    path = "/apis/pools.ironlb.io/v1/widgets"
    made = await call(
        http, "POST", path, 201, json=dict(widget("c"), apiVersion="pools.ironlb.io/v1")
    )
    assert "namespace" not in made["metadata"]
    await call(http, "GET", f"{path}/c", 200)
    await call(http, "GET", "/apis/pools.ironlb.io/v1/namespaces/default/widgets/c", 404)
    listing = await call(http, "GET", "/apis/pools.ironlb.io/v1", 200)
    assert listing["resources"][0]["namespaced"] is False


async def test_deleting_crd_unregisters_and_drops_objects(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CRDS, 201, json=widget_crd())
    await call(http, "POST", WIDGETS, 201, json=widget("w"))
    await call(http, "DELETE", f"{CRDS}/widgets.lab.ironlb.io", 200)
    await call(http, "GET", "/apis/lab.ironlb.io/v1", 404)
    await call(http, "GET", f"{WIDGETS}/w", 404)
    groups = await call(http, "GET", "/apis", 200)
    assert "lab.ironlb.io" not in {g["name"] for g in groups["groups"]}
    # Re-creating it starts empty.
    await call(http, "POST", CRDS, 201, json=widget_crd())
    assert (await call(http, "GET", WIDGETS, 200))["items"] == []


async def test_invalid_crds_are_rejected(http: aiohttp.ClientSession) -> None:
    misnamed = widget_crd()
    misnamed["metadata"]["name"] = "gadgets.lab.ironlb.io"
    body = await call(http, "POST", CRDS, 422, json=misnamed)
    assert body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "metadata.name"

    no_storage = widget_crd()
    for version in no_storage["spec"]["versions"]:
        version["storage"] = False
    assert (await call(http, "POST", CRDS, 422, json=no_storage))["reason"] == "Invalid"
    bad_scope = widget_crd(scope="Galaxy")
    assert (await call(http, "POST", CRDS, 422, json=bad_scope))["reason"] == "Invalid"
    no_group = widget_crd()
    del no_group["spec"]["group"]
    assert (await call(http, "POST", CRDS, 422, json=no_group))["reason"] == "Invalid"
    # Nothing was registered by the failures.
    await call(http, "GET", "/apis/lab.ironlb.io/v1", 404)


async def test_crd_update_adds_a_version(http: aiohttp.ClientSession) -> None:
    crd = widget_crd()
    crd["spec"]["versions"] = crd["spec"]["versions"][:1]
    created = await call(http, "POST", CRDS, 201, json=crd)
    await call(http, "GET", "/apis/lab.ironlb.io/v1beta1", 404)
    created["spec"]["versions"].append(widget_crd()["spec"]["versions"][1])
    await call(http, "PUT", f"{CRDS}/widgets.lab.ironlb.io", 200, json=created)
    await call(http, "GET", "/apis/lab.ironlb.io/v1beta1", 200)


def pool_crd() -> dict[str, Any]:
    """A cluster-scoped CRD with a structural schema: defaults, enum, minimum, required."""
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["addresses"],
                "properties": {
                    "addresses": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    "autoAssign": {"type": "boolean", "default": True},
                    "priority": {"type": "integer", "minimum": 0},
                    "mode": {"type": "string", "enum": ["L2", "BGP"]},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            },
            "status": {
                "type": "object",
                "properties": {"used": {"type": "integer"}},
            },
        },
    }
    return {
        "metadata": {"name": "pools.ironlb.io"},
        "spec": {
            "group": "ironlb.io",
            "scope": "Cluster",
            "names": {"plural": "pools", "kind": "Pool"},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": schema},
                    "additionalPrinterColumns": [
                        {"name": "Addresses", "type": "string", "jsonPath": ".spec.addresses"},
                        {"name": "Used", "type": "integer", "jsonPath": ".status.used"},
                    ],
                }
            ],
        },
    }


POOLS = "/apis/ironlb.io/v1alpha1/pools"


async def test_schema_prunes_defaults_and_validates(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CRDS, 201, json=pool_crd())
    body = {
        "metadata": {"name": "p"},
        "spec": {"addresses": ["198.18.0.0/28"], "unknown": 1, "extra": {"kept": True}},
        "topLevelJunk": "x",
    }
    made = await call(http, "POST", POOLS, 201, json=body)
    assert made["spec"] == {
        "addresses": ["198.18.0.0/28"],
        "autoAssign": True,
        "extra": {"kept": True},
    }
    assert "topLevelJunk" not in made
    status = await call(
        http,
        "PATCH",
        f"{POOLS}/p/status",
        200,
        headers=MERGE,
        json={"status": {"used": 2, "notInSchema": "dropped"}},
    )
    assert status["status"] == {"used": 2}

    cases = [
        ({"addresses": []}, "spec.addresses"),
        ({"autoAssign": False}, "spec.addresses"),
        ({"addresses": ["a"], "priority": -1}, "spec.priority"),
        ({"addresses": ["a"], "mode": "Magic"}, "spec.mode"),
        ({"addresses": "198.18.0.1"}, "spec.addresses"),
    ]
    for index, (spec, field) in enumerate(cases):
        bad = await call(
            http, "POST", POOLS, 422, json={"metadata": {"name": f"b{index}"}, "spec": spec}
        )
        assert bad["reason"] == "Invalid"
        assert field in [c["field"] for c in bad["details"]["causes"]], bad
    patch_bad = await call(
        http, "PATCH", f"{POOLS}/p", 422, headers=MERGE, json={"spec": {"priority": "high"}}
    )
    assert patch_bad["details"]["causes"][0]["field"] == "spec.priority"


async def test_tables_for_kubectl_get(http: aiohttp.ClientSession) -> None:
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    await call(http, "POST", CRDS, 201, json=pool_crd())
    await call(
        http,
        "POST",
        POOLS,
        201,
        json={"metadata": {"name": "p"}, "spec": {"addresses": ["198.18.0.0/28", "198.18.1.1"]}},
    )
    await call(http, "PATCH", f"{POOLS}/p/status", 200, headers=MERGE, json={"status": {"used": 4}})
    pools = await call(http, "GET", POOLS, 200, headers=accept)
    assert pools["kind"] == "Table" and pools["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in pools["columnDefinitions"]] == ["Name", "Addresses", "Used"]
    assert pools["rows"][0]["cells"] == ["p", '["198.18.0.0/28","198.18.1.1"]', 4]
    assert pools["rows"][0]["object"]["metadata"]["name"] == "p"

    svc = {"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    made = await call(http, "POST", "/api/v1/namespaces/default/services", 201, json=svc)
    one = await call(http, "GET", "/api/v1/namespaces/default/services/web", 200, headers=accept)
    cells = one["rows"][0]["cells"]
    node_port = made["spec"]["ports"][0]["nodePort"]
    assert cells[:5] == [
        "web",
        "LoadBalancer",
        made["spec"]["clusterIP"],
        "<pending>",
        f"80:{node_port}/TCP",
    ]
    plain = await call(http, "GET", "/api/v1/namespaces/default/configmaps", 200, headers=accept)
    assert [c["name"] for c in plain["columnDefinitions"]] == ["Name", "Age"]
