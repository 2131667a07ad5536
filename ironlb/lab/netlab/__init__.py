"""Network-namespace lab: a client, nodes and backends on one bridged LAN.

See :mod:`ironlb.lab.netlab.plan` for the address/MAC layout and
:class:`ironlb.lab.netlab.lab.Lab` for the API.
"""

from ironlb.lab.netlab.lab import Lab, cleanup_stale
from ironlb.lab.netlab.nsutil import in_netns
from ironlb.lab.netlab.plan import LabError, LabHost

__all__ = ["Lab", "LabError", "LabHost", "cleanup_stale", "in_netns"]
