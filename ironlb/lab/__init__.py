"""The local lab: network-namespace hosts and a local Kubernetes API endpoint.

Used by the tests and by ``make demo``; nothing here is needed on a real
cluster.
"""
