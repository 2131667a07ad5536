"""The uvloop TCP/UDP forwarder: listeners, round-robin, workers, metrics.

:class:`~ironlb.dataplane.forwarder.listeners.Forwarder` is the entry point
for one event loop; :mod:`~ironlb.dataplane.forwarder.workers` runs it in
``SO_REUSEPORT`` worker processes for ``ironlb forward``.
"""
