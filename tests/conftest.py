"""Suite-wide pytest set-up: the one place that skips root-only tests.

A test is root-only when it is marked ``root`` or uses a fixture that builds
network namespaces (:data:`ROOT_FIXTURES`); such tests skip, with the reason,
when not run as root. CI runs as root, so there they always run.
"""

from __future__ import annotations

import os

import pytest

#: Fixtures that build network namespaces: a test using one is root-only.
ROOT_FIXTURES = frozenset({"lab", "lab_factory", "lab_cluster"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root and network namespaces (CI runs as root)")
    for item in items:
        if "root" in item.keywords or ROOT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After property tests ran: how many generated inputs each parser was given."""
    from tests.props import TRIED

    if not TRIED:
        return
    terminalreporter.section("generated inputs tried per parser")
    for parser, count in sorted(TRIED.items()):
        terminalreporter.write_line(f"{parser}: {count}")
    terminalreporter.write_line(f"total: {sum(TRIED.values())}")
