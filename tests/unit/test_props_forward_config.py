"""Property tests: any text given to the ``ironlb forward`` config parser is either
a valid config or one :class:`ConfigError` line naming the field (issue 8, item 13).

Inputs are a listener template whose every slot is filled from valid values,
JSON junk (JSON is YAML) and hand-picked hostile YAML (explicit tags,
aliases, huge numbers, non-scalar keys), plus raw text.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ironlb.dataplane.config import ConfigError, ForwardConfig, parse_config
from tests.props import PROPS, tried

JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
HOSTILE = st.sampled_from(
    [
        "!!int abc",
        "!!float abc",
        "!!bool maybe",
        "!!binary '%%%'",
        "!!timestamp nope",
        "!!python/object:os.system x",
        "!!python/name:os.system",
        "!foo bar",
        "!!str",
        "!!null x",
        "!!set {a, b}",
        "!!omap [a]",
        "!!pairs x",
        "!!map x",
        "!!seq x",
        "1e999",
        ".nan",
        "-.inf",
        "0x10",
        "0o17",
        "1_000",
        "99999999999999999999999999",
        "&a [*a]",
        "*undefined",
        "{? [a]: b}",
        "''",
        '"\\x00"',
        "[198.18.0.1]",
        "'[fe80::1%eth0]'",
        "'198.18.0.1:0'",
        "'[::1]:65536'",
        "'198.18.0.1:+80'",
        "'198.18.0.1:٣'",
        "'198.18.0.0/33'",
    ]
)
VALID = st.sampled_from(
    [
        "198.18.0.10",
        "'::1'",
        "8080",
        "tcp",
        "udp",
        "proxy",
        "kernel",
        "['198.18.0.20:80']",
        "1.5",
        "v1",
        "v2",
    ]
)
SLOT = st.one_of(VALID, HOSTILE, JUNK.map(json.dumps))
OPTIONS = st.sampled_from(
    [
        "mode",
        "connect_timeout",
        "idle_timeout",
        "retries",
        "max_connections",
        "session_timeout",
        "max_sessions",
        "source_ranges",
        "expect_reply",
        "reply_timeout",
        "session_affinity",
        "proxy_protocol",
        "health_check",
        "name",
        "bogus",
    ]
)
#: Fields whose names a refusal may carry (the path) or, for text that is not
#: YAML at all, the words saying so.
FIELDS = ("listeners", "defaults", "announce", "invalid YAML", "the file")


def _check(text: str) -> None:
    tried("forward config")
    try:
        config = parse_config(text, "lb.yaml")
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert message.startswith("lb.yaml:"), message
        assert exc.path or "YAML" in message or "the file" in message, message
        assert any(f in message for f in FIELDS), message
        return
    assert isinstance(config, ForwardConfig)
    assert config.listeners


@PROPS
@given(
    address=SLOT,
    port=SLOT,
    protocol=SLOT,
    backends=SLOT,
    option=OPTIONS,
    value=SLOT,
    section=st.sampled_from(["listeners", "defaults", "announce"]),
)
def test_listener_slots_parse_or_refuse_in_one_line(
    address: str, port: str, protocol: str, backends: str, option: str, value: str, section: str
) -> None:
    if section == "listeners":
        extra = f"    {option}: {value}\n"
        tail = ""
    elif section == "defaults":
        extra, tail = "", f"defaults:\n  {option}: {value}\n"
    else:
        extra = ""
        tail = f"announce:\n  interfaces: {value}\n  garp: {{repeat: {port}, refresh: {address}}}\n"
    text = (
        "listeners:\n"
        f"  - address: {address}\n"
        f"    port: {port}\n"
        f"    protocol: {protocol}\n"
        f"    backends: {backends}\n"
        f"{extra}{tail}"
    )
    _check(text)


@PROPS
@given(
    backend=st.one_of(
        HOSTILE,
        JUNK.map(json.dumps),
        st.text(alphabet="0123456789abcdef.:[]%/ -+", max_size=30).map(json.dumps),
    ),
    health=SLOT,
    check_field=st.sampled_from(
        ["interval", "timeout", "rise", "fall", "port", "type", "send", "send_hex", "other"]
    ),
)
def test_backends_and_health_checks_parse_or_refuse_in_one_line(
    backend: str, health: str, check_field: str
) -> None:
    text = (
        "listeners:\n"
        "  - address: 198.18.0.10\n"
        "    port: 80\n"
        f"    backends: [{backend}, {{address: {health}, port: {health}}}]\n"
        f"    health_check: {{{check_field}: {health}}}\n"
    )
    _check(text)


@PROPS
@given(
    value=SLOT,
    shape=st.sampled_from(
        ["{{client_ip: {{timeout: {v}}}}}", "{{client_ip: {v}}}", "{{{v}: {{}}}}", "{v}"]
    ),
    mode=st.sampled_from(["proxy", "kernel"]),
)
def test_session_affinity_parses_or_refuses_in_one_line(value: str, shape: str, mode: str) -> None:
    text = (
        "listeners:\n"
        "  - address: 198.18.0.10\n"
        "    port: 80\n"
        "    backends: ['198.18.0.20:80']\n"
        f"    mode: {mode}\n"
        f"    session_affinity: {shape.format(v=value)}\n"
    )
    _check(text)


@PROPS
@given(text=st.text(max_size=200) | JUNK.map(json.dumps))
def test_any_text_parses_or_refuses_in_one_line(text: str) -> None:
    _check(text)
