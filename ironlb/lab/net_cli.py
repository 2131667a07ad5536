"""Command-line adapter for ``ironlb lab net up|down`` (arguments and output only).

``up`` builds a lab LAN of network namespaces and leaves it running, printing
its hosts (a table, or JSON with ``--json``); ``down --prefix P`` removes every
namespace named ``P-*`` and the processes left in them.
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
            lab = Lab(nodes=args.nodes, backends=args.backends, prefix=args.prefix)
            lab.up()
            print(json.dumps(lab_json(lab), indent=2) if args.json else lab_table(lab))
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
