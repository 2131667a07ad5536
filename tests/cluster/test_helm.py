"""Helm v4 (the ``helm-python-sdk`` library, through ``ironlb.lab.helm``) against the lab
API over real HTTP: install, upgrade, rollback, history, status, wait and uninstall of
the small chart ``tests/cluster/charts/hello``, with Helm's default release storage
(Secrets, protobuf bodies) and server-side apply; and every refusal of the wrapper."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ironlb.lab.apiserver import LocalApiServer
from ironlb.lab.helm import Helm, HelmFailed, Release, template
from tests.support import ApiClient, api_client, eventually

pytestmark = pytest.mark.cluster

CHART = Path(__file__).parent / "charts" / "hello"
PRODUCT_CRDS = Path(__file__).parents[2] / "charts" / "ironlb" / "crds"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
NS = "/api/v1/namespaces/default"
APPS = "/apis/apps/v1/namespaces/default"
RELEASE_SECRET_TYPE = "helm.sh/release.v1"


def helm_field_manager() -> str:
    """What Helm calls its field manager: the base name of this process's ``argv[0]``
    (Go's ``os.Args[0]``, which a library loaded into Python shares)."""
    argv0 = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0].decode()
    return os.path.basename(argv0)


@pytest.fixture
async def api(apiserver: LocalApiServer) -> AsyncIterator[ApiClient]:
    async with api_client(apiserver.url) as client:
        yield client


@pytest.fixture
def helm(kubeconfig: Path) -> Any:
    with Helm(kubeconfig) as client:
        yield client


async def status_code(api: ApiClient, path: str) -> int:
    async with api.http.get(path) as rsp:
        return rsp.status


async def release_secrets(api: ApiClient, name: str) -> dict[str, dict[str, Any]]:
    """The release's storage Secrets by name, found the way Helm finds them."""
    items = await api.items(f"{NS}/secrets", labelSelector=f"owner=helm,name={name}")
    return {item["metadata"]["name"]: item for item in items}


def decode_release(secret: dict[str, Any]) -> dict[str, Any]:
    """Helm's stored release: JSON, gzipped, base64 (and base64 again as Secret data)."""
    stored = base64.b64decode(base64.b64decode(secret["data"]["release"]))
    decoded: dict[str, Any] = json.loads(gzip.decompress(stored))
    return decoded


def manifest_objects(manifest: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(manifest) if doc
    }


def apply_entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in obj["metadata"].get("managedFields", []) if e["operation"] == "Apply"]


