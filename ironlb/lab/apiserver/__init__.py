"""A local, in-memory Kubernetes API endpoint for the lab and the tests.

No kube-apiserver can run on the lab machines, so this package serves the
parts of the Kubernetes REST API that kopf, the ``kubernetes`` client and
``kubectl`` need, over real HTTP: discovery, CRUD with resourceVersion and
uid, merge/JSON patch, the status subresource, finalizers, list and watch
with selectors, Leases, EndpointSlices, Events and CRDs, the ``scale``
subresource of Deployments (``scale``) and apps/v1 defaulting
(``apps_defaults``).

Modules: ``registry`` (types and discovery), ``store`` (objects, global
resourceVersion, watch fan-out), ``cluster`` (object semantics),
``validation`` (body and metadata checks), ``patching`` (merge, JSON and
strategic-merge patches), ``schema`` (CRD structural schemas),
``selectors``, ``defaults`` (Service defaulting), ``secrets`` (Secret
``stringData``), ``errors`` (Status bodies), ``apply`` (server-side apply),
``tables`` (``kubectl get`` columns), ``openapi`` (the index
kubectl validates with), ``admission`` (validating webhooks), ``http``
(aiohttp routes), ``watches`` (watch streams), ``kubeconfig``, ``server``.

Protobuf bodies (kubectl's typed ``create`` commands, client-go typed
clients) are read and answered for core/v1 kinds and Deployments:
``protobody`` (envelope, negotiation), ``protojson`` (Go's JSON rules),
``protoschema`` (the definitions).

Not served: CBOR bodies, protobuf for other kinds or for fields newer than
Kubernetes 1.14 (415), protobuf watch streams (they are JSON),
mutating webhooks (validating ones are called, see ``admission``),
authentication and RBAC (any bearer token or none is accepted; tokens issued
by TokenRequest name their ServiceAccount in the audit log: ``identity``,
``audit``), ``limit``/``continue`` paging (lists are returned whole).
"""

from __future__ import annotations

from ironlb.lab.apiserver.server import LocalApiServer, ServerThread, run_in_thread

__all__ = ["LocalApiServer", "ServerThread", "run_in_thread"]
