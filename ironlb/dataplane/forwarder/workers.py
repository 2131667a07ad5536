"""Process management for ``ironlb forward``: a control parent, N workers.

The parent parses the config, runs the health checks and hands every worker
the same :class:`~ironlb.dataplane.state.DesiredState` (pickled over a
``multiprocessing`` pipe). Each worker runs one uvloop loop with a
:class:`~ironlb.dataplane.forwarder.listeners.Forwarder`; the kernel spreads
connections over the workers' ``SO_REUSEPORT`` sockets.

* SIGHUP on the parent re-reads the file; a bad file is logged and the old
  config keeps running.
* SIGTERM/SIGINT on the parent stops the workers and exits 0.
* Workers die with the parent (``PR_SET_PDEATHSIG`` plus pipe EOF), and a
  worker that dies is restarted.
* With an ``announce`` section the parent owns the listener addresses on the
  LAN once every worker is serving (bound on ``lo``, ARP/NDP answered; see
  :mod:`ironlb.dataplane.vip_announcement`), follows them on reload and
  releases them first on shutdown.
* Workers send counter snapshots once a second; the parent serves the sum on
  ``--metrics-address``.
* Listeners with ``mode: nftables`` are not given to the workers: the parent
  renders them as the kernel fast-path table (:mod:`ironlb.dataplane.fastpath`),
  replaces it atomically on every state change (health verdicts, reloads) and
  removes it on shutdown. A table that cannot be applied at start is exit code 1;
  later, the error is logged and the previous table keeps serving.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from ironlb.dataplane.config import (
    ConfigError,
    ForwardConfig,
    ListenerOptions,
    Mode,
    load_config,
)
from ironlb.dataplane.forwarder.healthcheck import HealthChecker
from ironlb.dataplane.forwarder.logs import setup_logging
from ironlb.dataplane.forwarder.stats import Snapshot, add_snapshots, retire
from ironlb.dataplane.state import DesiredState, ListenerKey

if TYPE_CHECKING:
    from ironlb.dataplane.vip_announcement import VipAnnouncement

log = logging.getLogger("ironlb.forward")

PR_SET_PDEATHSIG = 1
STATS_INTERVAL = 1.0
BIND_RETRY_INTERVAL = 5.0
RESTART_DELAY = 1.0
STOP_GRACE = 5.0


# --------------------------------------------------------------------------- worker side


def _die_with_parent(parent_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - non-Linux
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def worker_main(
    conn: multiprocessing.connection.Connection,
    index: int,
    share: int,
    log_format: str,
    log_level: str,
    parent_pid: int,
) -> None:
    """Entry point of a worker process."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    setup_logging(log_format, log_level, process=f"worker-{index}")
    import uvloop

    uvloop.run(_worker(conn, share))


async def _worker(conn: multiprocessing.connection.Connection, share: int) -> None:
    from ironlb.dataplane.forwarder.listeners import Forwarder

    loop = asyncio.get_running_loop()
    forwarder = Forwarder(loop, share=share)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    pending: list[asyncio.Task[None]] = []

    def send(message: tuple[Any, ...]) -> None:
        try:
            conn.send(message)
        except OSError:
            stop.set()

    async def apply(
        generation: int, state: DesiredState, options: dict[ListenerKey, ListenerOptions]
    ) -> None:
        errors = await forwarder.apply(state, options)
        send(("applied", generation, {str(k): v for k, v in errors.items()}))

    def on_message() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            stop.set()  # the parent is gone
            return
        if message[0] == "apply":
            pending.append(loop.create_task(apply(*message[1:])))
        pending[:] = [t for t in pending if not t.done()]

    async def housekeeping() -> None:
        since_retry = 0.0
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            send(("stats", forwarder.stats.snapshot()))
            since_retry += STATS_INTERVAL
            if forwarder.bind_errors and since_retry >= BIND_RETRY_INTERVAL:
                since_retry = 0.0
                await forwarder.apply(forwarder.state, forwarder.options)

    loop.add_reader(conn.fileno(), on_message)
    keeper = loop.create_task(housekeeping())
    # Start-up objects (modules, config) never become garbage: keep the
    # cyclic collector from traversing them again and again.
    gc.freeze()
    try:
        await stop.wait()
    finally:
        keeper.cancel()
        loop.remove_reader(conn.fileno())
        forwarder.close()
        # Let the transports finish closing: uvloop must not free a transport
        # that is still open (it can crash on a pending shutdown request).
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- parent side


@dataclass
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    snapshot: Snapshot = field(default_factory=dict)
    applied: int = -1
    errors: dict[str, str] = field(default_factory=dict)