async def test_install_applies_the_rendered_objects_and_stores_the_release(
    api: ApiClient, helm: Helm
) -> None:
    release = await asyncio.to_thread(helm.install, CHART, "demo", {"greeting": "hi"})
    assert (release.name, release.namespace, release.revision) == ("demo", "default", 1)
    assert (release.status, release.chart, release.app_version) == (
        "deployed",
        "hello-0.1.0",
        "1.0",
    )

    rendered = manifest_objects(release.manifest)
    offline = manifest_objects(
        "---\n".join(template(CHART, {"greeting": "hi"}, release="demo").values())
    )
    assert rendered == offline
    assert set(rendered) == {
        ("ConfigMap", "demo-config"),
        ("Service", "demo-lb"),
        ("Deployment", "demo-web"),
        ("Secret", "demo-token"),
    }

    config = await api.get(f"{NS}/configmaps/demo-config")
    assert config["data"] == {"greeting": "hi", "port": "8080"}
    # Helm adds its ownership marks to every object it applies.
    assert config["metadata"]["labels"] == {
        "app.kubernetes.io/name": "hello",
        "app.kubernetes.io/instance": "demo",
        "app.kubernetes.io/managed-by": "Helm",
    }
    assert config["metadata"]["annotations"] == {
        "meta.helm.sh/release-name": "demo",
        "meta.helm.sh/release-namespace": "default",
    }
    service = await api.get(f"{NS}/services/demo-lb")
    assert service["spec"]["type"] == "LoadBalancer"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 8080, 80)
    ]
    assert service["spec"]["clusterIP"]
    deployment = await api.get(f"{APPS}/deployments/demo-web")
    assert deployment["spec"]["replicas"] == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "nginx:1.27"
    assert container["env"][0]["valueFrom"]["configMapKeyRef"]["name"] == "demo-config"
    token = await api.get(f"{NS}/secrets/demo-token")
    assert base64.b64decode(token["data"]["token"]) == b"s3cret"
    assert "stringData" not in token

    manager = helm_field_manager()
    for obj in (config, service, deployment, token):
        entries = apply_entries(obj)
        assert [e["manager"] for e in entries] == [manager], obj["metadata"]
        assert "f:metadata" in entries[0]["fieldsV1"]

    secrets = await release_secrets(api, "demo")
    assert list(secrets) == ["sh.helm.release.v1.demo.v1"]
    stored = secrets["sh.helm.release.v1.demo.v1"]
    assert stored["type"] == RELEASE_SECRET_TYPE
    labels = stored["metadata"]["labels"]
    assert {k: labels[k] for k in ("owner", "name", "status", "version")} == {
        "owner": "helm",
        "name": "demo",
        "status": "deployed",
        "version": "1",
    }
    body = decode_release(stored)
    assert (body["name"], body["version"], body["namespace"]) == ("demo", 1, "default")
    assert body["config"] == {"greeting": "hi"}
    assert body["info"]["status"] == "deployed"
    assert manifest_objects(body["manifest"]) == rendered


async def test_upgrade_rollback_history_and_uninstall(api: ApiClient, helm: Helm) -> None:
    await asyncio.to_thread(helm.install, CHART, "demo", {"greeting": "hi"})
    changed = {
        "greeting": "yo",
        "port": 9090,
        "deployment": {"replicas": 2},
        "secret": {"enabled": False},
    }
    upgraded = await asyncio.to_thread(helm.upgrade, CHART, "demo", changed)
    assert (upgraded.revision, upgraded.status) == (2, "deployed")
    assert ("Secret", "demo-token") not in manifest_objects(upgraded.manifest)

    config = await api.get(f"{NS}/configmaps/demo-config")
    assert config["data"] == {"greeting": "yo", "port": "9090"}
    service = await api.get(f"{NS}/services/demo-lb")
    # Server-side apply: Helm owned the 8080 entry and no longer applies it.
    assert [p["port"] for p in service["spec"]["ports"]] == [9090]
    deployment = await api.get(f"{APPS}/deployments/demo-web")
    assert deployment["spec"]["replicas"] == 2
    assert await status_code(api, f"{NS}/secrets/demo-token") == 404

    secrets = await release_secrets(api, "demo")
    assert {n: s["metadata"]["labels"]["status"] for n, s in secrets.items()} == {
        "sh.helm.release.v1.demo.v1": "superseded",
        "sh.helm.release.v1.demo.v2": "deployed",
    }
    assert decode_release(secrets["sh.helm.release.v1.demo.v2"])["config"] == changed

    history = await asyncio.to_thread(helm.history, "demo")
    assert [(r.revision, r.status) for r in history] == [(1, "superseded"), (2, "deployed")]
    status = await asyncio.to_thread(helm.status, "demo")
    assert (status.revision, status.status) == (2, "deployed")
    assert manifest_objects(status.manifest) == manifest_objects(upgraded.manifest)

    rolled = await asyncio.to_thread(helm.rollback, "demo", 1)
    assert (rolled.revision, rolled.status) == (3, "deployed")
    config = await api.get(f"{NS}/configmaps/demo-config")
    assert config["data"] == {"greeting": "hi", "port": "8080"}
    service = await api.get(f"{NS}/services/demo-lb")
    assert [p["port"] for p in service["spec"]["ports"]] == [8080]
    token = await api.get(f"{NS}/secrets/demo-token")
    assert base64.b64decode(token["data"]["token"]) == b"s3cret"
    history = await asyncio.to_thread(helm.history, "demo")
    assert [(r.revision, r.status) for r in history] == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "deployed"),
    ]

    gone = await asyncio.to_thread(helm.uninstall, "demo")
    assert (gone.revision, gone.status) == (3, "uninstalled")
    for path in (
        f"{NS}/configmaps/demo-config",
        f"{NS}/services/demo-lb",
        f"{APPS}/deployments/demo-web",
        f"{NS}/secrets/demo-token",
    ):
        assert await status_code(api, path) == 404, path
    assert await release_secrets(api, "demo") == {}
    assert await api.items(f"{NS}/secrets", labelSelector="owner=helm") == []


