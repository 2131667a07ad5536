"""The image in the lab: ``ironlb controller`` and ``ironlb speaker`` run in
containers, confined as a cluster would run them, against the local API.

Two nodes with pods; each node's speaker runs in a container joined to the
node's network namespace with ``--cap-drop all --cap-add NET_ADMIN,NET_RAW
--read-only``; the controller runs as the image's default user (uid 65532)
in a container joined to the client's namespace. The API reaches both through
the lab's bridge (``ironlb/lab/api_bridge.py``). The client then sees the VIP
answered by exactly one node's MAC and gets a pod's answer through it. A
Service port below 1024 needs ``CAP_NET_BIND_SERVICE`` as well: without it
the listener is refused, with a log line that says so.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from pathlib import Path

import pytest

from tests.e2e.cluster import NS, POD_TCP, Cluster, cluster, speaker_args
from tests.support import eventually

from . import podman

# slow: a cold `make image` (debootstrap, wheels, two apt runs) takes over a minute.
pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]

KUBECONFIG = "/etc/ironlb/kubeconfig"
WEB_PORT = 8080  # unprivileged: binding it needs no CAP_NET_BIND_SERVICE
WEB = {"name": "http", "port": WEB_PORT, "targetPort": POD_TCP, "protocol": "TCP"}
LOW = {"name": "http", "port": 80, "targetPort": POD_TCP, "protocol": "TCP"}


def _readable_copy(src: Path, dest: Path) -> Path:
    """The kubeconfig, readable by uid 65532 (the lab writes it 0600, root's)."""
    dest.write_bytes(src.read_bytes())
    dest.chmod(0o644)
    return dest


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


async def test_speaker_in_the_image_owns_the_vip_and_forwards_end_to_end(
    image: str, tmp_path: Path
) -> None:
    async with cluster(tmp_path, nodes=2, pods_per_node=1, processes=False) as cl:
        kubeconfig = _readable_copy(cl.kubeconfig_node, tmp_path / "container.kubeconfig")
        mounts = [(kubeconfig, KUBECONFIG)]
        env = ("-e", f"KUBECONFIG={KUBECONFIG}")
        with contextlib.ExitStack() as stack:
            controller = stack.enter_context(
                podman.detached(
                    "ironlb",
                    "controller",
                    "--namespace",
                    NS,
                    "--lease-duration",
                    "5",
                    "--renew-period",
                    "1",
                    netns=cl.lab.client.netns,
                    opts=(*env, "--cap-drop", "all", "--read-only"),
                    mounts=mounts,
                )
            )
            speakers = {
                node.name: stack.enter_context(
                    podman.detached(
                        *_speaker_argv(node.name),
                        netns=node.netns,
                        opts=(*env, *podman.SPEAKER_OPTS),
                        mounts=mounts,
                    )
                )
                for node in cl.lab.nodes
            }
            try:
                await _check(cl, controller, speakers)
            except BaseException:
                for name in (controller, *speakers.values()):
                    print(f"--- {name}:\n{podman.logs(name)[-4000:]}")
                raise


def _speaker_argv(node: str) -> list[str]:
    return ["ironlb", *speaker_args(node)]


async def _ok(cl: Cluster, vip: str, count: int) -> bool:
    answers = await asyncio.to_thread(cl.ask, vip, WEB_PORT, count)
    return not any(a.startswith("ERR") for a in answers)


async def _logged_everywhere(text: str, names: list[str]) -> bool:
    logs = await asyncio.gather(*(asyncio.to_thread(podman.logs, n) for n in names))
    return all(text in log for log in logs)


async def _check(cl: Cluster, controller: str, speakers: dict[str, str]) -> None:
    # Everything blocking runs in a thread: the API bridge the containers talk
    # through is served by this event loop, which must not stall.
    # The controller's process, seen from the host, is not root.
    assert _uid_of(podman.host_pid(controller)) == 65532
    for name in speakers.values():
        assert _uid_of(podman.host_pid(name)) == 0
    vip = await cl.expose("web", cl.lab.pods, ports=[WEB])
    owner = await eventually(lambda: cl.announcing_node("web"), timeout=60, what="web announced")
    assert owner in speakers
    await eventually(
        lambda: _ok(cl, vip, 4),
        timeout=60,
        what="the VIP answering through the containerised speaker",
    )
    answers = collections.Counter(await asyncio.to_thread(cl.ask, vip, WEB_PORT, 8))
    assert set(answers) == {p.name for p in cl.lab.pods}, answers  # both pods, via one node
    macs = await asyncio.to_thread(cl.arp_macs, vip)
    assert [cl.node_by_mac(m) for m in macs] == [owner], macs  # one answer, the owner's MAC
    # The VIP is on the owner's namespace (the container bound it there) and nowhere else.
    for node in cl.lab.nodes:
        done = await asyncio.to_thread(cl.lab.run, node, "ip", "-o", "addr", "show")
        assert (f" {vip}/" in done.stdout) == (node.name == owner), (node.name, done.stdout)
    # Port 80 needs CAP_NET_BIND_SERVICE, which this speaker lacks: refused, and said so.
    low = await cl.expose("low", cl.lab.pods, ports=[LOW])
    refusal = (
        f"listener tcp/{low}:80: cannot bind: Permission denied"
        " (ports below 1024 need CAP_NET_BIND_SERVICE)"
    )
    await eventually(
        lambda: _logged_everywhere(refusal, list(speakers.values())),
        timeout=60,
        interval=0.5,
        what="the privileged-port refusal in both speakers' logs",
    )
    low_answers = await asyncio.to_thread(cl.ask, low, 80)
    assert low_answers[0].startswith("ERR"), "port 80 answered without the capability"
    # ... once per speaker while it lasts, not at every reconcile (it was ~10 lines/s).
    await asyncio.sleep(2)
    for name in speakers.values():
        assert (await asyncio.to_thread(podman.logs, name)).count(refusal) == 1, name
    assert await _ok(cl, vip, 4)  # the unprivileged port is unharmed
