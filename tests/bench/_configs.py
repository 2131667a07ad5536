"""Configuration files of the peers the load benchmarks run: the nginx backend and HAProxy.

Every load benchmark puts the same backend (one nginx worker answering
``200 ok`` on several ports, keep-alive, no access log) behind the same HAProxy
(``mode tcp``, round-robin, default buffers, no logging), so that their numbers
stay comparable; the text of both lives here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def nginx_backend_conf(tmp: Path, listen: Sequence[str]) -> str:
    """An nginx.conf for the HTTP backend: one worker, ``return 200 "ok\\n"`` on every
    ``host:port`` of ``listen`` (backlog 4096), pid and error log under ``tmp``."""
    listens = "\n".join(f"    listen {hp} backlog=4096;" for hp in listen)
    return f"""worker_processes 1;
pid {tmp}/backend-nginx.pid;
error_log {tmp}/backend-nginx.err warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  server {{
{listens}
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""


@dataclass(frozen=True)
class TcpFrontend:
    """One HAProxy ``frontend``/``backend`` pair: ``bind`` (host:port) to ``servers``."""

    name: str
    bind: str
    servers: Sequence[str]  # host:port, balanced round-robin


def haproxy_tcp_conf(threads: int, frontends: Sequence[TcpFrontend]) -> str:
    """An haproxy.cfg: ``nbthread threads``, ``mode tcp``, 5 s connect and 60 s idle
    timeouts, one frontend and round-robin backend per entry of ``frontends``."""
    text = (
        f"global\n  nbthread {threads}\ndefaults\n  mode tcp\n  timeout connect 5s\n"
        "  timeout client 60s\n  timeout server 60s\n"
    )
    for fe in frontends:
        servers = "".join(f"  server s{i} {hp}\n" for i, hp in enumerate(fe.servers))
        text += (
            f"frontend {fe.name}\n  bind {fe.bind}\n  default_backend {fe.name}\n"
            f"backend {fe.name}\n  balance roundrobin\n{servers}"
        )
    return text