async def test_legacy_wait_lasts_until_the_loadbalancer_has_an_address(
    api: ApiClient, helm: Helm
) -> None:
    """``wait="legacy"`` (Helm 3's waiter) holds the install until the Service has an
    ingress address, which ironlb's controller would write; here the test writes it."""
    values = {"deployment": {"enabled": False}, "secret": {"enabled": False}}
    install = asyncio.create_task(
        asyncio.to_thread(helm.install, CHART, "demo", values, wait="legacy", timeout=60)
    )

    async def service_created() -> bool:
        if install.done():
            install.result()  # an early failure (or success) ends the test here
        return await _exists(api, f"{NS}/services/demo-lb")

    try:
        await eventually(service_created, what="the Service")
        assert await _stored_as(api, "pending-install")
        await asyncio.sleep(1.0)
        assert not install.done(), "install returned before the Service had an address"
        assert await _stored_as(api, "pending-install")
        async with api.http.patch(
            f"{NS}/services/demo-lb/status",
            json={"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as rsp:
            assert rsp.status == 200, await rsp.text()
        release = await asyncio.wait_for(asyncio.shield(install), 60)
    finally:
        if not install.done():  # let Helm's thread end (its timeout) before the server stops
            await asyncio.wait([install], timeout=90)
    assert (release.revision, release.status) == (1, "deployed")
    assert await _stored_as(api, "deployed")


async def _exists(api: ApiClient, path: str) -> bool:
    return await status_code(api, path) == 200


async def _stored_as(api: ApiClient, status: str) -> bool:
    secrets = await release_secrets(api, "demo")
    return [s["metadata"]["labels"]["status"] for s in secrets.values()] == [status]


async def test_watcher_wait_reads_status_through_list_and_watch(api: ApiClient, helm: Helm) -> None:
    """``wait="watcher"`` (Helm v4's kstatus watcher: list + watch of each kind) ends as
    soon as every object is current; for kstatus a LoadBalancer Service is current once
    it has a clusterIP."""
    values = {"deployment": {"enabled": False}}
    release = await asyncio.to_thread(
        helm.install, CHART, "demo", values, wait="watcher", timeout=60
    )
    assert (release.revision, release.status) == (1, "deployed")
    assert await _stored_as(api, "deployed")
    upgraded = await asyncio.to_thread(
        helm.upgrade, CHART, "demo", {**values, "greeting": "yo"}, wait="watcher", timeout=60
    )
    assert (upgraded.revision, upgraded.status) == (2, "deployed")


async def test_wait_for_a_deployment_fails_without_a_controller(api: ApiClient, helm: Helm) -> None:
    """The lab runs no kube-controller-manager, so a Deployment never has available
    replicas: a waiting install fails after its timeout, in one line, and Helm records
    the revision as failed (the objects stay, as with the CLI)."""
    with pytest.raises(HelmFailed) as caught:
        await asyncio.to_thread(helm.install, CHART, "demo", wait="watcher", timeout=2)
    message = str(caught.value)
    assert message.startswith("helm install demo: ")
    assert "\n" not in message
    assert "Deployment/default/demo-web" in message
    assert await _stored_as(api, "failed")
    assert await status_code(api, f"{APPS}/deployments/demo-web") == 200


async def test_template_renders_offline_without_notes_or_empty_templates() -> None:
    rendered = template(CHART, {"secret": {"enabled": False}, "port": 81}, release="x")
    assert sorted(rendered) == [
        "hello/templates/configmap.yaml",
        "hello/templates/deployment.yaml",
        "hello/templates/service.yaml",
    ]
    service = yaml.safe_load(rendered["hello/templates/service.yaml"])
    assert service["metadata"]["name"] == "x-lb"
    assert service["spec"]["ports"][0]["port"] == 81


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda h: h.install(CHART, "Bad_Name"), "helm install 'Bad_Name': invalid release name"),
        (lambda h: h.install(CHART, "x" * 54), "invalid release name"),
        (lambda h: h.install(CHART.parent / "nope", "demo"), "is not a chart"),
        (lambda h: h.install(CHART, "demo", {"when": object()}), "values are not JSON data"),
        (lambda h: h.install(CHART, "demo", ["greeting"]), "values must be a mapping"),
        (lambda h: h.install(CHART, "demo", timeout=0), "timeout must be a positive number"),
        (lambda h: h.install(CHART, "demo", wait="yes"), "wait must be one of watcher, legacy"),
        (lambda h: h.install(CHART, "demo", {"deployment": "x"}), "helm install demo: "),
        (lambda h: h.upgrade(CHART, "demo"), "helm upgrade demo: "),
        (lambda h: h.uninstall("demo"), "helm uninstall demo: "),
        (lambda h: h.rollback("demo", 0), "revision must be >= 1"),
        (lambda h: h.rollback("demo"), "helm rollback demo: "),
        (lambda h: h.status("demo"), "helm status demo: "),
    ],
)
async def test_refusals_are_one_line_and_store_nothing(
    api: ApiClient, helm: Helm, call: Any, expected: str
) -> None:
    with pytest.raises(HelmFailed) as caught:
        await asyncio.to_thread(call, helm)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert await api.items(f"{NS}/secrets") == []
    assert await api.items(f"{NS}/configmaps") == []
    assert await api.items(f"{NS}/services") == []


