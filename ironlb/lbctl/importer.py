"""``lbctl import metallb -f FILE|-``: bring a MetalLB L2 configuration across.

Reads MetalLB manifests (``IPAddressPool``, ``L2Advertisement``, the legacy
``ConfigMap``; BGP objects are listed as not carried over), prints the
equivalent ironlb pools as YAML (or JSON) on stdout and the notes, one per
line, on stderr (``lbctl: note: ...``). With ``--apply`` it creates the pools
instead, each checked with the admission webhook's rules against the pools
already there; nothing is created unless every pool converts and passes.

Exit codes: 0 converted (notes are information), 1 an API call failed,
2 invalid input (not YAML, a pool ironlb would refuse, a name or range clash).
Conversion rules live in :mod:`ironlb.lbctl.metallb`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ironlb.lbctl import render
from ironlb.lbctl.client import Cluster, LbctlError
from ironlb.lbctl.metallb import Conversion, DocumentError, convert, load_documents

__all__ = ["configure"]


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import`` and its ``metallb`` subcommand."""
    imp = sub.add_parser("import", help="convert another load balancer's configuration")
    kinds = imp.add_subparsers(dest="import_kind", metavar="SOURCE", required=True)
    metallb = kinds.add_parser(
        "metallb", help="MetalLB IPAddressPools, L2Advertisements or the legacy ConfigMap"
    )
    metallb.add_argument(
        "-f", "--filename", required=True, help="manifest file, or - for standard input"
    )
    metallb.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    metallb.add_argument(
        "--apply", action="store_true", help="create the pools in the cluster instead of printing"
    )
    metallb.set_defaults(handler=import_metallb_cmd, needs_cluster=lambda a: bool(a.apply))


def _read(filename: str) -> str:
    if filename == "-":
        return sys.stdin.read()
    try:
        return Path(filename).read_text()
    except OSError as exc:
        raise LbctlError(f"cannot read {filename}: {exc.strerror or exc}", code=2) from None


def _conversion(filename: str) -> Conversion:
    try:
        documents = load_documents(_read(filename))
    except DocumentError as exc:
        raise LbctlError(f"{filename}: {exc}", code=2) from None
    result = convert(documents)
    for note in result.notes:
        print(f"lbctl: note: {note}", file=sys.stderr)
    if result.errors:
        first = result.errors[0]
        more = f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
        for error in result.errors[1:]:
            print(f"lbctl: error: pool {error.name!r}: {error.message}", file=sys.stderr)
        raise LbctlError(f"pool {first.name!r} cannot be converted: {first.message}{more}", 2)
    if not result.pools:
        raise LbctlError(f"{filename}: no MetalLB layer2 address pools found", code=2)
    return result


def import_metallb_cmd(cluster: Cluster | None, args: argparse.Namespace) -> int:
    """Print (or with ``--apply`` create) the ironlb pools for a MetalLB manifest."""
    result = _conversion(args.filename)
    if not args.apply:
        if len(result.pools) == 1:
            print(render.structured(result.pools[0], args.output))
        else:
            body = {"apiVersion": "v1", "kind": "List", "items": result.pools}
            print(render.structured(body, args.output))
        return 0
    assert cluster is not None
    from ironlb.operator.webhook import pool_admission_problem

    existing = [(str(p["metadata"]["name"]), p.get("spec") or {}) for p in cluster.list_pools()]
    taken = {name for name, _ in existing}
    others = list(existing)
    for pool in result.pools:
        name = pool["metadata"]["name"]
        if name in taken:
            raise LbctlError(f"IPAddressPool {name!r} already exists; nothing created", code=2)
        problem = pool_admission_problem(name, pool["spec"], others)
        if problem is not None:
            raise LbctlError(f"{problem}; nothing created", code=2)
        others.append((name, pool["spec"]))
    for pool in result.pools:
        cluster.create_pool(pool)
        print(f"ipaddresspool.ironlb.io/{pool['metadata']['name']} created")
    return 0
