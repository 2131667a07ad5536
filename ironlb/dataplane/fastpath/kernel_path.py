"""The kernel part of a node's data plane: keep ``table inet ironlb`` equal to the
``kernel``-mode listeners of the desired state.

A small stateful wrapper over :mod:`.nftables`: it remembers what it last
wrote, so an unchanged state costs nothing, removes the table when no kernel
listener is left, and says once per family when forwarding is off (DNAT to a
backend on another host needs it).
"""

from __future__ import annotations

import logging

from ironlb.dataplane.fastpath.nftables import NftError, apply_state, forwarding_off, remove_table
from ironlb.dataplane.fastpath.render import RenderError
from ironlb.dataplane.state import DesiredState

log = logging.getLogger("ironlb.dataplane.kernel")


class KernelPathError(RuntimeError):
    """The table could not be written or removed; the previous one stays in place."""


class KernelPath:
    """Owns ``table inet ironlb`` in the calling thread's network namespace."""

    def __init__(self) -> None:
        self.current: DesiredState | None = None  # the listeners now in the kernel
        self._warned: set[str] = set()

    def apply(self, state: DesiredState) -> bool:
        """Make the table serve ``state``'s kernel-mode listeners; True when it changed.

        Raises :class:`KernelPathError` (nft's own message) when the table is
        refused; the old table keeps serving then.
        """
        wanted = state.only("kernel").with_vips(())
        if not wanted.listeners:
            return self.remove()
        if wanted == self.current:
            return False
        try:
            apply_state(wanted)
        except (NftError, RenderError) as exc:
            raise KernelPathError(f"cannot apply the nftables table: {exc}") from exc
        for key in forwarding_off(wanted):
            if key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "kernel mode: %s is 0: clients on other hosts cannot reach the backends "
                    "(set it to 1)",
                    key,
                )
        self.current = wanted
        ready = sum(len(spec.ready) for spec in wanted.listeners.values())
        log.info(
            "kernel mode: table inet ironlb applied (%d listener(s), %d ready backend(s))",
            len(wanted.listeners),
            ready,
        )
        return True

    def remove(self) -> bool:
        """Delete the table if this path wrote one; True when it did."""
        if self.current is None:
            return False
        try:
            remove_table()
        except NftError as exc:
            raise KernelPathError(f"cannot remove the nftables table: {exc}") from exc
        self.current = None
        log.info("kernel mode: table inet ironlb removed")
        return True
