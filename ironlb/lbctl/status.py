"""``lbctl services``, ``lbctl status`` and ``lbctl doctor``: who holds which address, the
install on one screen, and the support checks with their fixes.

The handlers only read (:func:`ironlb.lbctl.facts.gather`) and print; the
judging lives in :mod:`ironlb.lbctl.health`, :mod:`ironlb.lbctl.overview`
and :mod:`ironlb.lbctl.doctor`, pure functions over what was read.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from ironlb.lbctl import doctor, overview, render
from ironlb.lbctl.client import Cluster, LbctlError
from ironlb.lbctl.facts import CONTROLLER_LEASE, gather
from ironlb.lbctl.health import assess

__all__ = ["configure"]

#: ``-o`` values, as kubectl spells them (``table`` is the default view).
OUTPUTS = ["table", "wide", "json", "yaml"]
LEASE_NAME = CONTROLLER_LEASE
DEFAULT_NAMESPACE = "ironlb-system"


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``services``, ``status`` and ``doctor``."""
    services = sub.add_parser("services", help="list LoadBalancer Services and their addresses")
    services.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    scope = services.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="only this namespace (default: all namespaces)")
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (the default)"
    )
    services.set_defaults(handler=services_cmd)

    status = sub.add_parser(
        "status", help="the install on one screen: pools, speakers, leader (exit 1 if unhealthy)"
    )
    status.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="namespace of the controller and speaker Leases (default: %(default)s)",
    )
    status.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    status.set_defaults(handler=status_cmd)

    check = sub.add_parser(
        "doctor", help="run the support checks, each with a verdict and a fix (exit 1 on a fail)"
    )
    check.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="namespace of ironlb's Leases and heartbeat Secret (default: %(default)s)",
    )
    check.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    check.set_defaults(handler=doctor_cmd)


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


def _checked_namespace(args: argparse.Namespace) -> str:
    """``--namespace``, refused (exit 2) before any request unless it can name a Namespace."""
    from ironlb.lbctl.pools import namespace_name_problem

    problem = namespace_name_problem(args.namespace)
    if problem is not None:
        raise LbctlError(f"--namespace {args.namespace!r} is not a namespace name: {problem}", 2)
    return str(args.namespace)


def status_cmd(cluster: Cluster, args: argparse.Namespace) -> int:
    _checked_namespace(args)
    now = datetime.now(UTC)
    facts = gather(cluster, args.namespace)
    health = assess(
        crd_registered=facts.crd_registered,
        lease=facts.controller_lease,
        lease_ref=f"{args.namespace}/{LEASE_NAME}",
        pools=facts.pools,
        services=facts.services,
        now=now,
    )
    nodes = overview.speakers(facts.nodes, facts.speaker_leases, now)
    pending = overview.pending_rows(facts.services, facts.events)
    if args.output in ("json", "yaml"):
        body = overview.status_document(health, facts.pools, nodes, pending)
        print(render.structured(body, args.output))
        return 0 if health.healthy else 1
    print(overview.status_screen(health, facts.pools, nodes, pending, wide=args.output == "wide"))
    if health.healthy:
        print("healthy")
        return 0
    print("unhealthy:", file=sys.stderr)
    for problem in health.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def doctor_cmd(cluster: Cluster, args: argparse.Namespace) -> int:
    _checked_namespace(args)
    checks = doctor.run_checks(gather(cluster, args.namespace, full=True), datetime.now(UTC))
    failed = any(c.verdict == "fail" for c in checks)
    if args.output in ("json", "yaml"):
        body = {"ok": not failed, "checks": [c.as_dict() for c in checks]}
        print(render.structured(body, args.output))
    else:
        print(doctor.doctor_table(checks, wide=args.output == "wide"))
    return 1 if failed else 0
