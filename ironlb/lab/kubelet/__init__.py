"""The lab kubelet: runs the Pods scheduled to a lab node as processes in network namespaces.

- :mod:`~ironlb.lab.kubelet.spec`: what a container runs (argv, env, files), pure.
- :mod:`~ironlb.lab.kubelet.lifecycle`: readiness, restart back-off, Pod status, pure.
- :mod:`~ironlb.lab.kubelet.ipam`: which pod address a Pod gets on its node, pure.
- :mod:`~ironlb.lab.kubelet.agent`: the per-node agent (watch, processes, status writes).
"""
