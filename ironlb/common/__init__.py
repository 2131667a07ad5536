"""Rules shared by the Kubernetes side and the data plane, each stated once.

Address families and which addresses may be VIPs (:mod:`.addresses`), the
protocols Kubernetes names and the ones the data plane serves
(:mod:`.protocols`), Linux interface names (:mod:`.ifnames`) and Kubernetes
timestamps (:mod:`.kubetime`). Nothing here imports kopf, sockets or asyncio.
"""
