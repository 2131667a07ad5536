"""The ``announce`` section of the standalone config: listener addresses must
be addresses a LAN can be told about, and the error names the line."""

from __future__ import annotations

import pytest

from ironlb.dataplane.config import ConfigError, parse_config

GOOD = """\
listeners:
  - address: 198.18.0.200
    port: 80
    backends: ["198.18.0.101:8080"]
announce:
  interfaces: [eth0]
"""


def test_announce_section_parses() -> None:
    config = parse_config(GOOD, "lb.yaml")
    assert config.announce is not None
    assert config.announce.interfaces == ("eth0",)


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0", "::1", "fe80::1", "224.0.0.5"])
def test_unannounceable_listener_address_is_refused_with_its_line(address: str) -> None:
    text = GOOD.replace("198.18.0.200", address if ":" not in address else f"'{address}'")
    if ":" in address:  # backends must be of the listener's family
        text = text.replace('"198.18.0.101:8080"', '"[fd00:198:18::101]:8080"')
    with pytest.raises(ConfigError) as info:
        parse_config(text, "lb.yaml")
    message = str(info.value)
    assert message.startswith("lb.yaml:2: listeners[0].address:"), message
    assert "cannot be announced" in message


def test_loopback_listener_is_fine_without_announce() -> None:
    text = GOOD.replace("198.18.0.200", "127.0.0.1").split("announce:")[0]
    assert parse_config(text, "lb.yaml").announce is None
