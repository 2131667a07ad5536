"""Optional kernel fast path for the data plane: the desired state as an nftables table.

:mod:`.render` turns a :class:`~ironlb.dataplane.state.DesiredState` into the
text of one atomic ``nft`` transaction (pure); :mod:`.nftables` runs it through
libnftables. Listeners with mode ``kernel`` (``mode: kernel`` or ``nftables`` in the ``ironlb
forward`` config, ``ironlb.io/forwarding-mode: kernel`` on a Service)
are served this way instead of by the userspace proxy.
"""
