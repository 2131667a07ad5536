"""A local, in-memory Kubernetes API endpoint for the lab and the tests.

No kube-apiserver can run on the lab machines, so this package serves the
parts of the Kubernetes REST API that kopf, the ``kubernetes`` client and
``kubectl`` need, over real HTTP: discovery, CRUD with resourceVersion and
uid, merge/JSON patch, the status subresource, finalizers, list and watch
with selectors, Leases, EndpointSlices, Events and CRDs.

Modules: ``registry`` (types and discovery), ``store`` (objects, global
resourceVersion, watch fan-out), ``cluster`` (object semantics),
``validation`` (body and metadata checks), ``patching`` (merge, JSON and
strategic-merge patches), ``schema`` (CRD structural schemas),
``selectors``, ``defaults`` (Service defaulting), ``errors`` (Status
bodies), ``tables`` (``kubectl get`` columns), ``openapi`` (the index
kubectl validates with), ``admission`` (validating webhooks), ``http``
(aiohttp routes), ``watches`` (watch streams), ``kubeconfig``, ``server``.

Not served: protobuf or CBOR bodies (``kubectl create configmap``-style typed
kubectl commands send protobuf and get 415; ``kubectl create/apply -f`` and
every Python client send JSON), server-side apply, dryRun, mutating webhooks
(validating ones are called, see ``admission``), authentication and RBAC (any
bearer token or none is accepted), ``limit``/``continue`` paging (lists are
returned whole).
"""

from __future__ import annotations

from ironlb.lab.apiserver.server import LocalApiServer, ServerThread, run_in_thread

__all__ = ["LocalApiServer", "ServerThread", "run_in_thread"]
