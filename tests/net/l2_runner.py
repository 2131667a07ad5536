"""Run one L2 announcer as a process, driven by lines on stdin (for the
network tests: start it inside a node namespace with ``ip netns exec``).

    python -m tests.net.l2_runner [--interfaces eth0 ...] [--vip IP ...]
        [--loop uvloop|asyncio] [--garp-repeat 0,0.5,2] [--refresh 30|none]

Commands (one per line): ``own IP...`` (add), ``release IP...`` (remove),
``set [IP...]`` (exactly these), ``status``, ``metrics``. Every line gets one
JSON line back on stdout: ``{"event": "ok", ...}`` with the owned VIPs, the
served interfaces and ``t0``/``t1`` (wall clock just before and after
``set_owned``), or ``{"event": "error", "error": ...}``. With ``--bind`` the
owned VIPs are also kept on ``lo`` by ``VipBinder`` (bound before they are
announced, unbound after they are released; left in place on exit). After start-up it
prints ``{"event": "ready", ...}``. EOF on stdin or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import logging
import signal
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from ironlb.dataplane.l2 import Announcer
from ironlb.dataplane.state import IPAddress


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="l2_runner")
    parser.add_argument("--interfaces", nargs="*", default=None)
    parser.add_argument("--vip", action="append", default=[], type=ipaddress.ip_address)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--garp-repeat", default="0,0.5,2")
    parser.add_argument("--refresh", default="30")
    parser.add_argument(
        "--bind", action="store_true", help="also keep the owned VIPs on lo (VipBinder)"
    )
    return parser.parse_args(argv)


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> None:
    registry = CollectorRegistry()
    refresh = None if args.refresh == "none" else float(args.refresh)
    repeat = [float(x) for x in args.garp_repeat.split(",") if x]
    announcer = Announcer(
        args.interfaces, garp_repeat=repeat, refresh_interval=refresh, registry=registry
    )
    # VipBinder uses pyroute2's synchronous API, which runs its own event loop:
    # keep it on one worker thread (threads share the process's namespace).
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()
    binder: Any = None
    if args.bind:
        from ironlb.dataplane.vip import VipBinder

        binder = await loop.run_in_executor(pool, VipBinder)

    async def bind(vips: set[IPAddress]) -> None:
        if binder is not None:
            await loop.run_in_executor(pool, binder.sync, vips)

    await bind(set(args.vip))
    announcer.set_owned(args.vip)
    await announcer.start()

    def state() -> dict[str, Any]:
        return {
            "owned": sorted(str(v) for v in announcer.owned),
            "interfaces": sorted(announcer.interfaces),
        }

    _emit("ready", **state())
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def commands() -> None:
        while line := await reader.readline():
            words = line.decode().split()
            if not words:
                continue
            try:
                verb, addrs = words[0], [ipaddress.ip_address(w) for w in words[1:]]
                current: set[IPAddress] = set(announcer.owned)
                if verb == "own":
                    wanted = current | set(addrs)
                elif verb == "release":
                    wanted = current - set(addrs)
                elif verb == "set":
                    wanted = set(addrs)
                elif verb == "status":
                    _emit("ok", cmd=verb, t0=time.time(), t1=time.time(), **state())
                    continue
                elif verb == "metrics":
                    _emit("ok", cmd=verb, text=generate_latest(registry).decode())
                    continue
                else:
                    raise ValueError(f"unknown command {verb!r}")
                # Takeover: bind first, then announce. Release: the reverse.
                await bind(current | wanted)
                t0 = time.time()
                announcer.set_owned(wanted)
                t1 = time.time()
                await bind(wanted)
                _emit("ok", cmd=verb, t0=t0, t1=t1, **state())
            except (ValueError, TypeError) as exc:
                _emit("error", error=str(exc))
        stopping.set()

    task = loop.create_task(commands())
    await stopping.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await announcer.stop()
    if binder is not None:
        await loop.run_in_executor(pool, binder.close)  # addresses stay, as after a crash
    pool.shutdown()
    _emit("stopped")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(_serve(args))
    else:
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
