"""ironlb: a bare-metal Layer-4 LoadBalancer for Kubernetes.

The package splits into four parts that know as little of each other as they
can: ``operator`` (the Kubernetes side), ``dataplane`` (sockets, ARP/NDP, VIPs;
no Kubernetes), ``lab`` (network namespaces and a local Kubernetes API for tests
and the demo) and ``lbctl`` (the admin's CLI).
"""

__version__ = "0.1.0"
