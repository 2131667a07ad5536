"""The official ``kubernetes`` Python client (35) against the local API server, through a
kubeconfig the server wrote: core objects, watch streams, custom objects, Leases, Events."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.cluster.apiserver_helpers import widget_crd

pytestmark = pytest.mark.cluster


@pytest.fixture
def api(kube_client: client.ApiClient) -> client.ApiClient:
    return kube_client


def test_kubeconfig_points_at_server(api: client.ApiClient, api_thread_kubeconfig: Path) -> None:
    _contexts, current = config.list_kube_config_contexts(config_file=str(api_thread_kubeconfig))
    assert current["name"] == "ironlb-lab"
    assert api.configuration.host.startswith("http://127.0.0.1:")
    assert client.VersionApi(api).get_code().major == "1"


def test_core_v1_crud(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    names = [ns.metadata.name for ns in core.list_namespace().items]
    assert {"default", "kube-system", "kube-public"} <= set(names)

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="apps")))
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="web", labels={"app": "web"}),
        spec=client.V1ServiceSpec(
            type="LoadBalancer",
            selector={"app": "web"},
            ports=[client.V1ServicePort(port=80, target_port=8080)],
        ),
    )
    created = core.create_namespaced_service("apps", service)
    assert created.metadata.uid and created.metadata.resource_version
    assert created.spec.cluster_ip and created.spec.ports[0].node_port
    assert created.spec.ports[0].protocol == "TCP"

    listed = core.list_namespaced_service("apps", label_selector="app=web")
    assert [s.metadata.name for s in listed.items] == ["web"]
    assert core.list_service_for_all_namespaces(field_selector="metadata.name=web").items

    patched = core.patch_namespaced_service(
        "web", "apps", {"metadata": {"annotations": {"ironlb.io/address-pool": "p1"}}}
    )
    assert patched.metadata.annotations == {"ironlb.io/address-pool": "p1"}
    status = core.patch_namespaced_service_status(
        "web", "apps", {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.10"}]}}}
    )
    assert status.status.load_balancer.ingress[0].ip == "198.18.0.10"
    assert status.metadata.generation == 1

    with pytest.raises(ApiException) as conflict:
        core.create_namespaced_service("apps", service)
    assert conflict.value.status == 409
    assert (
        '"reason": "AlreadyExists"' in conflict.value.body or "AlreadyExists" in conflict.value.body
    )

    core.delete_namespaced_service("web", "apps")
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_service("web", "apps")
    assert missing.value.status == 404


def test_replace_with_stale_version_conflicts(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"a": "1"})
    first = core.create_namespaced_config_map("default", body)
    first.data = {"a": "2"}
    core.replace_namespaced_config_map("cfg", "default", first)
    first.data = {"a": "3"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("cfg", "default", first)
    assert conflict.value.status == 409
    assert core.read_namespaced_config_map("cfg", "default").data == {"a": "2"}


def test_watch_stream(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map("default").metadata.resource_version
    for name in ("w1", "w2"):
        core.create_namespaced_config_map(
            "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name))
        )
    core.delete_namespaced_config_map("w1", "default")
    seen = []
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=5
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            stream.stop()
    assert seen == [("ADDED", "w1"), ("ADDED", "w2"), ("DELETED", "w1")]

    # timeout_seconds ends the stream by itself (nothing else happens here).
    quiet = list(
        watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=core.list_namespaced_config_map("default").metadata.resource_version,
            timeout_seconds=1,
        )
    )
    assert quiet == []


def test_custom_objects(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(widget_crd())
    custom = client.CustomObjectsApi(api)
    made = custom.create_namespaced_custom_object(
        "lab.ironlb.io",
        "v1",
        "default",
        "widgets",
        {
            "apiVersion": "lab.ironlb.io/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 1},
        },
    )
    assert made["metadata"]["generation"] == 1
    custom.patch_namespaced_custom_object_status(
        "lab.ironlb.io", "v1", "default", "widgets", "w", {"status": {"used": 3}}
    )
    got = custom.get_namespaced_custom_object("lab.ironlb.io", "v1", "default", "widgets", "w")
    assert got["status"] == {"used": 3}
    listed = custom.list_cluster_custom_object("lab.ironlb.io", "v1", "widgets")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w"]
    custom.delete_namespaced_custom_object("lab.ironlb.io", "v1", "default", "widgets", "w")
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object("lab.ironlb.io", "v1", "default", "widgets", "w")
    assert missing.value.status == 404


def test_leases(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    now = datetime.datetime.now(datetime.UTC)
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="speaker-node-a", namespace="kube-system"),
        spec=client.V1LeaseSpec(
            holder_identity="node-a", lease_duration_seconds=10, renew_time=now
        ),
    )
    created = leases.create_namespaced_lease("kube-system", lease)
    assert created.spec.holder_identity == "node-a"
    created.spec.renew_time = now + datetime.timedelta(seconds=5)
    renewed = leases.replace_namespaced_lease("speaker-node-a", "kube-system", created)
    assert renewed.spec.renew_time > now
    assert int(renewed.metadata.resource_version) > int(created.metadata.resource_version)
    created.spec.holder_identity = "node-b"  # stale resourceVersion: someone else renewed
    with pytest.raises(ApiException) as conflict:
        leases.replace_namespaced_lease("speaker-node-a", "kube-system", created)
    assert conflict.value.status == 409
    assert [x.metadata.name for x in leases.list_namespaced_lease("kube-system").items] == [
        "speaker-node-a"
    ]


def test_events_v1(api: client.ApiClient) -> None:
    events = client.EventsV1Api(api)
    now = datetime.datetime.now(datetime.UTC)
    body = client.EventsV1Event(
        metadata=client.V1ObjectMeta(generate_name="web."),
        event_time=now,
        reason="IPAllocated",
        note="Assigned 198.18.0.10 from pool p1",
        type="Normal",
        action="Allocate",
        reporting_controller="ironlb.io/controller",
        reporting_instance="controller-0",
        regarding=client.V1ObjectReference(kind="Service", name="web", namespace="default"),
    )
    created = events.create_namespaced_event("default", body)
    assert created.metadata.name.startswith("web.")
    listed = events.list_namespaced_event("default", field_selector="reason=IPAllocated")
    assert [e.note for e in listed.items] == ["Assigned 198.18.0.10 from pool p1"]


def test_endpoint_slices(api: client.ApiClient) -> None:
    discovery = client.DiscoveryV1Api(api)
    slice_body = client.V1EndpointSlice(
        metadata=client.V1ObjectMeta(name="web-abc", labels={"kubernetes.io/service-name": "web"}),
        address_type="IPv4",
        endpoints=[
            client.V1Endpoint(
                addresses=["198.18.1.2"], conditions=client.V1EndpointConditions(ready=True)
            )
        ],
        ports=[client.DiscoveryV1EndpointPort(port=8080, protocol="TCP")],
    )
    discovery.create_namespaced_endpoint_slice("default", slice_body)
    found = discovery.list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=web"
    )
    assert found.items[0].endpoints[0].addresses == ["198.18.1.2"]
