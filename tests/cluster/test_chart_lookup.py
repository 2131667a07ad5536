"""The chart's ``lookup`` against the local Kubernetes API: an upgrade keeps its Secrets.

``helm template`` cannot run ``lookup`` (it answers empty), so these tests render
the chart cluster-aware (``helm_python.Config.render``, what ``helm upgrade``
renders with) against the lab API: the heartbeat key and the webhook
certificate are generated only when their Secret is absent, and an existing
one is rendered unchanged, so upgrades neither split the speakers' trust nor
break the webhook's TLS.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import helm_python as helm
import pytest
from kubernetes import client

from ironlb.speaker.heartbeat import heartbeat_key_from_secret
from tests.chart.chart_support import NAMESPACE, one, render

pytestmark = pytest.mark.cluster


@pytest.fixture
def helm_config(api_thread_kubeconfig: Path) -> Iterator[helm.Config]:
    with helm.Config(kubeconfig_path=api_thread_kubeconfig, namespace=NAMESPACE) as config:
        yield config


@pytest.fixture
def core(kube_client: client.ApiClient) -> client.CoreV1Api:
    api = client.CoreV1Api(kube_client)
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    return api


def _secret(name: str, data: dict[str, bytes], type_: str = "Opaque") -> client.V1Secret:
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=encoded, type=type_)


def test_upgrade_keeps_the_heartbeat_key(core: client.CoreV1Api, helm_config: helm.Config) -> None:
    fresh = one(render(config=helm_config), "Secret", "ironlb-heartbeat")
    again = one(render(config=helm_config), "Secret", "ironlb-heartbeat")
    assert fresh["data"]["key"] != again["data"]["key"]  # absent: a new key each time

    key = b"k" * 40
    core.create_namespaced_secret(NAMESPACE, _secret("ironlb-heartbeat", {"key": key}))
    for _ in range(2):
        kept = one(render(config=helm_config), "Secret", "ironlb-heartbeat")
        assert heartbeat_key_from_secret(kept, NAMESPACE) == key


def test_upgrade_keeps_the_webhook_certificate(
    core: client.CoreV1Api, helm_config: helm.Config
) -> None:
    first = render(config=helm_config)
    secret = one(first, "Secret", "ironlb-webhook-tls")
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    core.create_namespaced_secret(
        NAMESPACE, _secret("ironlb-webhook-tls", data, "kubernetes.io/tls")
    )
    upgraded = render(config=helm_config)
    kept = one(upgraded, "Secret", "ironlb-webhook-tls")
    assert kept["data"] == secret["data"]
    hook = one(upgraded, "ValidatingWebhookConfiguration", "ironlb-webhook")["webhooks"][0]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]


def test_a_tls_secret_without_its_ca_is_replaced(
    core: client.CoreV1Api, helm_config: helm.Config
) -> None:
    """A Secret the chart cannot vouch for (no ca.crt, so no caBundle) is generated anew."""
    core.create_namespaced_secret(
        NAMESPACE,
        _secret("ironlb-webhook-tls", {"tls.crt": b"x", "tls.key": b"y"}, "kubernetes.io/tls"),
    )
    objs = render(config=helm_config)
    secret = one(objs, "Secret", "ironlb-webhook-tls")
    assert base64.b64decode(secret["data"]["tls.crt"]).startswith(b"-----BEGIN CERTIFICATE")
    hook = one(objs, "ValidatingWebhookConfiguration", "ironlb-webhook")["webhooks"][0]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
