"""Tests of the data plane forwarder (real sockets on loopback)."""
