"""The networking side of ironlb; it knows nothing of Kubernetes.

It is driven by one typed desired state (:mod:`ironlb.dataplane.state`): the
forwarder turns it into listeners, the announcer into owned VIPs.
"""
