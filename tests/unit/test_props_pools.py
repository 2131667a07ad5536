"""Property tests: any ``IPAddressPool`` spec (as JSON decodes it) and any address
text is either a valid pool/range or one :class:`PoolError` / :class:`RangeError`
line naming the field (issue 8, item 13).

Specs are a valid pool with one part replaced by JSON junk or near-miss
values (selectors, allocation, l2 scope, address spellings).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ironlb.operator.ipranges import IPRange, RangeError, parse_range
from ironlb.operator.pools import Pool, PoolError, parse_pool, parse_selector
from tests.props import PROPS, tried

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
ADDRESS_TEXT = st.one_of(
    st.text(alphabet="0123456789abcdef.:/-% ", max_size=40),
    st.sampled_from(
        [
            "198.18.10.0/24",
            "198.18.10.7/24",
            "198.18.10.10-198.18.10.20",
            "198.18.10.20-198.18.10.10",
            "198.18.10.1 - fd00::1",
            "fd00::/120",
            "fe80::1%eth0",
            "fe80::1%eth0-fe80::2",
            "198.18.0.0/33",
            "198.18.0.0/-1",
            "198.18.0.0/0x8",
            "-",
            "1-2-3",
            "::/0",
            "0.0.0.0/0",
            "\u0663.1.1.1",
        ]
    ),
    st.text(max_size=20),
)
KEYS = st.sampled_from(["matchLabels", "matchExpressions", "key", "operator", "values", "x"])
SELECTOR = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "matchLabels": st.one_of(JSON, st.dictionaries(st.text(max_size=5), JSON, max_size=2)),
            "matchExpressions": st.lists(
                st.one_of(
                    JSON,
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "key": st.one_of(st.text(max_size=5), JSON),
                            "operator": st.one_of(
                                st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "in"]),
                                JSON,
                            ),
                            "values": st.one_of(st.lists(st.text(max_size=3), max_size=2), JSON),
                        },
                    ),
                ),
                max_size=2,
            ),
        },
    ),
)
SPEC = st.fixed_dictionaries(
    {},
    optional={
        "addresses": st.one_of(
            st.just(["198.18.10.0/24", "fd00:198:18::/120"]),
            st.just(["198.18.11.5"]),
            st.lists(st.one_of(ADDRESS_TEXT, JSON), max_size=4),
            JSON,
        ),
        "autoAssign": JSON,
        "avoidBuggyIPs": JSON,
        "serviceAllocation": st.one_of(
            JSON,
            st.fixed_dictionaries(
                {},
                optional={
                    "priority": JSON,
                    "namespaces": st.one_of(st.lists(st.one_of(st.text(max_size=4), JSON)), JSON),
                    "namespaceSelectors": st.one_of(st.lists(SELECTOR, max_size=2), JSON),
                    "serviceSelectors": st.one_of(st.lists(SELECTOR, max_size=2), JSON),
                },
            ),
        ),
        "l2": st.one_of(
            JSON,
            st.fixed_dictionaries(
                {},
                optional={
                    "interfaces": st.one_of(st.lists(st.one_of(st.text(max_size=17), JSON)), JSON),
                    "nodeSelectors": st.one_of(st.lists(SELECTOR, max_size=2), JSON),
                },
            ),
        ),
        "bogus": JSON,
    },
)


def _refusal_names_its_field(exc: PoolError) -> None:
    message = str(exc)
    assert "\n" not in message, message
    assert exc.field.startswith(("spec", "metadata.name")), message
    assert message.startswith(f"{exc.field}: "), message


@PROPS
@given(name=st.one_of(st.just("pool-a"), JSON), spec=st.one_of(SPEC, JSON))
def test_pool_specs_parse_or_refuse_in_one_line(name: Any, spec: Any) -> None:
    tried("IPAddressPool spec")
    try:
        pool = parse_pool(name, spec)
    except PoolError as exc:
        _refusal_names_its_field(exc)
        return
    assert isinstance(pool, Pool)
    assert pool.ranges


@PROPS
@given(selector=SELECTOR)
def test_label_selectors_parse_or_refuse_in_one_line(selector: Any) -> None:
    tried("IPAddressPool spec")
    try:
        parse_selector(selector, "spec.l2.nodeSelectors[0]")
    except PoolError as exc:
        _refusal_names_its_field(exc)


@PROPS
@given(text=st.one_of(ADDRESS_TEXT, JSON))
def test_address_texts_parse_or_refuse_in_one_line(text: Any) -> None:
    tried("address range")
    try:
        parsed = parse_range(text)
    except RangeError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert message == "empty address" or repr(text) in message, message
        return
    assert isinstance(parsed, IPRange)
    assert parsed.first <= parsed.last
