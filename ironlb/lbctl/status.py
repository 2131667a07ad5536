"""``lbctl services`` and ``lbctl status``: who holds which address, and is the install healthy."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from ironlb.lbctl import render
from ironlb.lbctl.client import Cluster
from ironlb.lbctl.health import assess

__all__ = ["configure"]

LEASE_NAME = "ironlb-controller"
DEFAULT_NAMESPACE = "ironlb-system"


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``services`` and ``status``."""
    services = sub.add_parser("services", help="list LoadBalancer Services and their addresses")
    services.add_argument("-o", "--output", choices=["json", "yaml"])
    services.set_defaults(handler=services_cmd)

    status = sub.add_parser("status", help="health of the ironlb install (exit 1 if unhealthy)")
    status.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="namespace of the controller Lease (default: %(default)s)",
    )
    status.set_defaults(handler=status_cmd)


def services_cmd(cluster: Cluster, args: argparse.Namespace) -> int:
    services = [
        s for s in cluster.list_services() if (s.get("spec") or {}).get("type") == "LoadBalancer"
    ]
    if args.output:
        print(
            render.structured({"apiVersion": "v1", "kind": "List", "items": services}, args.output)
        )
        return 0
    if not services:
        print("No LoadBalancer Services found.")
        return 0
    print(render.table(render.SERVICE_HEADERS, render.service_rows(services)))
    return 0


def status_cmd(cluster: Cluster, args: argparse.Namespace) -> int:
    crd = cluster.crd_registered()
    health = assess(
        crd_registered=crd,
        lease=cluster.get_lease(args.namespace, LEASE_NAME),
        lease_ref=f"{args.namespace}/{LEASE_NAME}",
        pools=cluster.list_pools() if crd else [],
        services=cluster.list_services(),
        now=datetime.now(UTC),
    )
    print("\n".join(health.lines))
    if health.healthy:
        print("healthy")
        return 0
    print("unhealthy:", file=sys.stderr)
    for problem in health.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1
