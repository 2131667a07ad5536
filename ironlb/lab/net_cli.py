"""Command-line adapter for ``ironlb lab net up|down`` (arguments and output only).

``up`` builds a lab LAN of network namespaces (optionally with pods on the
nodes, and a pod server in each with ``--serve``) and leaves it running,
printing its hosts and pods (a table, or JSON with ``--json``); ``down --prefix
P`` removes every namespace named ``P-*`` (pods included) and kills the
processes left in them, pod servers too.
"""

from __future__ import annotations

import argparse
import json
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="net_action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="build the LAN and leave it up")
    up.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    up.add_argument("--backends", type=int, default=1, help="number of backends (default 1)")
    up.add_argument("--pods-per-node", type=int, default=0, help="pods on each node (default 0)")
    up.add_argument(
        "--serve",
        action="store_true",
        help="start a pod server in every pod (TCP 8080, UDP 8053); `down` stops them",
    )
    up.add_argument("--prefix", help="namespace name prefix (default: ilb + random)")
    up.add_argument("--json", action="store_true", help="print JSON instead of a table")
    down = actions.add_parser("down", help="remove the namespaces of a prefix")
    down.add_argument("--prefix", required=True, help="prefix given to (or printed by) `up`")
    down.add_argument("--json", action="store_true", help="print removed names as JSON")


def run(args: argparse.Namespace) -> int:
    from ironlb.lab.netlab import Lab, LabError, cleanup_stale
    from ironlb.lab.netlab.render import lab_json, lab_table

    try:
        if args.net_action == "up":
            if args.serve and args.pods_per_node < 1:
                raise LabError("--serve needs --pods-per-node 1 or more")
            lab = Lab(
                nodes=args.nodes,
                backends=args.backends,
                prefix=args.prefix,
                pods_per_node=args.pods_per_node,
            )
            lab.up()
            serving = None
            if args.serve:
                serving = ((8080,), (8053,))
                try:
                    lab.start_pod_servers(tcp=serving[0], udp=serving[1])
                except BaseException:
                    lab.down()
                    raise
            view = json.dumps(lab_json(lab, serving), indent=2) if args.json else None
            print(view if view is not None else lab_table(lab, serving))
            return 0
        removed = cleanup_stale(args.prefix)
    except LabError as exc:
        print(f"ironlb lab net: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(f"ironlb lab net: needs root: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"prefix": args.prefix, "removed": removed}))
    else:
        print(f"removed {len(removed)} namespace(s): {' '.join(removed) or '-'}")
    return 0
