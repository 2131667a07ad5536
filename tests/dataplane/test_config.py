"""Config parsing: a good file becomes typed values; every bad one names file:line: field."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ironlb.dataplane.config import (
    ConfigError,
    HealthCheck,
    load_config,
    parse_config,
)
from ironlb.dataplane.settings import GarpConfig
from ironlb.dataplane.state import Backend, ListenerKey, ListenerOptions

ip = ipaddress.ip_address

GOOD = """\
defaults:
  connect_timeout: 2
  health_check: {interval: 1, rise: 3}
listeners:
  - address: 127.0.0.1      # the VIP
    port: 8080
    protocol: tcp
    backends: ["127.0.0.1:9001", "127.0.0.1:9002", {address: 127.0.0.1, port: 9003}]
    max_connections: 100
  - address: "::1"
    port: 53
    protocol: udp
    backends: ["[::1]:5353"]
    session_timeout: 10
    max_sessions: 50
    health_check: false
"""

ANNOUNCE = """\
announce:
  interfaces: [eth0, bond0.100]
  garp: {repeat: [0, 0.5, 2], refresh: 30}
"""

# Announced listener addresses must be LAN addresses, not loopback.
GOOD_ANNOUNCED = (
    GOOD.replace("127.0.0.1", "198.18.0.200").replace("::1", "fd00:198:18::200") + ANNOUNCE
)


def test_a_good_file_becomes_state_options_and_announce() -> None:
    config = parse_config(GOOD, "lb.yaml")
    tcp = ListenerKey(ip("127.0.0.1"), "tcp", 8080)
    udp = ListenerKey(ip("::1"), "udp", 53)
    state = config.desired_state()
    assert {k: s.backends for k, s in state.listeners.items()} == {
        tcp: tuple(Backend(ip("127.0.0.1"), p) for p in (9001, 9002, 9003)),
        udp: (Backend(ip("::1"), 5353),),
    }
    assert state.vips == frozenset()  # no announce section: nothing is owned
    options = {k: s.options for k, s in state.listeners.items()}
    assert options[tcp] == ListenerOptions(connect_timeout=2.0, max_connections=100)
    assert options[udp] == ListenerOptions(
        connect_timeout=2.0, udp_session_timeout=10.0, udp_max_sessions=50
    )
    assert config.listeners[0].health_check == HealthCheck(interval=1.0, rise=3)
    assert config.listeners[1].health_check is None
    assert config.announce is None
    announced = parse_config(GOOD_ANNOUNCED, "lb.yaml")
    assert announced.announce is not None
    assert announced.announce.interfaces == ("eth0", "bond0.100")
    assert announced.announce.garp == GarpConfig(repeat=(0.0, 0.5, 2.0), refresh=30.0)
    owned = announced.desired_state().vips
    assert owned == frozenset({ip("198.18.0.200"), ip("fd00:198:18::200")})


def test_the_minimal_file_from_the_readme() -> None:
    config = parse_config(
        "listeners:\n  - address: 127.0.0.1\n    port: 8080\n    protocol: tcp\n"
        '    backends: ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]\n'
    )
    assert config.announce is None
    assert len(config.desired_state().backends(config.listeners[0].key)) == 3


def test_health_verdicts_mark_backends_not_ready() -> None:
    config = parse_config(GOOD)
    state = config.desired_state(lambda key, b: b.port == 9002)
    ready = {b.port: b.ready for b in state.backends(config.listeners[0].key)}
    assert ready == {9001: True, 9002: False, 9003: True}


BASE = """\
listeners:
  - address: 127.0.0.1
    port: 8080
    backends: ["127.0.0.1:9001"]
