"""Server-side apply, dry runs and field validation on the local API server, driven by
kubectl 1.32 (``apply --server-side``, ``--force-conflicts``, ``--dry-run=server``,
``--validate``) and by raw HTTP where kubectl hides the wire (Status bodies, Warning
headers, refusals). Skipped where kubectl is not installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.cluster.apiserver_helpers import call, run_kubectl

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

CHART_CRD = Path(__file__).parents[2] / "charts/ironlb/crds/ipaddresspools.ironlb.io.yaml"
CM = "/api/v1/namespaces/default/configmaps"
APPLY = {"Content-Type": "application/apply-patch+yaml"}


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    result = run_kubectl(kubeconfig, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def service(*ports: int, labels: str = "{app: web}") -> str:
    listed = ", ".join(f"{{port: {p}, targetPort: 8080}}" for p in ports)
    return (
        "apiVersion: v1\nkind: Service\n"
        f"metadata: {{name: web, labels: {labels}}}\n"
        f"spec: {{selector: {{app: web}}, ports: [{listed}]}}\n"
    )


def configmap(**data: str) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": data}
    )


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (e["manager"], e["operation"]): e["fieldsV1"]
        for e in obj["metadata"].get("managedFields", [])
    }


def get_json(kc: Path, *args: str) -> dict[str, Any]:
    out = kubectl(kc, "get", *args, "-o", "json", "--show-managed-fields")
    value: dict[str, Any] = json.loads(out)
    return value


def test_apply_server_side_creates_updates_and_removes_dropped_fields(
    api_thread_kubeconfig: Path,
) -> None:
    kc = api_thread_kubeconfig
    assert "serverside-applied" in kubectl(
        kc, "apply", "--server-side", "-f", "-", stdin=service(80, 81, labels="{app: web, tier: a}")
    )
    svc = get_json(kc, "service", "web")
    assert [p["port"] for p in svc["spec"]["ports"]] == [80, 81]
    owned = managers(svc)[("kubectl", "Apply")]
    assert set(owned["f:spec"]["f:ports"]) == {
        'k:{"port":80,"protocol":"TCP"}',
        'k:{"port":81,"protocol":"TCP"}',
    }
    assert "f:clusterIP" not in owned["f:spec"]  # defaulted by the server: nobody's

    kubectl(kc, "apply", "--server-side", "-f", "-", stdin=service(81))
    svc = get_json(kc, "service", "web")
    assert [p["port"] for p in svc["spec"]["ports"]] == [81]  # dropped from the manifest
    assert svc["metadata"]["labels"] == {"app": "web"}
    assert svc["spec"]["clusterIP"]  # server-set fields stay

    shown = kubectl(kc, "get", "service", "web", "-o", "yaml", "--show-managed-fields")
    assert "managedFields:" in shown and "manager: kubectl" in shown
    assert "operation: Apply" in shown and "fieldsV1:" in shown
    assert "managedFields" not in kubectl(kc, "get", "service", "web", "-o", "yaml")

    rv = svc["metadata"]["resourceVersion"]
    kubectl(kc, "apply", "--server-side", "-f", "-", stdin=service(81))
    assert get_json(kc, "service", "web")["metadata"]["resourceVersion"] == rv  # idempotent


def test_conflicting_managers_and_force_conflicts(api_thread_kubeconfig: Path) -> None:
    kc = api_thread_kubeconfig
    kubectl(
        kc, "apply", "--server-side", "--field-manager=alice", "-f", "-", stdin=configmap(a="1")
    )
    before = get_json(kc, "configmap", "cfg")

    refused = run_kubectl(
        kc, "apply", "--server-side", "--field-manager=bob", "-f", "-", stdin=configmap(a="2")
    )
    assert refused.returncode == 1
    assert 'conflict with "alice": .data.a' in refused.stderr
    assert "--force-conflicts" in refused.stderr  # kubectl's advice on a Conflict Status
    assert get_json(kc, "configmap", "cfg") == before  # a failed apply stores nothing

    # The same value is no conflict: both own it.
    kubectl(kc, "apply", "--server-side", "--field-manager=bob", "-f", "-", stdin=configmap(a="1"))
    shared = managers(get_json(kc, "configmap", "cfg"))
    assert shared[("alice", "Apply")] == shared[("bob", "Apply")] == {"f:data": {"f:a": {}}}

    kubectl(
        kc,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=bob",
        "-f",
        "-",
        stdin=configmap(a="2", b="x"),
    )
    cm = get_json(kc, "configmap", "cfg")
    assert cm["data"] == {"a": "2", "b": "x"}
    assert ("alice", "Apply") not in managers(cm)  # ownership moved, alice owns nothing now
    assert managers(cm)[("bob", "Apply")] == {"f:data": {"f:a": {}, "f:b": {}}}

    # A client-side write records an Update by its manager and takes the field it changed.
    kubectl(kc, "patch", "configmap", "cfg", "--type=merge", "-p", '{"data":{"b":"y"}}')
    owners = managers(get_json(kc, "configmap", "cfg"))
    assert owners[("kubectl-patch", "Update")] == {"f:data": {"f:b": {}}}
    assert owners[("bob", "Apply")] == {"f:data": {"f:a": {}}}
    again = run_kubectl(
        kc,
        "apply",
        "--server-side",
        "--field-manager=bob",
        "-f",
        "-",
        stdin=configmap(a="2", b="x"),
    )
    assert again.returncode == 1
    assert 'conflict with "kubectl-patch" using v1: .data.b' in again.stderr


def test_client_side_apply_moves_to_server_side(api_thread_kubeconfig: Path) -> None:
    """kubectl's first server-side apply over a client-side one rewrites managedFields
    with a JSON patch (the server takes written managedFields), so later applies own
    what ``kubectl-client-side-apply`` owned and change it without a conflict."""
    kc = api_thread_kubeconfig
    kubectl(kc, "apply", "-f", "-", stdin=configmap(a="1"))
    assert set(managers(get_json(kc, "configmap", "cfg"))) == {
        ("kubectl-client-side-apply", "Update")
    }
    kubectl(kc, "apply", "--server-side", "-f", "-", stdin=configmap(a="1"))
    owners = managers(get_json(kc, "configmap", "cfg"))
    assert set(owners) == {("kubectl", "Apply"), ("kubectl-last-applied", "Apply")}
    assert owners[("kubectl", "Apply")] == {"f:data": {"f:a": {}}}
    kubectl(kc, "apply", "--server-side", "-f", "-", stdin=configmap(a="2"))
    assert get_json(kc, "configmap", "cfg")["data"] == {"a": "2"}


def test_dry_run_server_stores_nothing(api_thread_kubeconfig: Path) -> None:
    kc = api_thread_kubeconfig
    out = kubectl(
        kc, "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=configmap(a="1")
    )
    assert "(server dry run)" in out
    missing = run_kubectl(kc, "get", "configmap", "cfg")
    assert missing.returncode == 1 and "NotFound" in missing.stderr

    kubectl(kc, "create", "configmap", "cfg", "--from-literal=a=1")
    before = get_json(kc, "configmap", "cfg")
    kubectl(
        kc,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        "-",
        stdin=configmap(a="2"),
    )
    kubectl(kc, "delete", "configmap", "cfg", "--dry-run=server")
    created = run_kubectl(
        kc, "create", "service", "clusterip", "dry", "--tcp=80", "--dry-run=server", "-o", "json"
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["spec"]["clusterIP"]  # answered as if done
    assert get_json(kc, "configmap", "cfg") == before
    assert run_kubectl(kc, "get", "service", "dry").returncode == 1


def test_diff_server_side_and_status_subresource_apply(api_thread_kubeconfig: Path) -> None:
    kc = api_thread_kubeconfig
    kubectl(kc, "apply", "--server-side", "-f", "-", stdin=service(80))
    before = get_json(kc, "service", "web")
    diff = run_kubectl(kc, "diff", "--server-side", "-f", "-", stdin=service(81))
    assert diff.returncode == 1, diff.stderr  # 1: differences found
    assert "+  - port: 81" in diff.stdout and "-  - port: 80" in diff.stdout
    assert "resourceVersion" not in diff.stdout  # a dry run writes nothing
    assert get_json(kc, "service", "web") == before

    status = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
        "status: {loadBalancer: {ingress: [{ip: 198.18.0.1}]}}\n"
    )
    kubectl(
        kc,
        "apply",
        "--server-side",
        "--subresource=status",
        "--field-manager=ctl",
        "-f",
        "-",
        stdin=status,
    )
    svc = get_json(kc, "service", "web")
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "198.18.0.1"}]
    entry = next(e for e in svc["metadata"]["managedFields"] if e["manager"] == "ctl")
    assert entry["subresource"] == "status" and entry["operation"] == "Apply"
    assert svc["spec"] == before["spec"]


POOL_TYPO = """\
apiVersion: ironlb.io/v1alpha1
kind: IPAddressPool
metadata: {name: typo}
spec:
  addresses: [198.18.0.0/28]
  serviceAllocation:
    serviceSelectr: [{matchLabels: {app: web}}]
