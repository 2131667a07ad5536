"""The kernel part of a node's data plane: keep ``table inet ironlb`` equal to the
``kernel``-mode listeners of the desired state, and keep it ours.

A small stateful wrapper over :mod:`.nftables`: it remembers what it last
wrote, so an unchanged state costs one ``nft list``, removes the table when no
kernel listener is left, and says once per family when forwarding is off
(DNAT to a backend on another host needs it). Each write carries the
session-affinity pins of the table it replaces over into the new one.

Ownership (:mod:`.owner`): the table carries its writer's mark. Another live
ironlb's table is never overwritten (:class:`KernelPathError` names that
process: one kernel-mode data plane per network namespace); a table whose
owner is gone, or that has no mark, is stale and removed (:meth:`clear_stale`,
at start, whatever the mode). :meth:`repair` rewrites the table when it went
missing (``nft flush ruleset``) or was changed behind our back; the data plane
calls it periodically and on every apply.
"""

from __future__ import annotations

import logging

from ironlb.dataplane.fastpath.nftables import (
    NftError,
    apply_state,
    forwarding_off,
    list_table,
    loopback_backends,
    remove_table,
)
from ironlb.dataplane.fastpath.owner import Owner, describe_process, owner_of_listing
from ironlb.dataplane.fastpath.render import Pins, RenderError, parse_pins, without_pins
from ironlb.dataplane.state import DesiredState

__all__ = ["KernelPath", "KernelPathError"]

log = logging.getLogger("ironlb.dataplane.kernel")


class KernelPathError(RuntimeError):
    """The table could not be written or removed, or another live ironlb owns it;
    the previous table stays in place."""


def _normalised(text: str) -> list[str]:
    """The listing as compared for :meth:`KernelPath.repair`: pinned clients
    (session affinity) come and go in the kernel, so they are left out."""
    return [line.strip() for line in without_pins(text).splitlines() if line.strip()]


class KernelPath:
    """Owns ``table inet ironlb`` in the calling thread's network namespace."""

    def __init__(self, owner: Owner | None = None) -> None:
        self.current: DesiredState | None = None  # the listeners now in the kernel
        self.owner = owner or Owner.me()
        self._listing: list[str] | None = None  # what nft listed right after our write
        self._warned: set[str] = set()

    # -- ownership -----------------------------------------------------------------

    def _foreign_owner(self, listing: str) -> Owner | None:
        """The live process other than us that owns the listed table, if any."""
        owner = owner_of_listing(listing)
        if owner is None or owner == self.owner or not owner.alive():
            return None
        return owner

    def clear_stale(self) -> bool:
        """Remove a table left by an ironlb that is gone (or unmarked); True when removed.

        Raises :class:`KernelPathError` only when the removal itself fails.
        """
        try:
            listing = list_table()
        except NftError as exc:
            raise KernelPathError(f"cannot read the nftables table: {exc}") from exc
        if listing is None:
            return False
        owner = owner_of_listing(listing)
        if owner == self.owner or (owner is not None and owner.alive()):
            return False
        try:
            remove_table()
        except NftError as exc:
            raise KernelPathError(f"cannot remove the stale nftables table: {exc}") from exc
        who = f"pid {owner.pid}, which is gone" if owner else "no ironlb (it has no owner mark)"
        log.warning("kernel mode: removed a stale table inet ironlb left by %s", who)
        return True

    # -- apply -----------------------------------------------------------------------

    def apply(self, state: DesiredState) -> bool:
        """Make the table serve ``state``'s kernel-mode listeners; True when it changed.

        An unchanged state is still checked against the kernel and rewritten if
        the table went missing or was altered. Raises :class:`KernelPathError`
        (nft's own message, or the live process that owns the table) when the
        table is refused; the old table keeps serving then.
        """
        wanted = state.only("kernel").with_vips(())
        if not wanted.listeners:
            return self.remove()
        if wanted == self.current:
            return self.repair()
        return self._write(wanted)

    def _write(self, wanted: DesiredState) -> bool:
        pins: Pins = {}
        try:
            listing = list_table()
            if listing is not None:
                foreign = self._foreign_owner(listing)
                if foreign is not None:
                    raise KernelPathError(
                        f"table inet ironlb belongs to another ironlb, "
                        f"{describe_process(foreign.pid)}: one kernel-mode data plane per "
                        "network namespace; stop that one or use proxy mode here"
                    )
                # Session affinity: the clients pinned in the table being replaced
                # stay pinned (a client pinned in the few ms until the new table
                # is in is pinned again by its next connection).
                pins = parse_pins(listing)
            apply_state(wanted, owner_mark=self.owner.mark, pins=pins)
            written = list_table()
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
        for listener in loopback_backends(wanted):
            if listener not in self._warned:
                self._warned.add(listener)
                log.warning(
                    "kernel mode: %s: a loopback backend is reached only by clients on this "
                    "host (the kernel drops DNAT from outside to 127.0.0.0/8 and ::1 while "
                    "route_localnet is 0); use the host's address or mode: proxy",
                    listener,
                )
        self.current = wanted
        self._listing = _normalised(written) if written is not None else None
        ready = sum(len(spec.ready) for spec in wanted.listeners.values())
        log.info(
            "kernel mode: table inet ironlb applied (%d listener(s), %d ready backend(s))",
            len(wanted.listeners),
            ready,
        )
        return True

    def repair(self) -> bool:
        """Rewrite the table if it is missing or differs from what we wrote; True if rewritten.

        A table another live ironlb wrote over ours is left alone (logged as an
        error): two writers must not fight. Raises :class:`KernelPathError` as
        :meth:`apply` does.
        """
        if self.current is None:
            return False
        try:
            listing = list_table()
        except NftError as exc:
            raise KernelPathError(f"cannot read the nftables table: {exc}") from exc
        if listing is not None and _normalised(listing) == self._listing:
            return False
        what = "is missing" if listing is None else "was changed by someone else"
        if listing is not None:
            foreign = self._foreign_owner(listing)
            if foreign is not None:
                raise KernelPathError(
                    f"table inet ironlb was taken over by {describe_process(foreign.pid)}"
                )
        log.warning("kernel mode: table inet ironlb %s; writing it again", what)
        current, self.current = self.current, None
        self._write(current)
        return True

    def remove(self) -> bool:
        """Delete the table if this path wrote one; True when it did."""
        if self.current is None:
            return False
        try:
            listing = list_table()
            if listing is None or self._foreign_owner(listing) is None:
                remove_table()
        except NftError as exc:
            raise KernelPathError(f"cannot remove the nftables table: {exc}") from exc
        self.current = None
        self._listing = None
        log.info("kernel mode: table inet ironlb removed")
        return True
