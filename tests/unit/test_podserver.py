"""Pure parts of the lab pod server: peer formatting, HTTP sniffing, request parsing."""

from __future__ import annotations

import pytest

from ironlb.lab.podserver import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    Request,
    build_parser,
    format_peer,
    greeting,
    http_response,
    parse_request,
    sniff,
)


def test_format_peer() -> None:
    assert format_peer(("198.18.0.1", 40000)) == "198.18.0.1:40000"
    assert format_peer(("fd00:198:18::1", 40000, 0, 0)) == "[fd00:198:18::1]:40000"
    assert format_peer(("::ffff:198.18.0.11", 5, 0, 0)) == "198.18.0.11:5"
    assert greeting("node1-pod1", "198.18.0.1:1") == b"node1-pod1 198.18.0.1:1\n"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"", None),
        (b"G", None),
        (b"GET", None),
        (b"GET /", "http"),
        (b"HEAD / HTTP/1.0", "http"),
        (b"DELETE /x", "http"),
        (b"GETX", "plain"),
        (b"hello", "plain"),
        (b"get /", "plain"),  # methods are case-sensitive
        (b"\x00", "plain"),
    ],
)
def test_sniff(head: bytes, kind: str | None) -> None:
    assert sniff(head) == kind


def test_parse_request() -> None:
    assert parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parse_request(get) == Request("GET", len(get))
    # Pipelined bytes after the request are not part of it.
    assert parse_request(get + b"GET /2") == Request("GET", len(get))
    assert parse_request(b"GET / HTTP/1.0\n\n") == Request("GET", 16)
    post = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
    assert parse_request(post + b"ab") is None
    assert parse_request(post + b"abc") == Request("POST", len(post) + 3)
    with pytest.raises(ValueError, match="Content-Length"):
        parse_request(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
    with pytest.raises(ValueError, match="body too large"):
        parse_request(f"POST / HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode())
    with pytest.raises(ValueError, match="head too large"):
        parse_request(b"GET /" + b"x" * MAX_HEADER_BYTES)


def test_http_response_is_well_formed() -> None:
    body = b"node1-pod1 198.18.0.1:1\n"
    raw = http_response(body)
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.0 200 OK"
    assert f"Content-Length: {len(body)}" in lines
    assert rest == body
    assert http_response(body, head_only=True) == head + b"\r\n\r\n"
    assert http_response(b"", status="400 Bad Request").startswith(b"HTTP/1.0 400 Bad Request\r\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tcp", "8080"], "--name"),
        (["--name", "x", "--tcp", "70000"], "port must be 0..65535"),
        (["--name", "x", "--udp", "http"], "port must be 0..65535"),
        (["--name", "x", "--bind", "nowhere"], "not an IP address"),
        (["--name", "x", "--sniff", "-1"], "seconds must be 0..60"),
    ],
)
def test_bad_arguments_are_one_clear_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
