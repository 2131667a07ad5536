"""The Kubernetes side of ironlb.

Pure core modules (pool parsing, allocation, election, desired state) import
nothing from kopf or kubernetes; the kopf handler modules adapt them.
"""