"""


def test_mistyped_pool_field_is_reported(api_thread_kubeconfig: Path) -> None:
    kc = api_thread_kubeconfig
    kubectl(kc, "apply", "-f", str(CHART_CRD))
    strict = run_kubectl(kc, "apply", "--server-side", "-f", "-", stdin=POOL_TYPO)
    assert strict.returncode == 1
    assert 'unknown field "spec.serviceAllocation.serviceSelectr"' in strict.stderr
    assert run_kubectl(kc, "get", "ipaddresspool", "typo").returncode == 1  # nothing stored

    warned = run_kubectl(kc, "apply", "--validate=warn", "-f", "-", stdin=POOL_TYPO)
    assert warned.returncode == 0, warned.stderr
    assert 'Warning: unknown field "spec.serviceAllocation.serviceSelectr"' in warned.stderr
    pool = get_json(kc, "ipaddresspool", "typo")
    assert "serviceSelectr" not in pool["spec"].get("serviceAllocation", {})  # pruned, but said so

    quiet = run_kubectl(kc, "apply", "--validate=false", "-f", "-", stdin=POOL_TYPO)
    assert quiet.returncode == 0 and "Warning" not in quiet.stderr


POOLS = "/apis/ironlb.io/v1alpha1/ipaddresspools"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def cm_body(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def test_apply_over_http_status_codes_and_conflict_body(http: aiohttp.ClientSession) -> None:
    made = await call(
        http, "PATCH", f"{CM}/x?fieldManager=a", 201, headers=APPLY, json=cm_body("x", k="1")
    )
    assert [(e["manager"], e["operation"]) for e in made["metadata"]["managedFields"]] == [
        ("a", "Apply")
    ]
    same = await call(
        http, "PATCH", f"{CM}/x?fieldManager=a", 200, headers=APPLY, json=cm_body("x", k="1")
    )
    assert same == made  # a no-op apply writes nothing

    refused = await call(
        http, "PATCH", f"{CM}/x?fieldManager=b", 409, headers=APPLY, json=cm_body("x", k="2")
    )
    assert refused["reason"] == "Conflict" and refused["code"] == 409
    assert refused["message"] == 'Apply failed with 1 conflict: conflict with "a": .data.k'
    assert refused["details"]["causes"] == [
        {
            "type": "FieldManagerConflict",
            "message": 'conflict with "a": .data.k',
            "field": ".data.k",
        }
    ]
    assert await call(http, "GET", f"{CM}/x", 200) == made

    # YAML bodies, as the media type says; force moves ownership.
    forced = await call(
        http,
        "PATCH",
        f"{CM}/x?fieldManager=b&force=true",
        200,
        headers=APPLY,
        data=b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {k: '2'}\n",
    )
    assert forced["data"] == {"k": "2"}
    assert [e["manager"] for e in forced["metadata"]["managedFields"]] == ["b"]


async def test_apply_refusals_store_nothing(http: aiohttp.ClientSession) -> None:
    made = await call(
        http, "PATCH", f"{CM}/x?fieldManager=a", 201, headers=APPLY, json=cm_body("x", k="1")
    )
    cases: list[tuple[str, dict[str, str], Any, str]] = [
        (
            "?fieldManager=a",
            APPLY,
            {"metadata": {"name": "x"}, "data": {"k": "3"}},
            "must set apiVersion and kind",
        ),
        ("?fieldManager=a", APPLY, cm_body("other", k="3"), "does not match the name on the URL"),
        ("?fieldManager=" + "m" * 129, APPLY, cm_body("x", k="3"), "fieldManager: Too long"),
        (
            "?fieldManager=a&fieldValidation=Loud",
            APPLY,
            cm_body("x", k="3"),
            "fieldValidation: Unsupported value",
        ),
        (
            "?fieldManager=a&dryRun=Some",
            APPLY,
            cm_body("x", k="3"),
            'dryRun: Unsupported value: "Some"',
        ),
        (
            "?force=true",
            {"Content-Type": "application/merge-patch+json"},
            {"data": {"k": "3"}},
            "non-apply patch",
        ),
    ]
    for query, headers, body, text in cases:
        refused = await call(http, "PATCH", f"{CM}/x{query}", 400, headers=headers, json=body)
        assert refused["reason"] == "BadRequest" and text in refused["message"], refused
    assert await call(http, "GET", f"{CM}/x", 200) == made
    await call(
        http, "PATCH", f"{CM}/none/status?fieldManager=a", 404, headers=APPLY, json=cm_body("none")
    )


async def test_dry_run_answers_as_if_done_and_stores_nothing(http: aiohttp.ClientSession) -> None:
    before = await call(http, "GET", CM, 200)
    dry = await call(http, "POST", f"{CM}?dryRun=All", 201, json=cm_body("d", k="1"))
    assert dry["metadata"]["uid"] and dry["data"] == {"k": "1"}
    assert "resourceVersion" not in dry["metadata"]  # nothing was written
    await call(http, "GET", f"{CM}/d", 404)
    await call(
        http, "PATCH", f"{CM}/d?fieldManager=a&dryRun=All", 201, headers=APPLY, json=cm_body("d")
    )
    await call(http, "GET", f"{CM}/d", 404)

    real = await call(http, "POST", CM, 201, json=cm_body("d", k="1"))
    changed = await call(http, "PUT", f"{CM}/d?dryRun=All", 200, json=cm_body("d", k="2"))
    assert changed["data"] == {"k": "2"}
    assert changed["metadata"]["resourceVersion"] == real["metadata"]["resourceVersion"]
    gone = await call(http, "DELETE", f"{CM}/d?dryRun=All", 200)
    assert gone["metadata"]["name"] == "d"
    assert await call(http, "GET", f"{CM}/d", 200) == real
    after = await call(http, "GET", CM, 200)
    assert (
        int(after["metadata"]["resourceVersion"]) == int(before["metadata"]["resourceVersion"]) + 1
    )


async def test_field_validation_of_custom_objects(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CRDS, 201, json=yaml.safe_load(CHART_CRD.read_text()))
    pool = {
        "apiVersion": "ironlb.io/v1alpha1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p"},
        "spec": {"addresses": ["198.18.0.0/28"], "autoAsign": False, "serviceSelectr": []},
    }
    text = 'unknown field "spec.autoAsign", unknown field "spec.serviceSelectr"'
    strict = await call(http, "POST", f"{POOLS}?fieldValidation=Strict", 400, json=pool)
    assert strict["message"] == (
        'IPAddressPool in version "v1alpha1" cannot be handled as a IPAddressPool: '
        f"strict decoding error: {text}"
    )
    await call(http, "GET", f"{POOLS}/p", 404)
    async with http.post(POOLS, json=pool) as rsp:  # Warn is the default
        assert rsp.status == 201
        assert rsp.headers.getall("Warning") == [
            '299 - "unknown field \\"spec.autoAsign\\""',
            '299 - "unknown field \\"spec.serviceSelectr\\""',
        ]
        assert (await rsp.json())["spec"] == {
            "addresses": ["198.18.0.0/28"],
            "autoAssign": True,
            "avoidBuggyIPs": False,
        }
    async with http.put(f"{POOLS}/p?fieldValidation=Ignore", json=pool) as rsp:
        assert rsp.status == 200 and "Warning" not in rsp.headers


LIST_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.lab.ironlb.io"},
    "spec": {
        "group": "lab.ironlb.io",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "parts": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["name"],
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "name": {"type": "string"},
                                                "size": {"type": "integer"},
                                            },
                                        },
                                    },
                                    "tags": {"type": "array", "items": {"type": "string"}},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


async def test_crd_list_map_keys_merge_per_item(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CRDS, 201, json=LIST_CRD)
    url = "/apis/lab.ironlb.io/v1/namespaces/default/gadgets/g"

    def gadget(parts: list[dict[str, Any]], tags: list[str]) -> dict[str, Any]:
        return {
            "apiVersion": "lab.ironlb.io/v1",
            "kind": "Gadget",
            "metadata": {"name": "g"},
            "spec": {"parts": parts, "tags": tags},
        }

    await call(
        http,
        "PATCH",
        f"{url}?fieldManager=a",
        201,
        headers=APPLY,
        json=gadget([{"name": "x", "size": 1}], ["t1"]),
    )
    both = await call(
        http,
        "PATCH",
        f"{url}?fieldManager=b",
        200,
        headers=APPLY,
        json=gadget([{"name": "y", "size": 2}], ["t1"]),
    )
    assert both["spec"]["parts"] == [{"name": "y", "size": 2}, {"name": "x", "size": 1}]
    assert both["spec"]["tags"] == ["t1"]  # atomic list, same value: shared
    atomic = await call(
        http,
        "PATCH",
        f"{url}?fieldManager=b",
        409,
        headers=APPLY,
        json=gadget([{"name": "y", "size": 2}], ["t2"]),
    )
    assert atomic["details"]["causes"][0]["field"] == ".spec.tags"
    # a drops its item: only a's item goes
    left = await call(
        http, "PATCH", f"{url}?fieldManager=a", 200, headers=APPLY, json=gadget([], ["t1"])
    )
    assert left["spec"]["parts"] == [{"name": "y", "size": 2}]


async def test_writes_record_update_entries_and_may_set_managed_fields(
    http: aiohttp.ClientSession,
) -> None:
    made = await call(
        http, "POST", CM, 201, json=cm_body("u", k="1"), headers={"User-Agent": "tool/1.0 (x)"}
    )
    assert [(e["manager"], e["operation"]) for e in made["metadata"]["managedFields"]] == [
        ("tool", "Update")  # the User-Agent up to its first "/"
    ]
    body = {**cm_body("u", k="1", j="2"), "metadata": {"name": "u"}}
    put = await call(http, "PUT", f"{CM}/u?fieldManager=editor", 200, json=body)
    owners = {e["manager"]: e["fieldsV1"] for e in put["metadata"]["managedFields"]}
    assert owners == {"tool": {"f:data": {"f:k": {}}}, "editor": {"f:data": {"f:j": {}}}}

    moved = [{**put["metadata"]["managedFields"][0], "manager": "renamed"}]
    merge = {"Content-Type": "application/merge-patch+json"}
    patched = await call(
        http, "PATCH", f"{CM}/u", 200, headers=merge, json={"metadata": {"managedFields": moved}}
    )
    assert [e["manager"] for e in patched["metadata"]["managedFields"]] == ["renamed"]
    cleared = {**body, "metadata": {"name": "u", "managedFields": []}}
    put = await call(http, "PUT", f"{CM}/u?fieldManager=editor", 200, json=cleared)
    assert "managedFields" not in put["metadata"]


async def test_duplicate_fields_are_warned_about_or_refused(http: aiohttp.ClientSession) -> None:
    twice = (
        b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"k":"1","k":"2"}}'
    )
    json_type = {"Content-Type": "application/json"}
    strict = await call(
        http, "POST", f"{CM}?fieldValidation=Strict", 400, data=twice, headers=json_type
    )
    assert strict["message"] == 'strict decoding error: duplicate field "data.k"'
    await call(http, "GET", f"{CM}/dup", 404)
    async with http.post(CM, data=twice, headers=json_type) as rsp:
        assert rsp.status == 201
        assert rsp.headers.getall("Warning") == ['299 - "duplicate field \\"data.k\\""']
        assert (await rsp.json())["data"] == {"k": "2"}  # the last one wins, as in Go
    applied = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dup}\ndata:\n  k: '3'\n  k: '4'\n"
    async with http.patch(
        f"{CM}/dup?fieldManager=a&force=true", data=applied, headers=APPLY
    ) as rsp:
        assert rsp.status == 200
        assert rsp.headers.getall("Warning") == ['299 - "duplicate field \\"data.k\\""']
    async with http.put(f"{CM}/dup?fieldValidation=Ignore", data=twice, headers=json_type) as rsp:
        assert rsp.status == 200 and "Warning" not in rsp.headers
