"""A private nginx for tests that need a real server speaking the PROXY protocol.

nginx is not installed system-wide for the tests: Debian's package would start
a service on port 80 of the host. ``make test-tools`` (part of ``make test``)
fetches Debian's ``nginx`` package with ``apt-get download`` and unpacks it
with ``dpkg -x`` under ``.venv/nginx``, where nothing runs it but the tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ironlb.lab.netlab import Lab, LabHost

#: Under the virtualenv that runs the tests (``make`` makes it ``.venv``).
NGINX = Path(sys.prefix) / "nginx" / "usr" / "sbin" / "nginx"


def nginx_binary() -> Path:
    """The unpacked nginx, or a skip saying how to get it."""
    if not NGINX.exists():
        pytest.skip(f"no private nginx at {NGINX}: `make test-tools` fetches it (make test does)")
    return NGINX


def proxy_protocol_config(prefix: Path, address: str, port: int) -> Path:
    """An nginx.conf (foreground, one process, logs to stderr, all paths under ``prefix``)
    whose server on ``address:port`` requires a PROXY header and answers each request
    with what the header said and who connected:
    ``<client addr> <client port> <dest addr> <dest port> <peer addr>``."""
    prefix.mkdir(parents=True, exist_ok=True)
    host = f"[{address}]" if ":" in address else address
    temp = " ".join(
        f"{kind}_temp_path {prefix};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"daemon off; master_process off; error_log stderr; pid {prefix}/nginx.pid;\n"
        "events {}\n"
        f"http {{ access_log off; {temp}\n"
        f"  server {{ listen {host}:{port} proxy_protocol;\n"
        "    location / { return 200 '$proxy_protocol_addr $proxy_protocol_port "
        "$proxy_protocol_server_addr $proxy_protocol_server_port $remote_addr\\n'; } } }\n"
    )
    return conf


def start_proxy_protocol_nginx(
    lab: Lab, host: LabHost, prefix: Path, address: str, port: int
) -> subprocess.Popen[bytes]:
    """The private nginx of :func:`proxy_protocol_config` in ``host``'s namespace (the
    caller kills it). Skips the test when nginx has not been fetched."""
    binary = nginx_binary()
    conf = proxy_protocol_config(prefix, address, port)
    return lab.popen(
        host,
        str(binary),
        "-p",
        str(prefix),
        "-c",
        str(conf),
        "-e",
        "stderr",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
