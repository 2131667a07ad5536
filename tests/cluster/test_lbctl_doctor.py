"""``lbctl status`` (the one-screen view) and ``lbctl doctor`` against the local Kubernetes API.

Each test builds a healthy install the way the controller and speakers would
leave it (CRD, controller Lease, speaker Leases, heartbeat Secret, a Ready
pool, a Service holding an address), breaks one thing, and checks that the
one check concerned turns warn or fail with its fix, and the exit code.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from ironlb.lab.apiserver import ServerThread
from ironlb.operator.allocator import PoolUsage
from ironlb.operator.pool_status import pool_status
from tests.cluster.test_lbctl import CRD, GVP, hold_address, lbctl, mark_ready, run, write_lease

pytestmark = pytest.mark.cluster

NS = "ironlb-system"


@pytest.fixture
def api(kube_client: client.ApiClient) -> client.ApiClient:
    return kube_client


def stamp(ago: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def add_node(api: client.ApiClient, name: str, *, ready: bool = True, **labels: str) -> None:
    core = client.CoreV1Api(api)
    core.create_node({"metadata": {"name": name, "labels": labels}})
    condition = {"type": "Ready", "status": "True" if ready else "False", "reason": "Test"}
    core.patch_node_status(name, {"status": {"conditions": [condition]}})


def speaker_lease(
    api: client.ApiClient, node: str, renewed_ago: timedelta = timedelta(0), holder: bool = True
) -> None:
    spec = {
        "holderIdentity": node if holder else None,
        "leaseDurationSeconds": 10,
        "renewTime": stamp(renewed_ago),
    }
    body = {"metadata": {"name": f"ironlb-speaker-{node}"}, "spec": spec}
    leases = client.CoordinationV1Api(api)
    try:
        leases.create_namespaced_lease(NS, body)
    except ApiException as exc:
        assert exc.status == 409
        leases.patch_namespaced_lease(f"ironlb-speaker-{node}", NS, {"spec": spec})


def secret(api: client.ApiClient, key: bytes) -> None:
    body = {
        "metadata": {"name": "ironlb-heartbeat"},
        "data": {"key": base64.b64encode(key).decode()},
    }
    client.CoreV1Api(api).create_namespaced_secret(NS, body)


def create_pool(api: client.ApiClient, name: str, *addresses: str) -> None:
    body = {
        "apiVersion": "ironlb.io/v1alpha1",
        "kind": "IPAddressPool",
        "metadata": {"name": name},
        "spec": {"addresses": list(addresses)},
    }
    client.CustomObjectsApi(api).create_cluster_custom_object(*GVP, body)


def foreign_crd(api: client.ApiClient, plural: str, group: str, kind: str, version: str) -> None:
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"plural": plural, "singular": plural[:-1], "kind": kind},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    client.ApiextensionsV1Api(api).create_custom_resource_definition(body)


def workload(api: client.ApiClient, kind: str, ns: str, name: str, **labels: str) -> None:
    core = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": ns}})
    except ApiException as exc:
        assert exc.status == 409
    match = labels or {"app": name}
    body = {
        "metadata": {"name": name, "labels": match},
        "spec": {
            "selector": {"matchLabels": match},
            "template": {
                "metadata": {"labels": match},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/x"}]},
            },
        },
    }
    apps = client.AppsV1Api(api)
    if kind == "Deployment":
        apps.create_namespaced_deployment(ns, body)
    else:
        apps.create_namespaced_daemon_set(ns, body)


@pytest.fixture
def healthy(api_thread_kubeconfig: Path, api: client.ApiClient) -> Path:
    """A healthy install: every doctor check ok. Returns the kubeconfig."""
    client.ApiextensionsV1Api(api).create_custom_resource_definition(
        yaml.safe_load(CRD.read_text())
    )
    write_lease(api, timedelta(seconds=1))  # creates the namespace too
    secret(api, b"k" * 32)
    for node in ("node-1", "node-2"):
        add_node(api, node)
        speaker_lease(api, node, timedelta(seconds=1))
    create_pool(api, "web", "198.18.10.0/28")
    mark_ready(api, "web", 1, 15)
    hold_address(api, "shop", "web", "198.18.10.1", node="node-1")
    return api_thread_kubeconfig


def doctor(
    capsys: pytest.CaptureFixture[str], kc: Path, *flags: str
) -> tuple[int, dict[str, dict[str, str]]]:
    code, out, err = run(capsys, "--kubeconfig", str(kc), "doctor", "-o", "json", *flags)
    assert err == ""
    body = json.loads(out)
    checks = {c["name"]: c for c in body["checks"]}
    assert body["ok"] is (code == 0)
    return code, checks


def only_verdict(checks: dict[str, dict[str, str]], name: str, verdict: str) -> dict[str, str]:
    """``name`` has ``verdict`` and a fix; every other check is ok."""
    others = {n: c["verdict"] for n, c in checks.items() if n != name and c["verdict"] != "ok"}
    assert others == {}, others
    check = checks[name]
    assert check["verdict"] == verdict, check
    assert check["fix"], check
    return check


# --- doctor: all ok, then each check broken on its own -------------------------------------------

ALL = [
    "crd", "controller", "speakers", "heartbeat-secret", "pools", "services", "ip-mode",
    "metallb", "kube-vip", "cilium", "foreign-addresses",
]  # fmt: skip


def test_doctor_healthy_install_all_ok(healthy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, checks = doctor(capsys, healthy)
    assert code == 0
    assert list(checks) == ALL
    assert {n: c["verdict"] for n, c in checks.items()} == dict.fromkeys(ALL, "ok")
    assert checks["speakers"]["detail"] == "2/2 node(s) have a live speaker"
    assert checks["ip-mode"]["detail"] == "Kubernetes v1.32.0-ironlb-lab honours ipMode: Proxy"
    assert all(c["fix"] == "" for c in checks.values())


Breaker = Callable[[client.ApiClient, ServerThread], None]


def _stale_controller(api: client.ApiClient, server: ServerThread) -> None:
    write_lease(api, timedelta(minutes=5))


def _no_controller(api: client.ApiClient, server: ServerThread) -> None:
    client.CoordinationV1Api(api).delete_namespaced_lease("ironlb-controller", NS)


def _node_without_speaker(api: client.ApiClient, server: ServerThread) -> None:
    add_node(api, "node-3")


def _speaker_stopped(api: client.ApiClient, server: ServerThread) -> None:
    speaker_lease(api, "node-2", timedelta(seconds=40))


def _speaker_released(api: client.ApiClient, server: ServerThread) -> None:
    speaker_lease(api, "node-2", holder=False)


def _node_down(api: client.ApiClient, server: ServerThread) -> None:
    add_node(api, "node-3", ready=False)


def _no_secret(api: client.ApiClient, server: ServerThread) -> None:
    client.CoreV1Api(api).delete_namespaced_secret("ironlb-heartbeat", NS)


def _short_key(api: client.ApiClient, server: ServerThread) -> None:
    client.CoreV1Api(api).delete_namespaced_secret("ironlb-heartbeat", NS)
    secret(api, b"short")


def _overlap(api: client.ApiClient, server: ServerThread) -> None:
    create_pool(api, "wider", "198.18.10.0/27")  # the API does not refuse it: no webhook here


def _bad_pool(api: client.ApiClient, server: ServerThread) -> None:
    create_pool(api, "hostbits", "198.18.20.1/24")


def _invalid_condition(api: client.ApiClient, server: ServerThread) -> None:
    create_pool(api, "other", "198.18.30.0/28")
    status = pool_status(
        None,
        ("Conflict", "refused by the controller"),
        previous=None,
        generation=1,
        now=datetime.now(UTC),
    )
    client.CustomObjectsApi(api).patch_cluster_custom_object_status(
        *GVP, "other", {"status": status}
    )


def _no_pools(api: client.ApiClient, server: ServerThread) -> None:
    client.CoreV1Api(api).delete_namespaced_service("shop", "default")
    client.CustomObjectsApi(api).delete_cluster_custom_object(*GVP, "web")


def _pending(api: client.ApiClient, server: ServerThread) -> None:
    core = client.CoreV1Api(api)
    spec = {"type": "LoadBalancer", "ports": [{"port": 53}]}
    core.create_namespaced_service("default", {"metadata": {"name": "waiting"}, "spec": spec})
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "waiting.1"},
            "involvedObject": {"kind": "Service", "name": "waiting", "namespace": "default"},
            "type": "Warning",
            "reason": "AllocationFailed",
            "message": "NoAvailableIPs: no free address",
            "lastTimestamp": stamp(),
        },
    )


def _k8s_1_29(api: client.ApiClient, server: ServerThread) -> None:
    server.server.version_info.update(minor="29", gitVersion="v1.29.4")


def _k8s_1_27(api: client.ApiClient, server: ServerThread) -> None:
    server.server.version_info.update(minor="27+", gitVersion="v1.27.9-eks")


def _metallb_running(api: client.ApiClient, server: ServerThread) -> None:
    workload(api, "Deployment", "metallb-system", "controller", app="metallb")


def _metallb_leftovers(api: client.ApiClient, server: ServerThread) -> None:
    foreign_crd(api, "ipaddresspools", "metallb.io", "IPAddressPool", "v1beta1")


def _kube_vip(api: client.ApiClient, server: ServerThread) -> None:
    workload(api, "DaemonSet", "kube-system", "kube-vip-ds")


def _kube_vip_annotation(api: client.ApiClient, server: ServerThread) -> None:
    client.CoreV1Api(api).patch_namespaced_service(
        "shop",
        "default",
        {"metadata": {"annotations": {"kube-vip.io/loadbalancerIPs": "198.18.10.1"}}},
    )


def _cilium_pool(api: client.ApiClient, server: ServerThread) -> None:
    foreign_crd(
        api, "ciliumloadbalancerippools", "cilium.io", "CiliumLoadBalancerIPPool", "v2alpha1"
    )
    body = {
        "apiVersion": "cilium.io/v2alpha1",
        "kind": "CiliumLoadBalancerIPPool",
        "metadata": {"name": "lan"},
        "spec": {"blocks": [{"cidr": "198.18.40.0/24"}]},
    }
    client.CustomObjectsApi(api).create_cluster_custom_object(
        "cilium.io", "v2alpha1", "ciliumloadbalancerippools", body
    )


def _cilium_policy(api: client.ApiClient, server: ServerThread) -> None:
    foreign_crd(
        api,
        "ciliuml2announcementpolicies",
        "cilium.io",
        "CiliumL2AnnouncementPolicy",
        "v2alpha1",
    )
    body = {
        "apiVersion": "cilium.io/v2alpha1",
        "kind": "CiliumL2AnnouncementPolicy",
        "metadata": {"name": "all"},
        "spec": {"loadBalancerIPs": True},
    }
    client.CustomObjectsApi(api).create_cluster_custom_object(
        "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", body
    )


def _foreign_address(api: client.ApiClient, server: ServerThread) -> None:
    core = client.CoreV1Api(api)
    spec = {"type": "LoadBalancer", "ports": [{"port": 80}]}
    core.create_namespaced_service("default", {"metadata": {"name": "theirs"}, "spec": spec})
    core.patch_namespaced_service_status(
        "theirs", "default", {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}}
    )


BREAKERS: list[tuple[Breaker, str, str, str]] = [
    (_stale_controller, "controller", "fail", "stopped renewing ironlb-system/ironlb-controller"),
    (_no_controller, "controller", "fail", "no Lease ironlb-system/ironlb-controller"),
    (_node_without_speaker, "speakers", "fail", "1 Ready node(s) without a live speaker: node-3"),
    (_speaker_stopped, "speakers", "fail", "node-2 (last heartbeat 4"),  # 40s ago, or 41
    (_speaker_released, "speakers", "fail", "node-2 (Lease released)"),
    (_node_down, "speakers", "warn", "2/3 live; NotReady node(s) without one: node-3"),
    (_no_secret, "heartbeat-secret", "fail", "Secret ironlb-system/ironlb-heartbeat not found"),
    (_short_key, "heartbeat-secret", "fail", "the key has 5 bytes, at least 16"),
    (_overlap, "pools", "fail", "wider: "),
    (_bad_pool, "pools", "fail", "hostbits: spec.addresses[0]"),
    (_invalid_condition, "pools", "fail", "other: Invalid (Conflict)"),
    (_no_pools, "pools", "warn", "no IPAddressPool"),
    (
        _pending,
        "services",
        "fail",
        "default/waiting (AllocationFailed: NoAvailableIPs: no free address)",
    ),
    (_k8s_1_29, "ip-mode", "warn", "v1.29.4: LoadBalancerIPMode is alpha"),
    (_k8s_1_27, "ip-mode", "warn", "v1.27.9-eks drops ipMode: Proxy (1.30+): kube-proxy takes"),
    (_metallb_running, "metallb", "fail", "Deployment metallb-system/controller"),
    (_metallb_leftovers, "metallb", "warn", "ipaddresspools.metallb.io"),
    (_kube_vip, "kube-vip", "fail", "DaemonSet kube-system/kube-vip-ds"),
    (_kube_vip_annotation, "kube-vip", "warn", "kube-vip.io/ annotations on default/shop"),
    (_cilium_pool, "cilium", "fail", "1 CiliumLoadBalancerIPPool(s) (lan)"),
    (_cilium_policy, "cilium", "warn", "1 CiliumL2AnnouncementPolicy(s)"),
    (_foreign_address, "foreign-addresses", "fail", "default/theirs (192.0.2.7)"),
]


#: The exact fix for a few breakers: it names the object concerned.
FIXES: dict[Breaker, str] = {
    _bad_pool: "lbctl pool show hostbits; fix its spec or delete it: lbctl pool delete hostbits",
    _foreign_address: "another load balancer is active (see metallb, kube-vip, cilium); who "
    "wrote it: kubectl -n default get service theirs -o yaml --show-managed-fields",
    _pending: "lbctl services; kubectl -n default describe service waiting",
    _no_secret: "kubectl -n ironlb-system create secret generic ironlb-heartbeat "
    "--from-literal=key=$(head -c32 /dev/urandom | base64)",
}


@pytest.mark.parametrize(
    ("breaker", "name", "verdict", "words"), BREAKERS, ids=[b[0].__name__ for b in BREAKERS]
)
def test_doctor_each_check_turns(
    healthy: Path,
    api: client.ApiClient,
    api_thread: ServerThread,
    capsys: pytest.CaptureFixture[str],
    breaker: Breaker,
    name: str,
    verdict: str,
    words: str,
) -> None:
    breaker(api, api_thread)
    code, checks = doctor(capsys, healthy)
    check = only_verdict(checks, name, verdict)
    assert words in check["detail"], check
    assert code == (1 if verdict == "fail" else 0)
    if breaker in FIXES:
        assert check["fix"] == FIXES[breaker]


def test_doctor_foreign_crds_alone_are_fine(
    healthy: Path, api: client.ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cilium as the CNI installs its CRDs; without pools its LB-IPAM does nothing."""
    foreign_crd(
        api, "ciliumloadbalancerippools", "cilium.io", "CiliumLoadBalancerIPPool", "v2alpha1"
    )
    workload(api, "Deployment", "kube-system", "coredns", app="kube-dns")
    code, checks = doctor(capsys, healthy)
    assert code == 0
    assert checks["cilium"] == {
        "name": "cilium",
        "verdict": "ok",
        "detail": "Cilium present, its LB-IPAM has no pools",
        "fix": "",
    }
    assert checks["metallb"]["verdict"] == checks["kube-vip"]["verdict"] == "ok"


