"""Helpers for the lab workload controller tests: the controllers in a thread, a JSON
client, and a test stand-in for the kubelet's status writes.

The kubelet (another component) owns pod status; these tests play it over real
HTTP with :meth:`Json.kubelet_pass` (status subresource merge patches), which
is what the controllers react to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
from collections.abc import Iterable
from typing import Any

import urllib3

from ironlb.lab.workloads import run

PODS = "/api/v1/namespaces/default/pods"


class ControllersThread:
    """:func:`ironlb.lab.workloads.run` on its own loop in a thread; ``stop()`` ends it
    and re-raises whatever it died of."""

    def __init__(self, url: str, nodes: Iterable[int] = (1, 2, 3)) -> None:
        self.url = url
        self.nodes = list(nodes)
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="lab-controllers", daemon=True)

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(run(self.url, stop=self._stop, nodes=self.nodes))
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            self._loop.close()

    def start(self) -> ControllersThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=30)
        if self.error is not None:
            raise self.error


class Json:
    """Blocking JSON verbs on the lab API (urllib3); errors raise ``AssertionError``
    unless ``expect`` names the status."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(total=30))

    def call(self, method: str, path: str, body: Any = None, *, expect: int | None = None) -> Any:
        headers = {
            "Content-Type": "application/merge-patch+json"
            if method == "PATCH"
            else "application/json"
        }
        data = json.dumps(body).encode() if body is not None else None
        rsp = self.http.request(method, self.url + path, body=data, headers=headers)
        answer = json.loads(rsp.data) if rsp.data else None
        if expect is not None:
            assert rsp.status == expect, f"{method} {path}: {rsp.status} {answer}"
        elif rsp.status >= 400:
            raise AssertionError(f"{method} {path}: {rsp.status} {answer}")
        return answer

    def get(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", path)
        return result

    def items(self, path: str) -> list[dict[str, Any]]:
        return list(self.get(path)["items"])

    def pods(self, prefix: str = "") -> list[dict[str, Any]]:
        """Pods of ``default`` whose name starts with ``prefix``, by name."""
        found = [p for p in self.items(PODS) if p["metadata"]["name"].startswith(prefix)]
        return sorted(found, key=lambda p: p["metadata"]["name"])

    def set_ready(self, pod: str, ready: bool) -> dict[str, Any]:
        """Flip the pod's Ready condition (the kubelet's readiness probe result)."""
        status = "True" if ready else "False"
        result: dict[str, Any] = self.call(
            "PATCH",
            f"{PODS}/{pod}/status",
            {"status": {"conditions": [{"type": "Ready", "status": status}]}},
        )
        return result

    def kubelet_pass(self, ready: bool = True) -> int:
        """Start every scheduled pod that has no IP yet: phase Running, podIP(s) from
        its node's ``spec.podCIDRs`` (next free address from .10 / ::10), Ready.
        Returns how many pods it started."""
        nodes = {n["metadata"]["name"]: n for n in self.items("/api/v1/nodes")}
        pods = self.items("/api/v1/pods")
        used = {ip["ip"] for p in pods for ip in (p.get("status") or {}).get("podIPs") or []}
        started = 0
        for pod in pods:
            node = nodes.get((pod.get("spec") or {}).get("nodeName") or "")
            if node is None or (pod.get("status") or {}).get("podIP"):
                continue
            ips = []
            for cidr in node["spec"]["podCIDRs"]:
                net = ipaddress.ip_network(cidr)
                address = next(
                    str(a) for i, a in enumerate(net.hosts()) if i >= 9 and str(a) not in used
                )
                used.add(address)
                ips.append(address)
            meta = pod["metadata"]
            self.call(
                "PATCH",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                {
                    "status": {
                        "phase": "Running",
                        "podIP": ips[0],
                        "podIPs": [{"ip": ip} for ip in ips],
                        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    }
                },
            )
            started += 1
        return started
