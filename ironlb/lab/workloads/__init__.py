"""The lab's workload controllers, object level: what a cluster's control plane adds.

Against the lab API (``ironlb.lab.apiserver``) over HTTP, like any
controller: Deployments -> Pods (``deployments``), DaemonSets -> one Pod per
matching Node (``daemonsets``), a scheduler binding unbound Pods to Nodes
(``scheduling``), EndpointSlices for Services with a selector
(``endpointslices``), and the lab's Nodes (``nodes``). Pure decisions live in
those modules; ``runner`` is the watch/write loop and ``api`` its HTTP client.
Pod status (IPs, phase, Ready) is the lab kubelet's job, not done here.

Entry point for ``ironlb lab cluster up``::

    await run(client_config, stop=stop_event, nodes=[1, 2, 3])

where ``client_config`` is a :class:`ClientConfig`, an API URL or a
kubeconfig path.
"""

from __future__ import annotations

from ironlb.lab.workloads.api import ApiError, ClientConfig
from ironlb.lab.workloads.runner import Controllers, run

__all__ = ["ApiError", "ClientConfig", "Controllers", "run"]