async def test_refusals_on_a_missing_release_say_not_found(helm: Helm) -> None:
    for call in (
        lambda: helm.uninstall("ghost"),
        lambda: helm.history("ghost"),
        lambda: helm.status("ghost"),
        lambda: helm.rollback("ghost"),
    ):
        with pytest.raises(HelmFailed) as caught:
            await asyncio.to_thread(call)
        assert caught.value.not_found, caught.value
    # Helm's upgrade looks for the last *deployed* revision, and says so.
    with pytest.raises(HelmFailed) as caught:
        await asyncio.to_thread(helm.upgrade, CHART, "ghost")
    assert str(caught.value) == 'helm upgrade ghost: "ghost" has no deployed releases'


async def test_second_install_of_a_release_is_refused_and_keeps_the_first(
    api: ApiClient, helm: Helm
) -> None:
    await asyncio.to_thread(helm.install, CHART, "demo", {"greeting": "hi"})
    with pytest.raises(HelmFailed) as caught:
        await asyncio.to_thread(helm.install, CHART, "demo", {"greeting": "other"})
    assert "\n" not in str(caught.value)
    assert "cannot reuse a name that is still in use" in str(caught.value)
    assert list(await release_secrets(api, "demo")) == ["sh.helm.release.v1.demo.v1"]
    config = await api.get(f"{NS}/configmaps/demo-config")
    assert config["data"]["greeting"] == "hi"


async def test_release_record_from_a_summary_missing_keys_is_refused() -> None:
    with pytest.raises(HelmFailed, match="unexpected release summary"):
        Release.from_summary({"name": "demo"})


async def test_helm_with_an_unreachable_api_fails_in_one_line(tmp_path: Path) -> None:
    from ironlb.lab.apiserver.kubeconfig import write_kubeconfig
    from tests.support import free_port

    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, f"http://127.0.0.1:{free_port()}")
    with Helm(kubeconfig) as client, pytest.raises(HelmFailed) as caught:
        await asyncio.to_thread(client.install, CHART, "demo", timeout=5)
    assert str(caught.value).startswith("helm install demo: ")
    assert "\n" not in str(caught.value)


