"""Worker processes of the proxy data plane, and the pool that runs them.

Each worker runs one uvloop loop with a
:class:`~ironlb.dataplane.forwarder.listeners.Forwarder`; the kernel spreads
connections over the workers' ``SO_REUSEPORT`` sockets. The control process
(:class:`WorkerPool`, owned by :class:`~ironlb.dataplane.dataplane.DataPlane`)
hands every worker the same :class:`~ironlb.dataplane.state.DesiredState` as
an :class:`~.messages.Apply` over a ``multiprocessing`` pipe and waits for
the :class:`~.messages.Applied` answers.

* Workers die with the parent (``PR_SET_PDEATHSIG`` plus pipe EOF); a worker
  that dies is restarted after a second and given the current state.
* Workers send counter snapshots once a second; :meth:`WorkerPool.snapshot`
  is their sum (plus what exited workers had counted).
* A listener that could not be bound is retried every few seconds.
* ``max_connections`` / ``max_sessions`` are counted across the workers in
  shared memory (:mod:`.shared_limits`); a dead worker's count is zeroed
  before it is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from ironlb.common.logs import setup_logging
from ironlb.dataplane.forwarder.fd_limits import fds_needed, raise_nofile
from ironlb.dataplane.forwarder.messages import Applied, Apply, CloseDraining, Stats
from ironlb.dataplane.forwarder.shared_limits import SharedCounts, WorkerCounts, spawn_context
from ironlb.dataplane.forwarder.stats import LISTENER_FIELDS, Snapshot, add_snapshots, retire
from ironlb.dataplane.state import DesiredState, IPAddress, ListenerKey

log = logging.getLogger("ironlb.forward")

PR_SET_PDEATHSIG = 1
STATS_INTERVAL = 1.0
BIND_RETRY_INTERVAL = 5.0
RESTART_DELAY = 1.0
STOP_GRACE = 5.0
_ACTIVE = LISTENER_FIELDS.index("active")
_UDP_ACTIVE = LISTENER_FIELDS.index("udp_sessions_active")


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
    workers: int,
    counts: tuple[Any, Any],
    log_format: str,
    log_level: str,
    parent_pid: int,
) -> None:
    """Entry point of a worker process (``counts``: the shared array and its lock)."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    setup_logging(log_format, log_level, process=f"worker-{index}")
    import uvloop

    uvloop.run(_worker(conn, WorkerCounts(*counts, workers, index), parent_pid))


async def _worker(
    conn: multiprocessing.connection.Connection, counts: WorkerCounts, parent_pid: int
) -> None:
    from ironlb.dataplane.forwarder.listeners import Forwarder

    loop = asyncio.get_running_loop()
    forwarder = Forwarder(loop, counts=counts)
    stop = asyncio.Event()

    def on_term() -> None:
        # A SIGTERM sent to the whole process group (systemd, `kill -- -PGID`) must not
        # cut open connections while the control process drains them: the control
        # process stops us by closing the pipe. Only a dead parent (PDEATHSIG) counts.
        if os.getppid() != parent_pid:
            stop.set()

    loop.add_signal_handler(signal.SIGTERM, on_term)
    pending: set[asyncio.Task[None]] = set()

    def send(message: Applied | Stats) -> None:
        try:
            conn.send(message)
        except OSError as exc:
            log.warning("worker: cannot reach the control process (%s): stopping", exc)
            stop.set()

    async def close_draining(message: CloseDraining) -> None:
        await forwarder.close_draining(message.vips)
        errors = {str(k): v for k, v in forwarder.bind_errors.items()}
        send(Applied(message.generation, errors))

    async def apply(message: Apply) -> None:
        raise_nofile(fds_needed(message.state))  # the control process warns if short
        errors = await forwarder.apply(message.state, message.slots)
        send(Applied(message.generation, {str(k): v for k, v in errors.items()}))

    def on_message() -> None:
        try:
            message = conn.recv()
        except EOFError:  # the control process closes the pipe to stop us (its stop())
            log.info("worker: the control process closed the pipe: stopping")
            stop.set()
            return
        except OSError as exc:
            log.warning("worker: the control process is gone (%r): stopping", exc)
            stop.set()
            return
        if isinstance(message, Apply | CloseDraining):
            # Tasks queue on the forwarder's lock in arrival order.
            task = loop.create_task(
                apply(message) if isinstance(message, Apply) else close_draining(message)
            )
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def housekeeping() -> None:
        since_retry = 0.0
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            send(Stats(forwarder.stats.snapshot()))
            since_retry += STATS_INTERVAL
            if forwarder.bind_errors and since_retry >= BIND_RETRY_INTERVAL:
                since_retry = 0.0
                await forwarder.apply(forwarder.state)

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


