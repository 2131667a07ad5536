"""Command-line adapter for ``ironlb lab controllers`` (arguments and start-up only).

Runs the lab workload controllers (``ironlb.lab.workloads``) against an API
until SIGTERM/SIGINT, after registering the lab's Nodes: ``--nodes N``
(node1..nodeN) or ``--nodes-from-prefix P`` (the ``P-nodeN`` namespaces of a
running net lab).
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", metavar="FILE", required=True, help="kubeconfig of the API to act on"
    )
    nodes = parser.add_mutually_exclusive_group()
    nodes.add_argument("--nodes", type=int, metavar="N", help="register Nodes node1..nodeN first")
    nodes.add_argument(
        "--nodes-from-prefix",
        metavar="P",
        help="register a Node for each P-nodeN namespace of a running net lab",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log every write")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from ironlb.lab.netlab.plan import MAX_NODES, LabError, validate_prefix
    from ironlb.lab.workloads import ApiError, ClientConfig
    from ironlb.lab.workloads import run as run_controllers
    from ironlb.lab.workloads.nodes import netns_node_indexes

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    indexes: list[int] = []
    try:
        if args.nodes is not None:
            if not 1 <= args.nodes <= MAX_NODES:
                raise LabError(f"--nodes must be 1..{MAX_NODES}, got {args.nodes}")
            indexes = list(range(1, args.nodes + 1))
        elif args.nodes_from_prefix is not None:
            indexes = netns_node_indexes(validate_prefix(args.nodes_from_prefix))
            if not indexes:
                raise LabError(f"no namespaces {args.nodes_from_prefix}-nodeN: is the lab up?")
    except LabError as exc:
        print(f"ironlb lab controllers: {exc}", file=sys.stderr)
        return 2
    try:
        config = ClientConfig.from_kubeconfig(args.kubeconfig)
    except ApiError as exc:
        print(f"ironlb lab controllers: {exc}", file=sys.stderr)
        return 1

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        logging.getLogger("ironlb.lab.workloads").info(
            "lab controllers running (nodes: %s)", " ".join(f"node{i}" for i in indexes) or "-"
        )
        await run_controllers(config, stop=stop, nodes=indexes)

    try:
        asyncio.run(main())
    except ApiError as exc:
        print(f"ironlb lab controllers: {exc}", file=sys.stderr)
        return 1
    return 0
