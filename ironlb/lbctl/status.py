"""``lbctl services`` and ``lbctl status``: who holds which address, and is the install healthy."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from ironlb.lbctl import render
from ironlb.lbctl.client import Cluster
from ironlb.lbctl.health import assess

__all__ = ["configure"]

#: ``-o`` values, as kubectl spells them (``table`` is the default view).
OUTPUTS = ["table", "wide", "json", "yaml"]
LEASE_NAME = "ironlb-controller"
DEFAULT_NAMESPACE = "ironlb-system"


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``services`` and ``status``."""
    services = sub.add_parser("services", help="list LoadBalancer Services and their addresses")
    services.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    scope = services.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="only this namespace (default: all namespaces)")
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (the default)"
    )
    services.set_defaults(handler=services_cmd)

    status = sub.add_parser("status", help="health of the ironlb install (exit 1 if unhealthy)")
    status.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="namespace of the controller Lease (default: %(default)s)",
    )
    status.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    status.set_defaults(handler=status_cmd)


def services_cmd(cluster: Cluster, args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else args.namespace
    services = [
        s
        for s in cluster.list_services(namespace)
        if (s.get("spec") or {}).get("type") == "LoadBalancer"
    ]
    if args.output in ("json", "yaml"):
        print(
            render.structured({"apiVersion": "v1", "kind": "List", "items": services}, args.output)
        )
        return 0
    if not services:
        where = f" in namespace {namespace}" if namespace else ""
        print(f"No LoadBalancer Services found{where}.")
        return 0
    wide = args.output == "wide"
    rows = render.service_rows(
        services,
        cluster.list_endpoint_slices(namespace),
        cluster.list_service_events(namespace),
        now=datetime.now(UTC),
        wide=wide,
    )
    headers = render.SERVICE_WIDE_HEADERS if wide else render.SERVICE_HEADERS
    print(render.table(headers, rows))
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
    if args.output in ("json", "yaml"):
        body = {"healthy": health.healthy, "checks": health.lines, "problems": health.problems}
        print(render.structured(body, args.output))
        return 0 if health.healthy else 1
    print("\n".join(health.lines))
    if health.healthy:
        print("healthy")
        return 0
    print("unhealthy:", file=sys.stderr)
    for problem in health.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1