def test_doctor_speaker_daemonset_node_selector(
    healthy: Path, api: client.ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    add_node(api, "edge-1", role="edge")  # Ready, no speaker: fine once the DaemonSet skips it
    failing = doctor(capsys, healthy)[1]["speakers"]
    assert failing["verdict"] == "fail"
    assert failing["fix"] == (
        "kubectl -n ironlb-system get pods -o wide --field-selector spec.nodeName=edge-1; "
        "kubectl -n ironlb-system get lease ironlb-speaker-edge-1 -o yaml"
    )
    workload(api, "DaemonSet", NS, "ironlb-speaker")
    client.AppsV1Api(api).patch_namespaced_daemon_set(
        "ironlb-speaker",
        NS,
        {"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}}},
    )
    for node in ("node-1", "node-2"):
        client.CoreV1Api(api).patch_node(
            node, {"metadata": {"labels": {"kubernetes.io/os": "linux"}}}
        )
    code, checks = doctor(capsys, healthy)
    assert code == 0 and checks["speakers"]["detail"] == "2/2 node(s) have a live speaker"


def test_doctor_crd_missing_and_old(
    api_thread_kubeconfig: Path, api: client.ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks = doctor(capsys, api_thread_kubeconfig)
    assert code == 1
    assert checks["crd"]["verdict"] == "fail"
    assert checks["crd"]["fix"] == (
        "kubectl apply --server-side -f charts/ironlb/crds/ipaddresspools.ironlb.io.yaml"
    )
    assert checks["pools"]["verdict"] == "fail"

    old: dict[str, Any] = yaml.safe_load(CRD.read_text())
    schema = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    del schema["spec"]["properties"]["l2"]
    del schema["status"]["properties"]["assignedIPv6"]
    client.ApiextensionsV1Api(api).create_custom_resource_definition(old)
    code, checks = doctor(capsys, api_thread_kubeconfig)
    assert checks["crd"]["verdict"] == "warn"
    assert "older than this lbctl: no spec.l2, status.assignedIPv6" in checks["crd"]["detail"]


def test_doctor_crd_wrong_version(
    api_thread_kubeconfig: Path, api: client.ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    other: dict[str, Any] = yaml.safe_load(CRD.read_text())
    other["spec"]["versions"][0]["name"] = "v1beta9"
    client.ApiextensionsV1Api(api).create_custom_resource_definition(other)
    code, checks = doctor(capsys, api_thread_kubeconfig)
    assert code == 1
    assert checks["crd"]["verdict"] == "fail"
    assert checks["crd"]["detail"] == (
        "CRD ipaddresspools.ironlb.io does not serve v1alpha1 (serves: v1beta9)"
    )


def test_doctor_output_formats_subprocess(
    healthy: Path, api: client.ApiClient, api_thread: ServerThread
) -> None:
    table = lbctl(healthy, "doctor")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "VERDICT", "DETAIL"]
    assert [line.split()[0] for line in lines[1:12]] == ALL
    assert lines[-1] == "11 ok, 0 warn, 0 fail"

    _no_secret(api, api_thread)
    broken = lbctl(healthy, "doctor")
    assert broken.returncode == 1
    out = broken.stdout
    assert "heartbeat-secret    fail" in out
    assert "fix heartbeat-secret: kubectl -n ironlb-system create secret generic" in out
    assert out.splitlines()[-1] == "10 ok, 0 warn, 1 fail"

    wide = lbctl(healthy, "doctor", "-o", "wide")
    assert wide.returncode == 1
    assert wide.stdout.splitlines()[0].split() == ["CHECK", "VERDICT", "DETAIL", "FIX"]
    assert "fix heartbeat-secret:" not in wide.stdout

    as_yaml = lbctl(healthy, "doctor", "-o", "yaml")
    assert as_yaml.returncode == 1
    body = yaml.safe_load(as_yaml.stdout)
    assert body["ok"] is False
    assert [c["name"] for c in body["checks"]] == ALL
    assert set(body["checks"][0]) == {"name", "verdict", "detail", "fix"}


def test_doctor_unreachable_and_bad_flags(
    tmp_path: Path, healthy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--kubeconfig", str(tmp_path / "nope"), "doctor")
    assert (code, out) == (1, "") and "kubeconfig file" in err
    with pytest.raises(SystemExit) as exited:
        run(capsys, "--kubeconfig", str(healthy), "doctor", "-o", "xml")
    assert exited.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["status", "doctor"])
@pytest.mark.parametrize("bad", ["Ironlb", "ironlb system", "-x", "a" * 64])
def test_bad_namespace_refused(
    healthy: Path, capsys: pytest.CaptureFixture[str], command: str, bad: str
) -> None:
    code, out, err = run(capsys, "--kubeconfig", str(healthy), command, f"--namespace={bad}")
    assert (code, out) == (2, "")
    assert err.startswith(f"lbctl: --namespace {bad!r} is not a namespace name: ")
    assert err.count("\n") == 1


# --- status: the one screen ----------------------------------------------------------------------


def test_status_one_screen(
    healthy: Path,
    api: client.ApiClient,
    api_thread: ServerThread,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A dual-stack pool whose IPv6 range is larger than int64 (the status counter is capped).
    create_pool(api, "v6", "198.18.50.0/30", "fd00:198:18:50::/64")
    usage = PoolUsage(2, 3, 2, 2**64 - 3)
    status = pool_status(usage, None, previous=None, generation=1, now=datetime.now(UTC))
    client.CustomObjectsApi(api).patch_cluster_custom_object_status(*GVP, "v6", {"status": status})
    speaker_lease(api, "node-2", timedelta(seconds=30))
    _pending(api, api_thread)

    code, out, err = run(capsys, "--kubeconfig", str(healthy), "status")
    assert code == 1 and "default/waiting" in err
    lines = out.splitlines()
    assert lines[0] == "CRD:        ipaddresspools.ironlb.io registered"
    assert lines[1].startswith("Controller: leader controller-0, Lease fresh (")
    assert lines[2] == "Pools:      2 total, 2 Ready, 0 Invalid, 0 not ready"
    rows = [line.split() for line in lines[3:7]]
    assert rows == [
        ["POOL", "FAMILY", "USAGE", "USED", "FREE", "STATUS"],
        ["v6", "IPv4", "[##########----------]", "2", "2", "Ready"],
        ["v6", "IPv6", "[#-------------------]", "3", "1.8e19", "Ready"],
        ["web", "IPv4", "[#-------------------]", "1", "15", "Ready"],
    ]
    # kubectl get shows the capped counter; the screen shows the exact figure the condition says
    stored = client.CustomObjectsApi(api).get_cluster_custom_object(*GVP, "v6")["status"]
    assert stored["availableIPv6"] == 2**63 - 1
    assert f"{2**64 - 3 + 2} available" in stored["conditions"][0]["message"]
    assert lines[7] == "Speakers:   1 live, 2 node(s)"
    header, one, two = (line.split() for line in lines[8:11])
    assert header == ["NODE", "SPEAKER", "HEARTBEAT", "NODE-READY"]
    assert one[:2] == ["node-1", "live"] and one[3:] == ["ago", "True"]
    assert two[:2] == ["node-2", "dead"] and two[2] in ("30s", "31s") and two[3:] == ["ago", "True"]
    assert lines[11] == "Services:   2 LoadBalancer, 1 pending"
    assert lines[12].split() == ["PENDING", "WHY"]
    assert lines[13].split(None, 1) == [
        "default/waiting",
        "AllocationFailed: NoAvailableIPs: no free address",
    ]
    assert len(lines) == 14

    code, out, _ = run(capsys, "--kubeconfig", str(healthy), "status", "-o", "wide")
    assert out.splitlines()[3].split()[-1] == "ADDRESSES"
    assert "fd00:198:18:50::/64" in out and "LEASE-LEFT" in out

    code, out, _ = run(capsys, "--kubeconfig", str(healthy), "status", "-o", "json")
    body = json.loads(out)
    assert code == 1 and body["healthy"] is False
    v6 = next(p for p in body["pools"] if p["name"] == "v6")
    assert v6["families"][1] == {
        "family": "IPv6",
        "used": 3,
        "free": 2**63 - 1,
        "freeCapped": True,
        "freeExact": 2**64 - 3,
    }
    speakers = {s["node"]: s for s in body["speakers"]}
    assert speakers["node-1"]["live"] is True and speakers["node-2"]["live"] is False
    assert 29 <= speakers["node-2"]["heartbeatAgeSeconds"] < 60
    assert body["pending"] == [
        {
            "namespace": "default",
            "name": "waiting",
            "reason": "AllocationFailed",
            "message": "NoAvailableIPs: no free address",
        }
    ]
    code, out, _ = run(capsys, "--kubeconfig", str(healthy), "status", "-o", "yaml")
    again = yaml.safe_load(out)
    assert code == 1 and again["pools"] == body["pools"] and again["pending"] == body["pending"]
    assert [s["node"] for s in again["speakers"]] == ["node-1", "node-2"]


def test_status_healthy_and_orphan_lease_subprocess(healthy: Path, api: client.ApiClient) -> None:
    speaker_lease(api, "gone-node", timedelta(seconds=2))  # a Lease whose Node was deleted
    result = lbctl(healthy, "status")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("healthy")
    assert "Speakers:   3 live, 2 node(s)" in result.stdout
    orphan = next(line for line in result.stdout.splitlines() if "gone-node" in line)
    assert orphan.split()[1] == "live" and orphan.split()[-1] == "Node>"


# --- doctor without every permission -------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "warned"),
    [
        (["/api/v1/namespaces/ironlb-system/secrets/ironlb-heartbeat"], {"heartbeat-secret"}),
        (["/api/v1/nodes"], {"speakers"}),
        (["/apis/apps/v1/daemonsets"], {"metallb", "kube-vip"}),
        (["/api/v1/namespaces/kube-system/pods"], {"kube-vip"}),
        (["/apis/cilium.io/v2alpha1/ciliumloadbalancerippools"], {"cilium"}),
    ],
)
def test_doctor_forbidden_reads_warn_and_the_rest_runs(
    healthy: Path,
    api: client.ApiClient,
    api_thread: ServerThread,
    capsys: pytest.CaptureFixture[str],
    paths: list[str],
    warned: set[str],
) -> None:
    foreign_crd(
        api, "ciliumloadbalancerippools", "cilium.io", "CiliumLoadBalancerIPPool", "v2alpha1"
    )
    api_thread.server.forbidden_paths.update(paths)
    code, checks = doctor(capsys, healthy)
    assert code == 0
    assert {n for n, c in checks.items() if c["verdict"] != "ok"} == warned
    for name in warned:
        assert checks[name]["verdict"] == "warn"
        assert checks[name]["detail"].startswith("not allowed to read ")
        assert "is forbidden for this user" in checks[name]["detail"]
        assert checks[name]["fix"].startswith("kubectl auth can-i ")


def test_doctor_forbidden_core_read_is_one_line_error(
    healthy: Path, api_thread: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    api_thread.server.forbidden_paths.add("/api/v1/services")
    code, out, err = run(capsys, "--kubeconfig", str(healthy), "doctor")
    assert (code, out) == (1, "")
    assert err.startswith("lbctl: API error 403 (Forbidden): GET /api/v1/services is forbidden")
    assert err.count("\n") == 1
