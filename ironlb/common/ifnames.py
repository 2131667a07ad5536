"""Linux network interface names, checked the way the kernel checks them.

The rule is the kernel's ``dev_valid_name()`` (net/core/dev.c): 1 to 15
bytes (``IFNAMSIZ`` 16 with the NUL), not ``.`` or ``..``, and no ``/``,
``:`` or white space. Used for the forward config's ``announce.interfaces``,
a pool's ``l2.interfaces`` and the announcer.
"""

from __future__ import annotations

IFNAMSIZ = 16


def interface_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid interface name, or ``None`` when it is."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name.encode()) >= IFNAMSIZ:
        return f"is longer than {IFNAMSIZ - 1} bytes"
    if name in (".", ".."):
        return "cannot be '.' or '..'"
    if any(c in "/:" or c.isspace() for c in name):
        return "cannot contain '/', ':' or white space"
    return None
