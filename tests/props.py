"""Shared set-up of the property-based (hypothesis) tests of user-reachable parsers.

Every property test runs a fixed number of examples (:data:`EXAMPLES`, no
deadline: the 2 shared cores are noisy) and records each example it tried
with :func:`tried`, under the parser's name; ``tests/conftest.py`` prints the
totals at the end of the session, so the count tried per parser is in every
run's output (issue 8, item 13).
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

#: Examples per property test: the whole property suite stays well under a minute.
#: ``IRONLB_PROPS_EXAMPLES`` raises it for a longer hunt (the suite's own runs use 1000).
EXAMPLES = int(os.environ.get("IRONLB_PROPS_EXAMPLES", "1000"))

#: Parser name -> examples tried in this session.
TRIED: Counter[str] = Counter()

#: The settings of every property test (``@PROPS`` on the test).
PROPS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def tried(parser: str) -> None:
    """Count one generated input fed to ``parser``."""
    TRIED[parser] += 1


def one_line_naming(message: str, fields: tuple[str, ...]) -> bool:
    """Whether ``message`` is one line and names one of ``fields`` (substrings)."""
    return "\n" not in message and any(f in message for f in fields)