"""


def edit(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


BAD = [
    (
        edit("port: 8080", "port: http"),
        3,
        "listeners[0].port",
        "must be an integer 1-65535, got 'http'",
    ),
    (edit("port: 8080", "port: 70000"), 3, "listeners[0].port", "must be an integer 1-65535"),
    (edit("port: 8080", "port: 8080.5"), 3, "listeners[0].port", "must be an integer"),
    (edit("address: 127.0.0.1", "address: web.local"), 2, "listeners[0].address", "no host names"),
    (edit("address: 127.0.0.1", "address: [1, 2]"), 2, "listeners[0].address", "got a list"),
    (
        edit("    port: 8080\n", "    port: 8080\n    protocol: sctp\n"),
        4,
        "listeners[0].protocol",
        "must be tcp or udp, got 'sctp'",
    ),
    (
        edit('"127.0.0.1:9001"', '"127.0.0.1"'),
        4,
        "listeners[0].backends[0]",
        "must be 'ADDRESS:PORT'",
    ),
    (
        edit('"127.0.0.1:9001"', '"127.0.0.1:0"'),
        4,
        "listeners[0].backends[0]",
        "port must be an integer 1-65535",
    ),
    (
        edit('"127.0.0.1:9001"', '"db:9001"'),
        4,
        "listeners[0].backends[0]",
        "'db' is not an IPv4 or IPv6 address",
    ),
    (edit('"127.0.0.1:9001"', '"::1:9001"'), 4, "listeners[0].backends[0]", "'[v6]:PORT'"),
    (
        edit('"127.0.0.1:9001"', '"[::1]:9001"'),
        4,
        "listeners[0].backends[0]",
        "IPv6 backend [::1]:9001 for an IPv4",
    ),
    (
        edit('"127.0.0.1:9001"', '"127.0.0.1:9001", "127.0.0.1:9001"'),
        4,
        "listeners[0].backends[1]",
        "duplicate backend",
    ),
    (edit('["127.0.0.1:9001"]', "[]"), 4, "listeners[0].backends", "at least one backend"),
    (
        edit('["127.0.0.1:9001"]', "{address: 127.0.0.1}"),
        4,
        "listeners[0].backends",
        "must be a list",
    ),
    (
        edit('["127.0.0.1:9001"]', "[{address: 127.0.0.1}]"),
        4,
        "listeners[0].backends[0].port",
        "required field missing",
    ),
    (
        edit("    port: 8080\n", "    port: 8080\n    prot: tcp\n"),
        4,
        "listeners[0].prot",
        "unknown field",
    ),
    (
        edit("    port: 8080\n", "    port: 8080\n    port: 8081\n"),
        4,
        "listeners[0].port",
        "duplicate field",
    ),
    (edit("    port: 8080\n", ""), 2, "listeners[0].port", "required field missing"),
    (
        edit("    port: 8080\n", "    port: 8080\n    connect_timeout: -1\n"),
        4,
        "listeners[0].connect_timeout",
        "must be a number of seconds > 0",
    ),
    (
        edit("    port: 8080\n", "    port: 8080\n    idle_timeout: soon\n"),
        4,
        "listeners[0].idle_timeout",
        "got 'soon'",
    ),
    (
        edit("    port: 8080\n", "    port: 8080\n    max_connections: 0\n"),
        4,
        "listeners[0].max_connections",
        "must be an integer >= 1",
    ),
    (
        edit("    port: 8080\n", "    port: 8080\n    health_check: {rise: 0}\n"),
        4,
        "listeners[0].health_check.rise",
        "must be an integer 1-1000",
    ),
    (
        edit("    port: 8080\n", "    port: 8080\n    health_check: {every: 2}\n"),
        4,
        "listeners[0].health_check.every",
        "unknown field",
    ),
    (
        BASE + BASE.replace("listeners:\n", ""),
        5,
        "listeners[1]",
        "duplicate listener tcp/127.0.0.1:8080 (also listeners[0])",
    ),
    (
        BASE + "announce:\n  interfaces: [eth0, 'has space']\n",
        6,
        "announce.interfaces[1]",
        "not a valid interface name",
    ),
    (
        BASE + "announce:\n  garp: {repeat: [0, -1]}\n",
        6,
        "announce.garp.repeat[1]",
        "must be a number of seconds >= 0",
    ),
    (BASE + "announce:\n  garp: {refresh: 0}\n", 6, "announce.garp.refresh", "> 0"),
    (BASE + "announce:\n  vrrp: true\n", 6, "announce.vrrp", "unknown field"),
    (BASE + "extra: 1\n", 5, "extra", "unknown field (known: announce, defaults, listeners)"),
    ("listeners: []\n", 1, "listeners", "at least one listener"),
    ("listeners: {}\n", 1, "listeners", "must be a list"),
    ("- just\n- a list\n", 1, "", "must be a mapping"),
    ("defaults: {retries: 101}\n" + BASE, 1, "defaults.retries", "must be an integer 0-100"),
]


@pytest.mark.parametrize(("text", "line", "path", "message"), BAD)
def test_bad_configs_name_file_line_and_field(
    text: str, line: int, path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "lb.yaml")
    assert err.value.line == line, str(err.value)
    assert err.value.path == path, str(err.value)
    assert message in err.value.message, str(err.value)
    assert str(err.value).startswith(f"lb.yaml:{line}: ")


def test_yaml_syntax_errors_have_a_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("listeners:\n  - address: [127.0.0.1\n    port: 1\n", "lb.yaml")
    assert str(err.value).startswith("lb.yaml:")
    assert "invalid YAML" in str(err.value)
    assert err.value.line >= 2


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="empty"):
        parse_config("", "lb.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "nope.yaml"))


def test_readme_example_message() -> None:
    text = textwrap.dedent(
        """\
        listeners:
          - address: 127.0.0.1
            port: 8080
            backends: ["127.0.0.1:9001"]
          - address: 127.0.0.1
            protocol: tcp
            port: http
            backends: ["127.0.0.1:9001"]
        """
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "lb.yaml")
    assert str(err.value) == "lb.yaml:7: listeners[1].port: must be an integer 1-65535, got 'http'"


def test_cli_exits_2_with_the_message(tmp_path: Path) -> None:
    bad = tmp_path / "lb.yaml"
    bad.write_text(edit("port: 8080", "port: http"))
    cmd = [sys.executable, "-m", "ironlb.cli", "forward", "--config", str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{bad}:3: listeners[0].port: must be an integer 1-65535, got 'http'" in proc.stderr
    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    proc = subprocess.run(
        [*cmd[:-1], str(good), "--check"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK (1 listener(s))" in proc.stdout


# Bugs the property tests (tests/unit/test_props_forward_config.py) found: each
# was a PyYAML traceback or a message spanning lines / naming no field.
FOUND_BY_PROPERTIES = [
    (edit("port: 8080", "port: !!int abc"), 3, "listeners[0].port", "cannot read 'abc'"),
    (
        edit("port: 8080", "port: 8080\n    protocol: !!timestamp nope"),
        4,
        "listeners[0].protocol",
        "cannot read 'nope'",
    ),
    (BASE + "defaults: {mode: !foo x}\n", 5, "defaults.mode", "cannot read 'x' as !foo"),
    (BASE + "'': 1\n", 5, "''", "unknown field"),
    (BASE + '"a\\nb": 1\n', 5, "'a\\nb'", "unknown field"),
    ("0\n", 1, "", "the file must be a mapping with a 'listeners' list, got 0"),
]


@pytest.mark.parametrize(("text", "line", "path", "message"), FOUND_BY_PROPERTIES)
def test_values_pyyaml_cannot_construct_are_one_line_errors(
    text: str, line: int, path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "lb.yaml")
    assert (err.value.line, err.value.path) == (line, path), str(err.value)
    assert message in err.value.message, str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_characters_are_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("\x1f", "lb.yaml")
    assert str(err.value).startswith("lb.yaml: invalid YAML: unacceptable character #x001f")
    assert "\n" not in str(err.value)


def test_cli_check_refuses_a_bad_tag_with_exit_2_and_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "lb.yaml"
    bad.write_text(edit("port: 8080", "port: !!int abc"))
    proc = subprocess.run(
        [sys.executable, "-m", "ironlb.cli", "forward", "--config", str(bad), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"ironlb forward: {bad}:3: listeners[0].port: "
        "invalid YAML: cannot read 'abc' as tag:yaml.org,2002:int"
    ]


# Issue 8, item 12: a backend that is its own listener (or leads back to it through
# another listener) would loop every connection until the connection limit.


def listener_yaml(address: str, port: int, backends: list[str], protocol: str = "tcp") -> str:
    listed = ", ".join(f'"{b}"' for b in backends)
    return (
        f'  - address: "{address}"\n    port: {port}\n    protocol: {protocol}\n'
        f"    backends: [{listed}]\n"
    )


SELF_LOOPS = [
    # (listener address, backend, protocol)
    ("127.0.0.1", "127.0.0.1:8080", "tcp"),
    ("127.0.0.1", "127.0.0.1:8080", "udp"),
    ("0.0.0.0", "127.0.0.1:8080", "tcp"),  # a wildcard listener gets loopback connections
    ("0.0.0.0", "127.0.0.53:8080", "udp"),  # all of 127/8 is loopback
    ("0.0.0.0", "0.0.0.0:8080", "tcp"),  # a connect to 0.0.0.0 goes to 127.0.0.1
    ("127.0.0.1", "0.0.0.0:8080", "tcp"),
    ("::", "[::1]:8080", "tcp"),
    ("::", "[::]:8080", "udp"),
    ("::1", "[::1]:8080", "tcp"),
    ("198.18.0.200", "198.18.0.200:8080", "tcp"),
]


@pytest.mark.parametrize(("address", "backend", "protocol"), SELF_LOOPS)
def test_a_backend_that_is_its_own_listener_is_refused(
    address: str, backend: str, protocol: str
) -> None:
    real = "[::1]:9001" if ":" in address else "127.0.0.1:9001"
    text = "listeners:\n" + listener_yaml(address, 8080, [real, backend], protocol)
    with pytest.raises(ConfigError) as err:
        parse_config(text, "lb.yaml")
    key = ListenerKey(ip(address), protocol, 8080)  # type: ignore[arg-type]
    assert str(err.value) == (
        f"lb.yaml:5: listeners[0].backends[1]: backend {backend} is this listener itself "
        f"({key}): connections would loop back in"
    )


NOT_LOOPS = [
    ("127.0.0.1", "127.0.0.1:8081", "tcp"),  # another port
    ("127.0.0.1", "127.0.0.2:8080", "tcp"),  # another address: the listener does not get it
    ("198.18.0.200", "127.0.0.1:8080", "tcp"),
    ("0.0.0.0", "198.18.0.7:8080", "tcp"),  # not known to be local (the parser reads no links)
    ("::", "[fd00::7]:8080", "tcp"),
]


@pytest.mark.parametrize(("address", "backend", "protocol"), NOT_LOOPS)
def test_a_backend_on_another_address_or_port_is_no_loop(
    address: str, backend: str, protocol: str
) -> None:
    text = "listeners:\n" + listener_yaml(address, 8080, [backend], protocol)
    config = parse_config(text, "lb.yaml")
    assert [str(b) for b in config.listeners[0].backends] == [backend]


def test_the_other_protocol_is_no_loop() -> None:
    """A backend reaches listeners of its listener's protocol only: tcp 8080 -> 9001 and
    udp 9001 -> 8080 would be a loop if protocols were ignored."""
    text = "listeners:\n" + listener_yaml("127.0.0.1", 8080, ["127.0.0.1:9001"], "tcp")
    text += listener_yaml("127.0.0.1", 9001, ["127.0.0.1:8080"], "udp")
    config = parse_config(text, "lb.yaml")
    assert [str(lst.key) for lst in config.listeners] == [
        "tcp/127.0.0.1:8080",
        "udp/127.0.0.1:9001",
    ]


def test_a_loop_through_two_listeners_is_refused_naming_both() -> None:
    text = "listeners:\n"
    text += listener_yaml("127.0.0.1", 8080, ["127.0.0.1:9001", "127.0.0.1:8081"])
    text += listener_yaml("0.0.0.0", 8081, ["127.0.0.1:8080"])
    with pytest.raises(ConfigError) as err:
        parse_config(text, "lb.yaml")
    assert str(err.value) == (
        "lb.yaml:5: listeners[0].backends[1]: backend 127.0.0.1:8081 is listeners[1] "
        "(tcp/0.0.0.0:8081, line 6), whose backends lead back to listeners[0] "
        "(tcp/127.0.0.1:8080): connections would loop between them"
    )


def test_a_loop_through_three_listeners_is_refused() -> None:
    text = "listeners:\n"
    text += listener_yaml("127.0.0.1", 8080, ["127.0.0.1:8081"])
    text += listener_yaml("127.0.0.1", 8081, ["127.0.0.1:8082"])
    text += listener_yaml("127.0.0.1", 8082, ["127.0.0.1:9001", "127.0.0.1:8080"])
    with pytest.raises(ConfigError) as err:
        parse_config(text, "lb.yaml")
    assert err.value.path == "listeners[0].backends[0]"
    assert "is listeners[1] (tcp/127.0.0.1:8081, line 6)" in err.value.message
    assert "lead back to listeners[0] (tcp/127.0.0.1:8080)" in err.value.message


def test_a_chain_to_another_listener_without_a_loop_is_allowed() -> None:
    """A listener may forward to another one that has real backends (e.g. to apply
    the other's source_ranges): only a loop is refused."""
    text = "listeners:\n"
    text += listener_yaml("127.0.0.1", 8080, ["127.0.0.1:8081"])
    text += listener_yaml("127.0.0.1", 8081, ["127.0.0.1:9001"])
    config = parse_config(text, "lb.yaml")
    assert [str(b) for b in config.listeners[0].backends] == ["127.0.0.1:8081"]


def test_a_mapping_backend_loop_points_at_its_own_line() -> None:
    text = textwrap.dedent(
        """\
        listeners:
          - address: 127.0.0.1
            port: 8080
            backends:
              - "127.0.0.1:9001"
              - address: 127.0.0.1
                port: 8080
        """
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "lb.yaml")
    assert (err.value.line, err.value.path) == (6, "listeners[0].backends[1]")


def test_cli_check_and_start_refuse_a_self_loop_with_exit_2_and_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "lb.yaml"
    bad.write_text("listeners:\n" + listener_yaml("0.0.0.0", 8080, ["127.0.0.1:8080"]))
    cmd = [sys.executable, "-m", "ironlb.cli", "forward", "--config", str(bad), "--workers", "1"]
    expected = [
        f"ironlb forward: {bad}:5: listeners[0].backends[0]: backend 127.0.0.1:8080 is "
        "this listener itself (tcp/0.0.0.0:8080): connections would loop back in"
    ]
    for extra in (["--check"], []):
        proc = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == expected


UDP_BASE = """\
listeners:
  - address: 127.0.0.1
    port: 5353
    protocol: udp
    backends: ["127.0.0.1:9001"]
"""


def udp_edit(extra: str) -> str:
    """The UDP listener with ``extra`` (lines, indented as fields) after its protocol."""
    return UDP_BASE.replace("protocol: udp\n", "protocol: udp\n" + extra)


def test_udp_passive_and_active_check_fields_are_parsed() -> None:
    text = udp_edit(
        "    expect_reply: false\n"
        "    reply_timeout: 0.5\n"
        "    health_check: {type: udp, send_hex: '00ff', expect: pong, interval: 1}\n"
    )
    lst = parse_config(text, "lb.yaml").listeners[0]
    assert (lst.options.udp_expect_reply, lst.options.udp_reply_timeout) == (False, 0.5)
    assert lst.health_check == HealthCheck(
        interval=1.0, type="udp", send=b"\x00\xff", expect=b"pong"
    )
    text = udp_edit("    health_check: {type: udp, send: ping, expect_hex: 706f6e67}\n")
    check = parse_config(text, "lb.yaml").listeners[0].health_check
    assert check is not None and (check.send, check.expect) == (b"ping", b"pong")
    # the defaults: unanswered datagrams count, after 2 s; checks are TCP connects
    lst = parse_config(UDP_BASE, "lb.yaml").listeners[0]
    assert (lst.options.udp_expect_reply, lst.options.udp_reply_timeout) == (True, 2.0)
    tcp_check = parse_config(udp_edit("    health_check: {type: tcp}\n")).listeners[0]
    assert tcp_check.health_check == HealthCheck()  # a TCP check of a UDP service is allowed


UDP_BAD = [
    (udp_edit("    expect_reply: yes please\n"), "listeners[0].expect_reply", "true or false"),
    (udp_edit("    expect_reply: 1\n"), "listeners[0].expect_reply", "got 1"),
    (udp_edit("    reply_timeout: 0\n"), "listeners[0].reply_timeout", "number of seconds > 0"),
    (
        udp_edit("    health_check: {type: icmp, send: x}\n"),
        "listeners[0].health_check.type",
        "must be tcp or udp, got 'icmp'",
    ),
    (
        udp_edit("    health_check: {type: udp}\n"),
        "listeners[0].health_check.send",
        "needs send or send_hex",
    ),
    (
        udp_edit("    health_check: {send: ping}\n"),
        "listeners[0].health_check.send",
        "only a check of type: udp sends data",
    ),
    (
        udp_edit("    health_check: {type: udp, send: ping, send_hex: '00'}\n"),
        "listeners[0].health_check.send_hex",
        "give send or send_hex, not both",
    ),
    (
        udp_edit("    health_check: {type: udp, send_hex: zz}\n"),
        "listeners[0].health_check.send_hex",
        "must be hex digits such as 'beef01', got 'zz'",
    ),
    (
        udp_edit("    health_check: {type: udp, send: ping, expect_hex: '0'}\n"),
        "listeners[0].health_check.expect_hex",
        "must be hex digits",
    ),
    (
        udp_edit("    health_check: {type: udp, send: ''}\n"),
        "listeners[0].health_check.send",
        "must be a non-empty string",
    ),
    (
        edit("    port: 8080\n", "    port: 8080\n    health_check: {type: udp, send: x}\n"),
        "listeners[0].health_check",
        "a check of type: udp is for UDP listeners; use type: tcp here",
    ),
    (
        "defaults:\n  health_check: {type: udp, send: x}\n" + BASE,
        "listeners[0].health_check",
        "for UDP listeners (from defaults)",
    ),
]


def listener_edit(extra: str, defaults: str = "") -> str:
    """BASE with ``extra`` (listener field lines) after its port, ``defaults`` on top."""
    return defaults + edit("    port: 8080\n", "    port: 8080\n" + extra)


def test_session_affinity_is_parsed_with_the_kubernetes_default_and_maximum() -> None:
    def timeout(text: str) -> float | None:
        return parse_config(text, "lb.yaml").listeners[0].options.affinity_timeout

    assert timeout(BASE) is None
    assert timeout(listener_edit("    session_affinity: {client_ip: {timeout: 30}}\n")) == 30.0
    assert timeout(listener_edit("    session_affinity: {client_ip: {}}\n")) == 10800.0
    assert timeout(listener_edit("    session_affinity: {client_ip: }\n")) == 10800.0
    assert timeout(listener_edit("    session_affinity: {client_ip: {timeout: 86400}}\n")) == 86400
    inherited = "defaults:\n  session_affinity: {client_ip: {timeout: 60}}\n"
    assert timeout(listener_edit("", inherited)) == 60.0
    assert timeout(listener_edit("    session_affinity: none\n", inherited)) is None
    # both modes serve it
    kernel = "defaults:\n  mode: kernel\n"
    assert timeout(listener_edit("    session_affinity: {client_ip: {}}\n", kernel)) == 10800.0
    text = listener_edit("    mode: nftables\n", "defaults:\n  session_affinity: {client_ip: }\n")
    assert timeout(text) == 10800.0


AFFINITY_BAD = [
    (
        listener_edit("    session_affinity: {client_ip: {timeout: 86401}}\n"),
        "listeners[0].session_affinity.client_ip.timeout",
        "must be an integer 1-86400",
    ),
    (
        listener_edit("    session_affinity: {client_ip: {timeout: 0}}\n"),
        "listeners[0].session_affinity.client_ip.timeout",
        "must be an integer 1-86400",
    ),
    (
        listener_edit("    session_affinity: {client_ip: {timeout: 1.5}}\n"),
        "listeners[0].session_affinity.client_ip.timeout",
        "must be an integer",
    ),
    (
        listener_edit("    session_affinity: ClientIP\n"),
        "listeners[0].session_affinity",
        "must be none or {client_ip: {timeout: SECONDS}}, got 'ClientIP'",
    ),
    (
        listener_edit("    session_affinity: {cookie: {}}\n"),
        "listeners[0].session_affinity.cookie",
        "unknown field",
    ),
    (
        listener_edit("    session_affinity: {client_ip: {ttl: 5}}\n"),
        "listeners[0].session_affinity.client_ip.ttl",
        "unknown field",
    ),
]


def test_proxy_protocol_is_parsed_per_listener_and_from_defaults() -> None:
    for version in ("v1", "v2"):
        text = listener_edit(f"    proxy_protocol: {version}\n")
        assert parse_config(text, "lb.yaml").listeners[0].options.proxy_protocol == version
    inherited = "defaults: {proxy_protocol: v2}\n" + BASE
    assert parse_config(inherited, "lb.yaml").listeners[0].options.proxy_protocol == "v2"
    off = inherited.replace("    port: 8080\n", "    port: 8080\n    proxy_protocol: none\n")
    assert parse_config(off, "lb.yaml").listeners[0].options.proxy_protocol is None
    assert parse_config(BASE, "lb.yaml").listeners[0].options.proxy_protocol is None


PROXY_BAD = [
    (
        listener_edit("    proxy_protocol: v3\n"),
        "listeners[0].proxy_protocol",
        "must be v1, v2 or none, got 'v3'",
    ),
    (
        listener_edit("    proxy_protocol: true\n"),
        "listeners[0].proxy_protocol",
        "must be v1, v2 or none, got True",
    ),
    (
        udp_edit("    proxy_protocol: v1\n"),
        "listeners[0].proxy_protocol",
        "on TCP listeners in proxy mode only; this one is udp in proxy mode",
    ),
    (
        listener_edit("    mode: kernel\n    proxy_protocol: v2\n"),
        "listeners[0].proxy_protocol",
        "this one is tcp in kernel mode (set proxy_protocol: none here)",
    ),
    (
        "defaults: {proxy_protocol: v1}\n" + UDP_BASE,
        "listeners[0].proxy_protocol",
        "a PROXY protocol header (from defaults) is sent on TCP listeners",
    ),
]


@pytest.mark.parametrize(("text", "path", "message"), UDP_BAD + AFFINITY_BAD + PROXY_BAD)
def test_bad_udp_affinity_and_proxy_protocol_fields_are_refused_in_one_line(
    text: str, path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "lb.yaml")
    assert err.value.path == path, str(err.value)
    assert message in err.value.message, str(err.value)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("lb.yaml:")
