"""Fixtures for the image tests: the image, built (or reused) once per session.

Building needs root (podman, debootstrap, apt): every test using the fixture
is marked ``root`` and skips, with the reason, when not root
(``tests/conftest.py``)."""

from __future__ import annotations

import pytest

from . import podman


@pytest.fixture(scope="session")
def image() -> str:
    """The id of ``ironlb:dev`` as ``make image`` leaves it."""
    return podman.build()
