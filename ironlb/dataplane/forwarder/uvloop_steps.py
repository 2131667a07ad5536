"""Stepping uvloop's ``create_connection`` coroutine without a Task.

The TCP hot path makes one upstream transport per client connection. A Task
per connect (the public way: ``loop.create_task(loop.create_connection())``)
costs a Task object, a context copy and two loop iterations; instead the
coroutine is sent ``None`` by hand and the future it yields gets a plain done
callback. That relies on two things asyncio does not promise:

* what uvloop's ``create_connection(sock=...)`` yields: nothing, a bare
  ``yield`` (``None``) or asyncio futures;
* the private ``_asyncio_future_blocking`` flag, which a Task clears before
  it waits on a yielded future; we clear it the same way.

(``tcp._UpstreamSocket`` also relies on when uvloop reads ``fileno()`` of the
socket it is given; the same version check covers it.)

Both were read in uvloop's source and exercised by the tests for the versions
in :data:`VERIFIED`; :func:`require_verified_uvloop` refuses any other
version with a one-line message (the data plane calls it at start), so an
upgrade is a deliberate check, not a silent change of behaviour.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

#: uvloop versions ``[first, past)`` whose ``create_connection`` was checked
#: against :func:`step_coroutine` (keep in step with pyproject.toml).
VERIFIED: tuple[tuple[int, int], tuple[int, int]] = ((0, 23), (0, 24))


class UnverifiedUvloop(RuntimeError):
    """The installed uvloop is outside :data:`VERIFIED`."""


def _release(version: str) -> tuple[int, int]:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise UnverifiedUvloop(f"uvloop version {version!r} is not understood") from None


def require_verified_uvloop(version: str | None = None) -> None:
    """Raise :class:`UnverifiedUvloop` unless ``version`` (default: the
    installed uvloop's) is in :data:`VERIFIED`."""
    if version is None:
        import uvloop

        version = str(getattr(uvloop, "__version__", "unknown"))
    first, past = VERIFIED
    if not first <= _release(version) < past:
        raise UnverifiedUvloop(
            f"uvloop {version} is not one the TCP forwarder was verified with "
            f"(>={first[0]}.{first[1]},<{past[0]}.{past[1]}); install a verified "
            "version or re-check ironlb/dataplane/forwarder/uvloop_steps.py and widen VERIFIED"
        )


def step_coroutine(coro: Coroutine[Any, Any, object]) -> Any:
    """Run ``coro`` to its next suspension point, as a Task would.

    Returns what it yielded: ``None`` for a bare yield (step again on the
    next loop iteration) or a future (step again from its done callback; its
    ``_asyncio_future_blocking`` flag is cleared as ``Task.__step`` does).
    Raises ``StopIteration`` when the coroutine returned and whatever
    exception it raised otherwise.
    """
    future = coro.send(None)
    if future is not None:
        future._asyncio_future_blocking = False
    return future
