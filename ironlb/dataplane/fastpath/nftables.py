"""Apply and remove the fast-path table in the kernel, through libnftables.

libnftables (``libnftables.so.1``, the library behind the ``nft`` command) is
called through :mod:`ctypes`: the Debian binding ``python3-nftables`` belongs to
the system Python and is not importable from a virtualenv, and the handful of
calls needed here (new context, buffer output/errors, run a buffer, free) do
not justify a dependency or a subprocess per apply. Each call runs the whole
rendered text as one netlink batch, so a table is replaced atomically or, on
error, left exactly as it was.

Everything happens in the network namespace of the calling thread: a fresh
context (and netlink socket) is made per call, so a caller that entered a
namespace with ``setns`` gets that namespace's tables.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

from ironlb.dataplane.fastpath.render import (
    TABLE_FAMILY,
    TABLE_NAME,
    Pins,
    render_removal,
    render_table,
)
from ironlb.dataplane.state import DesiredState

LIBRARY = "libnftables.so.1"
#: libnftables' ``NFT_CTX_OUTPUT_NUMERIC_TIME`` (``nft -T``): times in seconds
#: (``expires 491s``), which :func:`~.render.parse_pins` reads.
NUMERIC_TIME = 1 << 10


class NftError(RuntimeError):
    """libnftables refused a command; ``str()`` carries nft's own message."""


class _Lib:
    """The few libnftables entry points, typed for ctypes."""

    def __init__(self, name: str) -> None:
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise NftError(
                f"cannot load {name} ({exc}); install the nftables package (libnftables1)"
            ) from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.restype = None
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        for fn in (lib.nft_ctx_buffer_output, lib.nft_ctx_buffer_error):
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p]
        for fn in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            fn.restype = ctypes.c_char_p
            fn.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.restype = None
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib

    def run(self, text: str, flags: int = 0) -> str:
        """Run ``text`` (one batch) with output ``flags`` (``NFT_CTX_OUTPUT_*``);
        return nft's output or raise :class:`NftError`."""
        lib = self.lib
        ctx = lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
        if not ctx:
            raise NftError("nft_ctx_new failed")
        try:
            if flags:
                lib.nft_ctx_output_set_flags(ctx, flags)
            if lib.nft_ctx_buffer_output(ctx) or lib.nft_ctx_buffer_error(ctx):
                raise NftError("cannot buffer libnftables output")
            rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        finally:
            lib.nft_ctx_free(ctx)
        if rc != 0:
            raise NftError(err.strip() or f"nft failed (code {rc})")
        return out


_lib: _Lib | None = None
_lib_lock = threading.Lock()


def _library() -> _Lib:
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _Lib(LIBRARY)
        return _lib


def run_nft(text: str, flags: int = 0) -> str:
    """Run nft commands (``nft -f`` syntax) as one transaction; return the output."""
    return _library().run(text, flags)


def apply_state(
    state: DesiredState, table: str = TABLE_NAME, owner_mark: str = "", pins: Pins | None = None
) -> str:
    """Replace the fast-path table with one rendered from ``state`` (and the
    affinity ``pins`` carried over, :func:`~.render.render_table`); return the text.

    Atomic: on any error (:class:`NftError`) the previous table stays in place.
    """
    text = render_table(state, table, owner_mark, pins)
    run_nft(text)
    return text


def remove_table(table: str = TABLE_NAME) -> None:
    """Delete the fast-path table; nothing happens when there is none."""
    run_nft(render_removal(table))


def list_table(table: str = TABLE_NAME) -> str | None:
    """``nft -T list table inet <table>`` output (times in seconds), or None when
    there is no such table."""
    if not table_exists(table):
        return None
    try:
        return run_nft(f"list table {TABLE_FAMILY} {table}", NUMERIC_TIME)
    except NftError:
        return None  # removed between the two calls


def table_exists(table: str = TABLE_NAME) -> bool:
    """Whether ``table inet <table>`` exists in this thread's namespace."""
    listing = run_nft(f"list tables {TABLE_FAMILY}")
    return f"table {TABLE_FAMILY} {table}" in listing.splitlines()


_FORWARDING = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}


def loopback_backends(state: DesiredState) -> list[str]:
    """Listeners (as text) with a loopback backend that remote clients cannot reach.

    The kernel drops a packet DNATed from another host to 127.0.0.0/8 unless
    ``net.ipv4.conf.*.route_localnet`` is 1 (and ::1 is never routed from
    outside), so such a listener only works for clients on this host.
    """
    try:
        with open("/proc/sys/net/ipv4/conf/all/route_localnet", encoding="ascii") as fh:
            localnet = fh.read().strip() == "1"
    except OSError:
        localnet = False
    found = []
    for key, spec in sorted(state.listeners.items(), key=lambda kv: str(kv[0])):
        if key.vip.is_loopback:
            continue
        for backend in spec.backends:
            if backend.address.is_loopback and not (backend.address.version == 4 and localnet):
                found.append(f"{key} -> {backend}")
                break
    return found


def forwarding_off(state: DesiredState) -> list[str]:
    """The forwarding sysctls, of the families ``state`` uses, that are off here.

    DNAT to a backend on another host forwards the packet, so it needs them on;
    only loopback-to-loopback DNAT does not.
    """
    off = []
    for version in sorted({key.vip.version for key in state.listeners}):
        key = _FORWARDING[version]
        try:
            with open("/proc/sys/" + key.replace(".", "/"), encoding="ascii") as fh:
                if fh.read().strip() == "0":
                    off.append(key)
        except OSError:
            continue
    return off