class WorkerPool:
    """``count`` worker processes serving the proxy-mode listeners of one state.

    Call :meth:`start` on the running loop, :meth:`publish` for every new
    state, :meth:`wait_applied` to know it is served, :meth:`stop` at the end.
    """

    def __init__(self, count: int, *, log_format: str = "text", log_level: str = "info") -> None:
        self.count = max(1, count)
        self.log_format = log_format
        self.log_level = log_level
        self.workers: dict[int, _Worker] = {}
        self.retired: Snapshot = {}
        self.generation = 0
        self.state = DesiredState()
        self._ctx = spawn_context()
        self.counts = SharedCounts(self._ctx, self.count)
        self.slots: dict[ListenerKey, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._changed = asyncio.Event()

    def start(self) -> None:
        """Spawn the workers (they serve nothing until :meth:`publish`)."""
        self._loop = asyncio.get_running_loop()
        for index in range(self.count):
            self._spawn(index)

    def publish(self, state: DesiredState) -> int:
        """Send ``state`` to every worker as the next generation; returns that generation."""
        self.state = state
        self.generation += 1
        self.slots = self.counts.assign(state.listeners)
        message = Apply(self.generation, state, self.slots)
        for worker in self.workers.values():
            self._send(worker, message)
        return self.generation

    def close_draining(self, vips: frozenset[IPAddress]) -> int:
        """Tell every worker to close the removed listeners on ``vips`` and their
        open connections; returns the generation to :meth:`wait_applied` for."""
        self.generation += 1
        message = CloseDraining(self.generation, vips)
        for worker in self.workers.values():
            self._send(worker, message)
        return self.generation

    async def wait_applied(self, generation: int, timeout: float) -> dict[str, str] | None:
        """Wait until every live worker has applied ``generation``.

        Returns the bind errors by listener, or ``None`` after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            live = [w for w in self.workers.values() if w.process.is_alive()]
            if live and all(w.applied >= generation for w in live):
                return {k: v for w in live for k, v in w.errors.items()}
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self._changed.clear()
            try:
                async with asyncio.timeout(min(remaining, 0.2)):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def alive(self) -> int:
        """How many workers are running."""
        return sum(1 for w in self.workers.values() if w.process.is_alive())

    def snapshot(self) -> Snapshot:
        """The counters of all workers, summed (exited workers included)."""
        total = self.retired
        for worker in list(self.workers.values()):
            total = add_snapshots(total, worker.snapshot)
        return total

    def open_flows(self) -> int:
        """Open TCP connections plus UDP sessions, as of the workers' last snapshots."""
        return sum(
            values[_ACTIVE] + values[_UDP_ACTIVE]
            for worker in self.workers.values()
            for values, _ in worker.snapshot.values()
        )

    async def stop(self) -> None:
        """Stop the workers (open connections are closed), kill stragglers.

        A worker stops when its pipe closes (it ignores a SIGTERM of the whole
        process group while its parent lives, so a drain is not cut short).
        """
        self._stopping = True
        for worker in self.workers.values():
            self._unwatch(worker)
            worker.conn.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        for worker in self.workers.values():
            while worker.process.is_alive() and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(1)

    # -- processes -----------------------------------------------------------

    def _spawn(self, index: int) -> None:
        assert self._loop is not None
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(
            target=worker_main,
            args=(
                child_conn,
                index,
                self.count,
                (self.counts.array, self.counts.lock),
                self.log_format,
                self.log_level,
                os.getpid(),
            ),
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
        if not worker.conn.closed:
            self._loop.remove_reader(worker.conn.fileno())
        with contextlib.suppress(ValueError):  # the process object was already closed
            self._loop.remove_reader(worker.process.sentinel)

    def _on_message(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            assert self._loop is not None
            self._loop.remove_reader(worker.conn.fileno())
            return
        if isinstance(message, Stats):
            worker.snapshot = message.snapshot
        elif isinstance(message, Applied):
            worker.applied, worker.errors = message.generation, message.errors
            self._changed.set()

    def _on_exit(self, worker: _Worker) -> None:
        self._unwatch(worker)
        worker.process.join(1)  # the sentinel says it exited: reap it for its exit code
        worker.conn.close()
        self.retired = add_snapshots(self.retired, retire(worker.snapshot))
        worker.snapshot = {}
        self.counts.forget_worker(worker.index)  # its connections died with it
        self._changed.set()
        if self._stopping:
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
        if self._stopping:
            return
        self._spawn(index)
        if self.generation > 0:
            self._send(self.workers[index], Apply(self.generation, self.state, self.slots))

    def _send(self, worker: _Worker, message: Apply | CloseDraining) -> None:
        try:
            worker.conn.send(message)
        except OSError as exc:
            log.error("worker %d: cannot send the state: %s", worker.index, exc)