class Supervisor:
    """The parent: config, health checks, workers, signals, metrics."""

    def __init__(
        self,
        config_path: str,
        config: ForwardConfig,
        workers: int,
        log_format: str = "text",
        log_level: str = "INFO",
        metrics_address: str | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.count = max(1, workers)
        self.log_format = log_format
        self.log_level = log_level
        self.metrics_address = metrics_address
        self.workers: dict[int, _Worker] = {}
        self.retired: Snapshot = {}
        self.generation = 0
        self.state = DesiredState()
        self.reloads = {"ok": 0, "failed": 0}
        self._ctx = multiprocessing.get_context("spawn")
        self._stopping = False
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._health: HealthChecker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self._announcement: VipAnnouncement | None = None
        self._announce_lock = asyncio.Lock()
        self._tasks: set[asyncio.Future[bool]] = set()
        self._fastpath: DesiredState | None = None  # the table in the kernel, if any

    # -- lifecycle -----------------------------------------------------------

    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        self._health = HealthChecker(self._push)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        if self.metrics_address:
            self._serve_metrics(self.metrics_address)
        self._health.update(self._checks())
        self.state = self._desired()
        fastpath_ok = self._apply_fastpath()
        if fastpath_ok:
            for index in range(self.count):
                self._spawn(index)
            self._push()
        else:
            self._stop.set()
        log.info(
            "ironlb forward: %d listener(s), %d worker(s), config %s",
            len(self.config.listeners),
            self.count,
            self.config_path,
        )
        code = 0 if fastpath_ok else 1
        started = asyncio.ensure_future(self._started.wait())
        stopped = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({started, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if self._started.is_set() and fastpath_ok:
            errors = {k: v for w in self.workers.values() for k, v in w.errors.items()}
            if errors:
                for key, err in sorted(errors.items()):
                    log.error("listener %s: cannot bind: %s", key, err)
                code = 1
                self._stop.set()
            else:
                log.info("ready: all workers are serving")
                if not await self._sync_announcement():
                    code = 1
                    self._stop.set()
        await stopped
        started.cancel()
        await self._shutdown()
        return code

    async def _shutdown(self) -> None:
        self._stopping = True
        async with self._announce_lock:
            if self._announcement is not None:
                # Tell the LAN first, so no client is sent to a closing listener.
                await self._announcement.stop()
                self._announcement = None
        if self._health is not None:
            self._health.stop()
        self._remove_fastpath()
        for worker in self.workers.values():
            self._unwatch(worker)
            if worker.process.is_alive():
                worker.process.terminate()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        for worker in self.workers.values():
            while worker.process.is_alive() and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(1)
            worker.conn.close()
        log.info("ironlb forward: stopped")

    # -- workers -------------------------------------------------------------

    def _spawn(self, index: int) -> None:
        assert self._loop is not None
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(
            target=worker_main,
            args=(child_conn, index, self.count, self.log_format, self.log_level, os.getpid()),
            name=f"ironlb-forward-{index}",
        )
        process.start()
        child_conn.close()
        worker = _Worker(index, process, parent_conn)
        self.workers[index] = worker
        self._loop.add_reader(parent_conn.fileno(), self._on_message, worker)
        self._loop.add_reader(process.sentinel, self._on_exit, worker)

    def _unwatch(self, worker: _Worker) -> None:
        assert self._loop is not None
        self._loop.remove_reader(worker.conn.fileno())
        self._loop.remove_reader(worker.process.sentinel)

    def _on_message(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            assert self._loop is not None
            self._loop.remove_reader(worker.conn.fileno())
            return
        if message[0] == "stats":
            worker.snapshot = message[1]
        elif message[0] == "applied":
            worker.applied, worker.errors = message[1], message[2]
            if all(w.applied >= 0 for w in self.workers.values()):
                self._started.set()

    def _on_exit(self, worker: _Worker) -> None:
        self._unwatch(worker)
        worker.process.join(0)
        worker.conn.close()
        self.retired = add_snapshots(self.retired, retire(worker.snapshot))
        if self._stopping or self._stop.is_set():
            return
        log.error(
            "worker %d (pid %s) exited with code %s; restarting it in %.0fs",
            worker.index,
            worker.process.pid,
            worker.process.exitcode,
            RESTART_DELAY,
        )
        assert self._loop is not None
        self._loop.call_later(RESTART_DELAY, self._respawn, worker.index)

    def _respawn(self, index: int) -> None:
        if self._stopping or self._stop.is_set():
            return
        self._spawn(index)
        self._send(self.workers[index], self._apply_message())

    # -- state -----------------------------------------------------------------

    def _checks(self) -> list[Any]:
        return [
            (lst.key, backend, lst.health_check)
            for lst in self.config.listeners
            if lst.health_check is not None
            for backend in lst.backends
        ]

    def _desired(self) -> DesiredState:
        health = self._health
        return self.config.desired_state(health.down if health is not None else None)

    def _push(self) -> None:
        """Send the current desired state to every worker (if it changed)."""
        state = self._desired()
        if state == self.state and self.generation > 0:
            return
        self._publish(state)

    def _publish(self, state: DesiredState) -> None:
        """Make ``state`` the next generation: the kernel table, then every worker."""
        self.state = state
        self.generation += 1
        self._apply_fastpath()
        message = self._apply_message()
        for worker in self.workers.values():
            self._send(worker, message)

    def _only(self, mode: Mode) -> DesiredState:
        """The part of the current state forwarded by ``mode``."""
        keys = self.config.mode_keys(mode)
        return DesiredState.build(
            (key, backends) for key, backends in self.state.listeners.items() if key in keys
        )

    def _apply_fastpath(self) -> bool:
        """Bring the kernel table in line with the ``nftables`` listeners."""
        from ironlb.dataplane.fastpath.nftables import NftError, apply_state, forwarding_off

        wanted = self._only("nftables")
        if not wanted.listeners:
            return self._remove_fastpath()
        if wanted == self._fastpath:
            return True
        try:
            apply_state(wanted)
        except (NftError, ValueError) as exc:
            log.error("fast path: cannot apply the nftables table: %s", exc)
            return False
        if self._fastpath is None:
            for key in forwarding_off(wanted):
                log.warning(
                    "fast path: %s is 0: clients on other hosts cannot reach the backends "
                    "(set it to 1)",
                    key,
                )
        self._fastpath = wanted
        ready = sum(b.ready for backends in wanted.listeners.values() for b in backends)
        log.info(
            "fast path: table inet ironlb applied (%d listener(s), %d ready backend(s))",
            len(wanted.listeners),
            ready,
        )
        return True

    def _remove_fastpath(self) -> bool:
        if self._fastpath is None:
            return True
        from ironlb.dataplane.fastpath.nftables import NftError, remove_table

        try:
            remove_table()
        except NftError as exc:
            log.error("fast path: cannot remove the nftables table: %s", exc)
            return False
        self._fastpath = None
        log.info("fast path: table inet ironlb removed")
        return True

    def _apply_message(self) -> tuple[str, int, DesiredState, dict[ListenerKey, ListenerOptions]]:
        """What a worker is sent: the proxy part of the state and its options."""
        options: Mapping[ListenerKey, ListenerOptions] = self.config.options()
        return ("apply", self.generation, self._only("proxy"), dict(options))

    def _send(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        try:
            worker.conn.send(message)
        except OSError as exc:
            log.error("worker %d: cannot send the state: %s", worker.index, exc)

    def reload(self) -> None:
        """Re-read the config file (SIGHUP); keep the old one if it is bad."""
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.reloads["failed"] += 1
            log.error("reload failed, keeping the running config: %s", exc)
            return
        self.reloads["ok"] += 1
        changed = config != self.config
        self.config = config
        assert self._health is not None
        self._health.update(self._checks())
        options_changed = changed and self.generation > 0
        if options_changed:
            self._publish(self._desired())
        log.info("reloaded %s (%s)", self.config_path, "changed" if changed else "unchanged")
        if changed and self._started.is_set():
            task = asyncio.ensure_future(self._sync_announcement())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- announcing ------------------------------------------------------------

    async def _sync_announcement(self) -> bool:
        """Own (bind on lo and answer ARP/NDP for) the listener addresses when
        the config has an ``announce`` section; drop them when it has none."""
        async with self._announce_lock:
            if self._stopping:
                return True
            wanted = self.config.announce
            current = self._announcement
            if current is not None and (wanted is None or wanted != current.config):
                await current.stop()
                self._announcement = current = None
            if wanted is None:
                return True
            vips = frozenset(lst.key.vip for lst in self.config.listeners)
            try:
                if current is None:
                    from ironlb.dataplane.vip_announcement import VipAnnouncement

                    current = VipAnnouncement(wanted, registry=self.registry)
                    await current.start(vips)
                    self._announcement = current
                else:
                    await current.update(vips)
            except (OSError, RuntimeError) as exc:
                log.error("cannot announce %s: %s", sorted(map(str, vips)), exc)
                return False
            log.info("announcing VIPs %s", ", ".join(sorted(map(str, vips))))
            return True

    # -- metrics ---------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        total = self.retired
        for worker in list(self.workers.values()):
            total = add_snapshots(total, worker.snapshot)
        return total

    def backend_up(self) -> dict[tuple[str, str], bool]:
        return {
            (str(key), str(backend)): backend.ready
            for key, backends in self.state.listeners.items()
            for backend in backends
        }

    def _serve_metrics(self, address: str) -> None:
        from ironlb.dataplane.forwarder.metrics import ForwarderCollector, serve_metrics

        collector = ForwarderCollector(
            self.snapshot,
            self.backend_up,
            lambda: sum(1 for w in self.workers.values() if w.process.is_alive()),
            lambda: dict(self.reloads),
        )
        serve_metrics(address, collector, self.registry)
        log.info("metrics on http://%s/metrics", address)
