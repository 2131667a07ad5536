"""``lbctl pool create|list|show|edit|delete``: the IPAddressPool commands.

``create`` validates locally with the same code as the admission webhook
(:func:`ironlb.operator.pools.parse_pool`, then overlap with existing pools
via :func:`ironlb.operator.webhook.pool_admission_problem`), so bad input is
refused with the field named (exit 2) before anything is written. ``edit``
lives in :mod:`ironlb.lbctl.edit`.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from typing import Any

from ironlb.lbctl import render
from ironlb.lbctl.client import GROUP, VERSION, Cluster, LbctlError
from ironlb.lbctl.edit import edit_cmd

__all__ = ["configure", "holders_of", "namespace_name_problem", "pool_spec"]

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def namespace_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a Namespace (an RFC 1123 DNS label, at most 63
    characters, as Kubernetes requires), or None when it can."""
    if len(name) > 63:
        return f"it has {len(name)} characters, at most 63 are allowed"
    if not _DNS_LABEL.fullmatch(name):
        return (
            "it must be lower-case letters, digits and '-', starting and ending with a "
            "letter or digit (RFC 1123 label)"
        )
    return None


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pool`` and its subcommands."""
    pool = sub.add_parser("pool", help="manage IPAddressPools")
    cmds = pool.add_subparsers(dest="pool_command", metavar="COMMAND", required=True)

    create = cmds.add_parser("create", help="create an IPAddressPool")
    create.add_argument("name")
    create.add_argument(
        "--addresses",
        required=True,
        action="append",
        help="comma-separated CIDRs, first-last ranges or addresses (repeatable)",
    )
    create.add_argument("--no-auto-assign", action="store_true", help="only on request")
    create.add_argument("--avoid-buggy-ips", action="store_true", help="skip .0 and .255")
    create.add_argument("--priority", type=int, help="serviceAllocation.priority (lower wins)")
    create.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        default=[],
        help="serviceAllocation.namespaces entry (repeatable)",
    )
    create.set_defaults(handler=create_cmd)

    lst = cmds.add_parser("list", help="list IPAddressPools")
    lst.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table")
    lst.set_defaults(handler=list_cmd)

    show = cmds.add_parser("show", help="show one IPAddressPool and the Services using it")
    show.add_argument("name")
    show.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table")
    show.set_defaults(handler=show_cmd)

    edit = cmds.add_parser(
        "edit", help="edit an IPAddressPool in $KUBE_EDITOR/$EDITOR, checked before saving"
    )
    edit.add_argument("name")
    edit.set_defaults(handler=edit_cmd)

    delete = cmds.add_parser("delete", help="delete an IPAddressPool")
    delete.add_argument("name")
    delete.add_argument(
        "--force", action="store_true", help="delete even while Services hold its addresses"
    )
    delete.set_defaults(handler=delete_cmd)


def pool_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The ``spec`` the create flags describe (addresses split on commas, blanks dropped)."""
    addresses = [a.strip() for chunk in args.addresses for a in chunk.split(",") if a.strip()]
    spec: dict[str, Any] = {
        "addresses": addresses,
        "autoAssign": not args.no_auto_assign,
        "avoidBuggyIPs": bool(args.avoid_buggy_ips),
    }
    allocation: dict[str, Any] = {}
    if args.priority is not None:
        allocation["priority"] = args.priority
    if args.namespaces:
        allocation["namespaces"] = list(args.namespaces)
    if allocation:
        spec["serviceAllocation"] = allocation
    return spec


def holders_of(name: str, services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Services with an ingress address and ``ironlb.io/ip-allocated-from-pool: name``."""
    return [
        s
        for s in services
        if ((s.get("metadata") or {}).get("annotations") or {}).get(render.ALLOCATED_FROM_POOL)
        == name
        and render.external_ips(s)
    ]


def create_cmd(cluster: Cluster, args: argparse.Namespace) -> int:
    from ironlb.operator.pools import PoolError, parse_pool
    from ironlb.operator.webhook import pool_admission_problem

    spec = pool_spec(args)
    for namespace in args.namespaces:
        problem = namespace_name_problem(namespace)
        if problem is not None:
            raise LbctlError(f"--namespace {namespace!r} is not a namespace name: {problem}", 2)
    try:
        parse_pool(args.name, spec)
    except PoolError as exc:
        raise LbctlError(f"invalid IPAddressPool {args.name!r}: {exc}", code=2) from None
    existing = sorted(
        cluster.list_pools(),
        key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]),
    )
    others = [(str(p["metadata"]["name"]), p.get("spec") or {}) for p in existing]
    if any(n == args.name for n, _ in others):
        raise LbctlError(f"IPAddressPool {args.name!r} already exists", status=409)
    problem = pool_admission_problem(args.name, spec, others)
    if problem is not None:
        raise LbctlError(problem, code=2)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "IPAddressPool",
        "metadata": {"name": args.name},
        "spec": spec,
    }
    cluster.create_pool(body)
    print(f"ipaddresspool.ironlb.io/{args.name} created")
    return 0


def list_cmd(cluster: Cluster, args: argparse.Namespace) -> int:
    pools = cluster.list_pools()
    if args.output in ("json", "yaml"):
        print(render.structured({"apiVersion": "v1", "kind": "List", "items": pools}, args.output))
        return 0
    wide = args.output == "wide"
    headers = render.POOL_WIDE_HEADERS if wide else render.POOL_HEADERS
    if not pools:
        print("No IPAddressPools found.")
        return 0
    print(render.table(headers, render.pool_rows(pools, datetime.now(UTC), wide=wide)))
    return 0


def show_cmd(cluster: Cluster, args: argparse.Namespace) -> int:
    pool = cluster.get_pool(args.name)
    holders = holders_of(args.name, cluster.list_services())
    if args.output in ("json", "yaml"):
        print(render.structured({**pool, "services": holders}, args.output))
        return 0
    print(render.pool_detail(pool, holders, datetime.now(UTC), wide=args.output == "wide"))
    return 0


def delete_cmd(cluster: Cluster, args: argparse.Namespace) -> int:
    cluster.get_pool(args.name)  # a clear "not found" before looking at Services
    holders = holders_of(args.name, cluster.list_services())
    if holders and not args.force:
        names = ", ".join(
            f"{s['metadata'].get('namespace')}/{s['metadata']['name']} "
            f"({','.join(render.external_ips(s))})"
            for s in holders
        )
        raise LbctlError(
            f"IPAddressPool {args.name!r} is in use by {len(holders)} Service(s): {names}; "
            "delete or move them first, or use --force"
        )
    cluster.delete_pool(args.name)
    if holders:
        print(
            f"warning: {len(holders)} Service(s) still hold addresses from {args.name!r}",
            flush=True,
        )
    print(f"ipaddresspool.ironlb.io/{args.name} deleted")
    return 0
