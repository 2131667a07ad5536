"""Kubernetes API access for ``lbctl`` through a kubeconfig (the ``kubernetes`` client).

:func:`connect` loads the kubeconfig (``--kubeconfig``/``--context``, default
``$KUBECONFIG`` or ``~/.kube/config``) and returns a :class:`Cluster` whose
methods return plain dicts as the API sends them. Every failure (bad
kubeconfig, unreachable server, API error status) surfaces as
:class:`LbctlError`, a one-line message and an exit code, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["GROUP", "PLURAL", "VERSION", "Cluster", "LbctlError", "connect"]

GROUP = "ironlb.io"
VERSION = "v1alpha1"
PLURAL = "ipaddresspools"
CRD_NAME = f"{PLURAL}.{GROUP}"
TIMEOUT = 15.0  # seconds per request (connect + read): a hang guard, not a tuning knob


class LbctlError(Exception):
    """A failure to report as one line on stderr, exiting with ``code``."""

    def __init__(self, message: str, code: int = 1, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def _status_message(body: object) -> str:
    """The ``message`` of a ``metav1.Status`` error body, else the body itself (shortened)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip().splitlines()[0][:300] if text.strip() else ""
    if isinstance(parsed, dict) and parsed.get("message"):
        return str(parsed["message"])
    return text[:300]


@contextmanager
def _translated(host: str) -> Iterator[None]:
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        detail = _status_message(exc.body) or str(exc.reason or "")
        status = int(exc.status or 0)
        raise LbctlError(f"API error {status} ({exc.reason}): {detail}", status=status) from None
    except HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise LbctlError(f"cannot reach the Kubernetes API at {host}: {reason}") from None


def _json(response: Any) -> dict[str, Any]:
    data = json.loads(response.data)
    if not isinstance(data, dict):
        raise LbctlError(f"unexpected API response: {str(data)[:200]}")
    return data