def pools_chart(directory: Path) -> Path:
    """A chart with ironlb's own CRDs under ``crds/`` and one IPAddressPool template."""
    chart = directory / "pools"
    (chart / "crds").mkdir(parents=True)
    (chart / "templates").mkdir()
    for crd in PRODUCT_CRDS.glob("*.yaml"):
        shutil.copy(crd, chart / "crds" / crd.name)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: pools\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("addresses: [198.18.10.0/24]\n")
    (chart / "templates" / "pool.yaml").write_text(
        "apiVersion: ironlb.io/v1alpha1\nkind: IPAddressPool\n"
        "metadata: {name: {{ .Release.Name }}}\n"
        "spec:\n  addresses: {{ toJson .Values.addresses }}\n"
    )
    return chart


async def test_install_applies_crds_first_into_a_created_namespace(
    api: ApiClient, kubeconfig: Path, tmp_path: Path
) -> None:
    """As ``make demo`` will: ``--create-namespace``, the chart's CRDs, then a custom
    object of the new type (Helm rediscovers the API in between)."""
    chart = pools_chart(tmp_path)
    with Helm(kubeconfig, namespace="ironlb-system") as helm:
        release = await asyncio.to_thread(
            helm.install, chart, "lab", {"addresses": ["198.18.20.0/24"]}, create_namespace=True
        )
        assert (release.namespace, release.revision, release.status) == (
            "ironlb-system",
            1,
            "deployed",
        )
        await api.get("/api/v1/namespaces/ironlb-system")
        crd = await api.get(f"{CRDS}/ipaddresspools.ironlb.io")
        assert [e["manager"] for e in apply_entries(crd)] == [helm_field_manager()]
        pool = await api.get("/apis/ironlb.io/v1alpha1/ipaddresspools/lab")
        assert pool["spec"]["addresses"] == ["198.18.20.0/24"]
        stored = await api.items(
            "/api/v1/namespaces/ironlb-system/secrets", labelSelector="owner=helm,name=lab"
        )
        assert [s["metadata"]["name"] for s in stored] == ["sh.helm.release.v1.lab.v1"]

        await asyncio.to_thread(helm.uninstall, "lab")
    assert await status_code(api, "/apis/ironlb.io/v1alpha1/ipaddresspools/lab") == 404
    assert await status_code(api, f"{CRDS}/ipaddresspools.ironlb.io") == 200  # Helm keeps CRDs
    assert await api.items("/api/v1/namespaces/ironlb-system/secrets") == []


async def test_upgrade_conflicts_on_a_field_another_manager_changed(
    api: ApiClient, helm: Helm
) -> None:
    """Server-side apply without force (Helm v4's upgrade; the SDK has no
    ``--force-conflicts``): a value someone else set is not overwritten; Helm records
    the revision as failed and the object keeps the other manager's value."""
    await asyncio.to_thread(helm.install, CHART, "demo")
    await api.call(
        "PATCH",
        f"{NS}/configmaps/demo-config",
        {"data": {"greeting": "edited"}},
        fieldManager="kubectl-edit",
    )
    with pytest.raises(HelmFailed) as caught:
        await asyncio.to_thread(helm.upgrade, CHART, "demo", {"greeting": "new"})
    message = str(caught.value)
    assert "\n" not in message
    assert 'Apply failed with 1 conflict: conflict with "kubectl-edit"' in message
    assert ".data.greeting" in message
    history = await asyncio.to_thread(helm.history, "demo")
    assert [(r.revision, r.status) for r in history] == [(1, "deployed"), (2, "failed")]
    config = await api.get(f"{NS}/configmaps/demo-config")
    assert config["data"]["greeting"] == "edited"
    # Applying the other manager's value is no conflict (both then own the field).
    upgraded = await asyncio.to_thread(
        helm.upgrade, CHART, "demo", {"greeting": "edited", "port": 9090}
    )
    assert (upgraded.revision, upgraded.status) == (3, "deployed")
    config = await api.get(f"{NS}/configmaps/demo-config")
    assert config["data"] == {"greeting": "edited", "port": "9090"}
    owners = {e["manager"] for e in config["metadata"]["managedFields"]}
    assert owners == {helm_field_manager(), "kubectl-edit"}