class Cluster:
    """The handful of API calls ``lbctl`` needs, returning plain dicts."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._api = api_client
        self.host = str(api_client.configuration.host)
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._coord = client.CoordinationV1Api(api_client)
        self._ext = client.ApiextensionsV1Api(api_client)

    def close(self) -> None:
        self._api.close()

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        with _translated(self.host):
            response = method(*args, _preload_content=False, _request_timeout=TIMEOUT, **kwargs)
            return _json(response)

    # --- pools -------------------------------------------------------------------------------

    def _pool_call(self, what: str, method: Any, *args: Any) -> dict[str, Any]:
        try:
            return self._call(method, GROUP, VERSION, PLURAL, *args)
        except LbctlError as exc:
            if exc.status == 404 and not self.crd_registered():
                raise LbctlError(
                    f"the IPAddressPool resource is not registered (CRD {CRD_NAME} missing): "
                    "is ironlb installed?",
                    status=404,
                ) from None
            if exc.status == 404:
                raise LbctlError(f"IPAddressPool {what!r} not found", status=404) from None
            raise

    def list_pools(self) -> list[dict[str, Any]]:
        items = self._pool_call("", self._custom.list_cluster_custom_object).get("items") or []
        return [dict(i) for i in items]

    def get_pool(self, name: str) -> dict[str, Any]:
        return self._pool_call(name, self._custom.get_cluster_custom_object, name)

    def create_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body["metadata"]["name"])
        try:
            return self._pool_call(name, self._custom.create_cluster_custom_object, body)
        except LbctlError as exc:
            if exc.status == 409:
                raise LbctlError(f"IPAddressPool {name!r} already exists", status=409) from None
            raise

    def replace_pool(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT ``body`` (which carries the ``metadata.resourceVersion`` it was read at); a 409
        means the pool changed on the server since then and nothing was written."""
        try:
            return self._pool_call(name, self._custom.replace_cluster_custom_object, name, body)
        except LbctlError as exc:
            if exc.status == 409:
                version = (body.get("metadata") or {}).get("resourceVersion")
                raise LbctlError(
                    f"IPAddressPool {name!r} was changed on the server after it was read "
                    f"(resourceVersion {version}): nothing was saved, edit it again",
                    status=409,
                ) from None
            raise

    def delete_pool(self, name: str) -> None:
        self._pool_call(name, self._custom.delete_cluster_custom_object, name)

    # --- other objects -----------------------------------------------------------------------

    def list_services(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Services in ``namespace``, or in every namespace when None."""
        if namespace is None:
            data = self._call(self._core.list_service_for_all_namespaces)
        else:
            data = self._call(self._core.list_namespaced_service, namespace)
        return [dict(i) for i in data.get("items") or []]

    def list_endpoint_slices(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """EndpointSlices (discovery.k8s.io/v1) in ``namespace``, or everywhere."""
        from kubernetes import client

        discovery = client.DiscoveryV1Api(self._api)
        if namespace is None:
            data = self._call(discovery.list_endpoint_slice_for_all_namespaces)
        else:
            data = self._call(discovery.list_namespaced_endpoint_slice, namespace)
        return [dict(i) for i in data.get("items") or []]

    def list_service_events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """core/v1 Events whose involved object is a Service."""
        selector = "involvedObject.kind=Service"
        if namespace is None:
            data = self._call(self._core.list_event_for_all_namespaces, field_selector=selector)
        else:
            data = self._call(self._core.list_namespaced_event, namespace, field_selector=selector)
        return [dict(i) for i in data.get("items") or []]

    def crd_registered(self) -> bool:
        return self._optional(self._ext.read_custom_resource_definition, CRD_NAME) is not None

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._optional(self._coord.read_namespaced_lease, name, namespace)

    # --- facts for status and doctor --------------------------------------------------------

    def list_nodes(self) -> list[dict[str, Any]]:
        return [dict(i) for i in self._call(self._core.list_node).get("items") or []]

    def list_leases(self, namespace: str) -> list[dict[str, Any]]:
        data = self._call(self._coord.list_namespaced_lease, namespace)
        return [dict(i) for i in data.get("items") or []]

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._optional(self._core.read_namespaced_secret, name, namespace)

    def list_crds(self) -> list[dict[str, Any]]:
        data = self._call(self._ext.list_custom_resource_definition)
        return [dict(i) for i in data.get("items") or []]

    def server_version(self) -> dict[str, Any]:
        """``GET /version``: ``major``, ``minor``, ``gitVersion``, ..."""
        from kubernetes import client

        return self._call(client.VersionApi(self._api).get_code)

    def list_workloads(self) -> list[dict[str, Any]]:
        """Deployments and DaemonSets in every namespace (``kind`` set on each)."""
        from kubernetes import client

        apps = client.AppsV1Api(self._api)
        out = []
        for kind, method in (
            ("Deployment", apps.list_deployment_for_all_namespaces),
            ("DaemonSet", apps.list_daemon_set_for_all_namespaces),
        ):
            out += [{**i, "kind": kind} for i in self._call(method).get("items") or []]
        return out

    def list_pods(self, namespace: str) -> list[dict[str, Any]]:
        data = self._call(self._core.list_namespaced_pod, namespace)
        return [dict(i) for i in data.get("items") or []]

    def list_cluster_objects(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        """Objects of a cluster-scoped custom resource (another product's, e.g. Cilium's)."""
        data = self._call(self._custom.list_cluster_custom_object, group, version, plural)
        return [dict(i) for i in data.get("items") or []]

    def _optional(self, method: Any, *args: Any) -> dict[str, Any] | None:
        """The object, or ``None`` on 404."""
        try:
            return self._call(method, *args)
        except LbctlError as exc:
            if exc.status == 404:
                return None
            raise


def connect(kubeconfig: str | None, context: str | None) -> Cluster:
    """Load the kubeconfig and return a :class:`Cluster` (no request is made yet)."""
    from kubernetes import client, config

    if kubeconfig is not None and not Path(kubeconfig).expanduser().is_file():
        raise LbctlError(f"kubeconfig file {kubeconfig} not found")
    configuration = client.Configuration()
    try:
        config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    except (config.ConfigException, OSError, ValueError) as exc:
        where = kubeconfig or "the default kubeconfig ($KUBECONFIG or ~/.kube/config)"
        raise LbctlError(f"cannot load {where}: {exc}") from None
    configuration.retries = 0  # fail fast and clearly when the server is unreachable
    return Cluster(client.ApiClient(configuration))