async def test_install_refuses_to_take_over_an_object_helm_does_not_own(
    api: ApiClient, helm: Helm
) -> None:
    """Helm's ownership check: an existing object without Helm's label and annotations
    is not adopted; nothing is stored and the object is left as it was."""
    await api.create(
        f"{NS}/configmaps", {"metadata": {"name": "demo-config"}, "data": {"greeting": "mine"}}
    )
    with pytest.raises(HelmFailed) as caught:
        await asyncio.to_thread(helm.install, CHART, "demo")
    message = str(caught.value)
    assert "\n" not in message
    assert 'ConfigMap "demo-config" in namespace "default" exists and cannot be imported' in message
    assert await release_secrets(api, "demo") == {}
    config = await api.get(f"{NS}/configmaps/demo-config")
    assert config["data"] == {"greeting": "mine"}
    assert await status_code(api, f"{NS}/services/demo-lb") == 404


async def test_objects_written_client_side_by_helm_move_to_server_side_apply(
    api: ApiClient, helm: Helm
) -> None:
    """An object a client-side Helm wrote (an ``Update`` entry of Helm's field manager,
    with Helm's ownership marks) is adopted: Helm first rewrites ``managedFields`` with
    a JSON patch (its entry becomes ``Apply``), then applies, so a key the chart no
    longer renders is removed."""
    body = {
        "metadata": {
            "name": "demo-config",
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {
                "meta.helm.sh/release-name": "demo",
                "meta.helm.sh/release-namespace": "default",
            },
        },
        "data": {"greeting": "old", "dropped": "x"},
    }
    created = await api.call("POST", f"{NS}/configmaps", body, fieldManager=helm_field_manager())
    assert [e["operation"] for e in created["metadata"]["managedFields"]] == ["Update"]
    release = await asyncio.to_thread(helm.install, CHART, "demo")
    assert release.status == "deployed"
    config = await api.get(f"{NS}/configmaps/demo-config")
    assert config["data"] == {"greeting": "hello", "port": "8080"}
    entries = config["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"]) for e in entries] == [(helm_field_manager(), "Apply")]
    assert set(entries[0]["fieldsV1"]["f:data"]) == {"f:greeting", "f:port"}


def test_a_missing_kubeconfig_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HelmFailed, match=r"^helm: kubeconfig '.*/nope' is not a file$"):
        Helm(tmp_path / "nope")


async def test_hooks_run_before_install_and_upgrade_and_outlive_the_release(
    api: ApiClient, helm: Helm
) -> None:
    values = {"hook": {"enabled": True}}
    release = await asyncio.to_thread(helm.install, CHART, "demo", values)
    assert ("ConfigMap", "demo-hook") not in manifest_objects(release.manifest)
    hook = await api.get(f"{NS}/configmaps/demo-hook")
    assert hook["data"] == {"revision": "1"}
    first_uid = hook["metadata"]["uid"]
    await asyncio.to_thread(helm.upgrade, CHART, "demo", values)
    hook = await api.get(f"{NS}/configmaps/demo-hook")
    assert hook["data"] == {"revision": "2"}
    assert hook["metadata"]["uid"] != first_uid  # before-hook-creation: deleted, made anew
    await asyncio.to_thread(helm.uninstall, "demo")
    assert await status_code(api, f"{NS}/configmaps/demo-config") == 404
    assert (await api.get(f"{NS}/configmaps/demo-hook"))["data"] == {"revision": "2"}
    await api.delete(f"{NS}/configmaps/demo-hook")
