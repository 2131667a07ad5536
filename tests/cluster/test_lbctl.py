"""``lbctl`` against the local Kubernetes API over real HTTP: some runs as real subprocesses of
the installed console script, the rest through ``main(argv)`` in-process. The test plays the
controller where needed (Service status + annotations, pool status, the controller Lease)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from ironlb.lbctl.cli import main
from ironlb.operator.allocator import PoolUsage
from ironlb.operator.pool_status import pool_status

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "charts/ironlb/crds/ipaddresspools.ironlb.io.yaml"
LBCTL = Path(sys.executable).parent / "lbctl"
GVP = ("ironlb.io", "v1alpha1", "ipaddresspools")


def lbctl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``lbctl`` console script for real."""
    return subprocess.run(
        [str(LBCTL), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def api(kube_client: client.ApiClient) -> client.ApiClient:
    return kube_client


@pytest.fixture
def crd(api: client.ApiClient) -> None:
    body = yaml.safe_load(CRD.read_text())
    client.ApiextensionsV1Api(api).create_custom_resource_definition(body)


@pytest.fixture
def kc(api_thread_kubeconfig: Path, crd: None) -> Path:
    """The kubeconfig of a server with the IPAddressPool CRD registered."""
    return api_thread_kubeconfig


def pools(api: client.ApiClient) -> dict[str, Any]:
    items = client.CustomObjectsApi(api).list_cluster_custom_object(*GVP)["items"]
    return {p["metadata"]["name"]: p for p in items}


def hold_address(
    api: client.ApiClient, name: str, pool: str, ip: str, ns: str = "default", node: str = ""
) -> None:
    """Create a LoadBalancer Service and write what the controller would: ingress + annotation."""
    core = client.CoreV1Api(api)
    body = {
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": name}},
    }
    core.create_namespaced_service(ns, body)
    notes = {"ironlb.io/ip-allocated-from-pool": pool}
    if node:
        notes["ironlb.io/announcing-node"] = node
    core.patch_namespaced_service(name, ns, {"metadata": {"annotations": notes}})
    core.patch_namespaced_service_status(
        name, ns, {"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "Proxy"}]}}}
    )


def write_lease(api: client.ApiClient, renewed_ago: timedelta, ns: str = "ironlb-system") -> None:
    core = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": ns}})
    except ApiException as exc:
        assert exc.status == 409
    renew = (datetime.now(UTC) - renewed_ago).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "metadata": {"name": "ironlb-controller"},
        "spec": {"holderIdentity": "controller-0", "leaseDurationSeconds": 15, "renewTime": renew},
    }
    leases = client.CoordinationV1Api(api)
    try:
        leases.create_namespaced_lease(ns, body)
    except ApiException as exc:
        assert exc.status == 409
        leases.patch_namespaced_lease("ironlb-controller", ns, {"spec": body["spec"]})


def mark_ready(api: client.ApiClient, name: str, used: int, free: int) -> None:
    now = datetime.now(UTC)
    status = pool_status(PoolUsage(used, 0, free, 0), None, previous=None, generation=1, now=now)
    client.CustomObjectsApi(api).patch_cluster_custom_object_status(*GVP, name, {"status": status})


# --- real subprocesses ---------------------------------------------------------------------------


def test_round_trip_subprocess(kc: Path, api: client.ApiClient) -> None:
    created = lbctl(
        kc, "pool", "create", "web",
        "--addresses", "198.18.10.0/24,198.18.11.1-198.18.11.9",
        "--no-auto-assign", "--priority", "4", "--namespace", "shop",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "ipaddresspool.ironlb.io/web created" in created.stdout
    assert pools(api)["web"]["spec"] == {
        "addresses": ["198.18.10.0/24", "198.18.11.1-198.18.11.9"],
        "autoAssign": False,
        "avoidBuggyIPs": False,
        "serviceAllocation": {"priority": 4, "namespaces": ["shop"]},
    }
    mark_ready(api, "web", 0, 265)

    listed = lbctl(kc, "pool", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "ADDRESSES", "USED", "FREE", "AUTO-ASSIGN", "STATUS", "AGE"]
    assert row.split()[:6] == [
        "web", "198.18.10.0/24,198.18.11.1-198.18.11.9", "0", "265", "false", "Ready",
    ]  # fmt: skip

    as_json = lbctl(kc, "pool", "list", "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    items = json.loads(as_json.stdout)["items"]
    assert [i["metadata"]["name"] for i in items] == ["web"]
    assert items[0]["status"]["free"] == 265

    shown = lbctl(kc, "pool", "show", "web")
    assert shown.returncode == 0, shown.stderr
    assert "Status:           Ready" in shown.stdout and "Priority:            4" in shown.stdout

    deleted = lbctl(kc, "pool", "delete", "web")
    assert deleted.returncode == 0, deleted.stderr
    assert pools(api) == {}
    gone = lbctl(kc, "pool", "show", "web")
    assert gone.returncode == 1 and gone.stderr.strip() == "lbctl: IPAddressPool 'web' not found"


def test_invalid_addresses_rejected_subprocess(kc: Path, api: client.ApiClient) -> None:
    result = lbctl(
        kc, "pool", "create", "bad", "--addresses", "198.18.12.0/24,198.18.13.9-198.18.13.1"
    )
    assert result.returncode == 2
    assert "spec.addresses[1]" in result.stderr and "reversed" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert pools(api) == {}


def test_delete_refused_while_in_use_then_forced_subprocess(
    kc: Path, api: client.ApiClient
) -> None:
    assert lbctl(kc, "pool", "create", "web", "--addresses", "198.18.10.0/28").returncode == 0
    hold_address(api, "shop", "web", "198.18.10.1")
    hold_address(api, "other", "elsewhere", "198.18.20.1")

    refused = lbctl(kc, "pool", "delete", "web")
    assert refused.returncode == 1
    assert "in use by 1 Service(s): default/shop (198.18.10.1)" in refused.stderr
    assert "--force" in refused.stderr and "other" not in refused.stderr
    assert "web" in pools(api)

    forced = lbctl(kc, "pool", "delete", "web", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "ipaddresspool.ironlb.io/web deleted" in forced.stdout
    assert "web" not in pools(api)


def test_status_exit_codes_subprocess(api_thread_kubeconfig: Path, api: client.ApiClient) -> None:
    bare = lbctl(api_thread_kubeconfig, "status")
    assert bare.returncode == 1
    assert "CRD (ipaddresspools.ironlb.io) is not installed" in bare.stderr
    assert "Lease ironlb-system/ironlb-controller not found" in bare.stderr

    client.ApiextensionsV1Api(api).create_custom_resource_definition(
        yaml.safe_load(CRD.read_text())
    )
    write_lease(api, timedelta(seconds=1))
    healthy = lbctl(api_thread_kubeconfig, "status")
    assert healthy.returncode == 0, healthy.stderr
    assert "leader controller-0, Lease fresh" in healthy.stdout
    assert healthy.stdout.rstrip().endswith("healthy")

    write_lease(api, timedelta(minutes=10))
    stale = lbctl(api_thread_kubeconfig, "status")
    assert stale.returncode == 1
    assert "held by controller-0 expired" in stale.stderr


def test_kubeconfig_from_environment_subprocess(kc: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(kc)}
    result = subprocess.run(
        [str(LBCTL), "pool", "list", "-o", "yaml"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == {"apiVersion": "v1", "kind": "List", "items": []}


def test_unreachable_server_subprocess(tmp_path: Path) -> None:
    # A bound but not listening loopback port refuses connections for as long as we hold it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                    "users": [{"name": "u", "user": {}}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "x",
                }
            )
        )
        result = lbctl(kubeconfig, "pool", "list")
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"lbctl: cannot reach the Kubernetes API at http://127.0.0.1:{port}"
    )
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- in-process ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--addresses", "198.18.10.7/24"], "spec.addresses[0]"),
        (["--addresses", "198.18.10.0/24,nonsense"], "spec.addresses[1]"),
        (["--addresses", "198.18.10.0/24,198.18.10.5"], "spec.addresses[1]"),
        (["--addresses", ","], "spec.addresses"),
        (["--addresses", "198.18.10.0/24", "--priority", "-1"], "spec.serviceAllocation.priority"),
    ],
)
def test_invalid_input_names_the_field(
    kc: Path,
    api: client.ApiClient,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    field: str,
) -> None:
    code, out, err = run(capsys, "--kubeconfig", str(kc), "pool", "create", "p", *flags)
    assert code == 2 and out == ""
    assert err.startswith(f"lbctl: invalid IPAddressPool 'p': {field}: ")
    assert pools(api) == {}


def test_overlap_with_existing_pool_rejected(
    kc: Path, api: client.ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(
            capsys, "--kubeconfig", str(kc), "pool", "create", "a", "--addresses", "198.18.10.0/24"
        )[0]
        == 0
    )
    code, _, err = run(
        capsys, "--kubeconfig", str(kc), "pool", "create", "b", "--addresses", "198.18.10.128/25"
    )
    assert code == 2
    assert "overlaps '198.18.10.0/24' of IPAddressPool 'a'" in err
    assert set(pools(api)) == {"a"}


def test_duplicate_create(
    kc: Path, api: client.ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--kubeconfig", str(kc), "pool", "create", "web"]
    assert run(capsys, *base, "--addresses", "198.18.10.0/24")[0] == 0
    code, out, err = run(capsys, *base, "--addresses", "198.18.12.0/24")
    assert (code, out) == (1, "")
    assert err.strip() == "lbctl: IPAddressPool 'web' already exists"
    assert pools(api)["web"]["spec"]["addresses"] == ["198.18.10.0/24"]


def test_show_and_services_list_holders(
    kc: Path, api: client.ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    k = ["--kubeconfig", str(kc)]
    assert run(capsys, *k, "pool", "create", "web", "--addresses", "198.18.10.0/28")[0] == 0
    hold_address(api, "shop", "web", "198.18.10.1", node="node-2")
    hold_address(api, "cart", "web", "198.18.10.2")
    client.CoreV1Api(api).create_namespaced_service(
        "default",
        {
            "metadata": {"name": "waiting"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 53}]},
        },
    )
    mark_ready(api, "web", 2, 14)

    code, out, _ = run(capsys, *k, "pool", "show", "web")
    assert code == 0
    assert "Services (2):" in out and "waiting" not in out
    assert "IPv4:           2 assigned, 14 available" in out

    code, out, _ = run(capsys, *k, "pool", "show", "web", "-o", "json")
    shown = json.loads(out)
    assert sorted(s["metadata"]["name"] for s in shown["services"]) == ["cart", "shop"]

    # What the endpointslice controller and the ironlb controller would have written.
    client.DiscoveryV1Api(api).create_namespaced_endpoint_slice(
        "default",
        {
            "metadata": {"name": "shop-abc", "labels": {"kubernetes.io/service-name": "shop"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["198.19.1.2"], "conditions": {"ready": True}},
                {"addresses": ["198.19.1.3"], "conditions": {"ready": False}},
                {"addresses": ["198.19.2.2"]},
            ],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        },
    )
    client.CoreV1Api(api).patch_namespaced_service(
        "shop", "default", {"metadata": {"annotations": {"ironlb.io/forwarding-mode": "kernel"}}}
    )
    client.CoreV1Api(api).create_namespaced_event(
        "default",
        {
            "metadata": {"name": "waiting.1"},
            "involvedObject": {"kind": "Service", "name": "waiting", "namespace": "default"},
            "type": "Warning",
            "reason": "AllocationFailed",
            "message": "NoAvailableIPs: no free address",
            "lastTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )

    code, out, _ = run(capsys, *k, "services")
    assert code == 0
    lines = [line.split(None, 7) for line in out.splitlines()]
    assert lines == [
        ["NAMESPACE", "NAME", "EXTERNAL-IP", "POOL", "ANNOUNCED-BY", "MODE", "ENDPOINTS", "REASON"],
        ["default", "cart", "198.18.10.2", "web", "-", "-", "0/0", "-"],
        ["default", "shop", "198.18.10.1", "web", "node-2", "kernel", "2/3", "-"],
        [
            "default",
            "waiting",
            "<pending>",
            "-",
            "-",
            "-",
            "0/0",
            "AllocationFailed: NoAvailableIPs: no free address",
        ],
    ]
    code, out, _ = run(capsys, *k, "services", "-o", "wide", "-n", "default")
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[-3:] == ["PORTS", "TRAFFIC-POLICY", "AGE"]
    assert "80/TCP" in out.splitlines()[2]
    code, out, _ = run(capsys, *k, "services", "-n", "elsewhere")
    assert (code, out.strip()) == (0, "No LoadBalancer Services found in namespace elsewhere.")
    code, out, _ = run(capsys, *k, "services", "-A", "-o", "json")
    assert len(json.loads(out)["items"]) == 3
    code, out, _ = run(capsys, *k, "pool", "show", "web", "-o", "wide")
    assert code == 0 and "ENDPOINTS" in out and "kernel" in out

    write_lease(api, timedelta(seconds=0))
    code, out, err = run(capsys, *k, "status")
    assert code == 1
    assert "1 LoadBalancer Service(s) without an address: default/waiting" in err
    code, out, err = run(capsys, *k, "status", "-o", "json")
    verdict = json.loads(out)
    assert code == 1 and verdict["healthy"] is False
    assert any("default/waiting" in p for p in verdict["problems"])
    assert any(c.startswith("Controller: leader") for c in verdict["checks"])


def test_status_lease_namespace_flag(
    kc: Path, api: client.ApiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lease(api, timedelta(seconds=0), ns="lb")
    assert run(capsys, "--kubeconfig", str(kc), "status")[0] == 1
    code, out, err = run(capsys, "--kubeconfig", str(kc), "status", "--namespace", "lb")
    assert code == 0, err
    assert "0 total, 0 Ready, 0 Invalid" in out


def test_without_crd_commands_say_so(
    api_thread_kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--kubeconfig", str(api_thread_kubeconfig), "pool", "list")
    assert code == 1
    assert "CRD ipaddresspools.ironlb.io missing" in err


def test_missing_kubeconfig_and_context(
    tmp_path: Path, api_thread_kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--kubeconfig", str(tmp_path / "nope"), "services")
    assert code == 1 and "kubeconfig file" in err and "not found" in err
    code, _, err = run(
        capsys, "--kubeconfig", str(api_thread_kubeconfig), "--context", "nosuch", "services"
    )
    assert code == 1 and err.startswith("lbctl: cannot load") and "nosuch" in err


# --- lbctl import metallb ------------------------------------------------------------------------

METALLB = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec:
  addresses: [198.18.70.0/28, "fd00:198:18:70::/124"]
  avoidBuggyIPs: true
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan, namespace: metallb-system}
spec:
  ipAddressPools: [lan]
  interfaces: [eth0]
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: router, namespace: metallb-system}
spec: {myASN: 64500, peerASN: 64501, peerAddress: 198.18.70.254}
"""


def test_import_metallb_prints_offline_and_applies(
    kc: Path, api: client.ApiClient, tmp_path: Path
) -> None:
    manifest = tmp_path / "metallb.yaml"
    manifest.write_text(METALLB)
    # Printing needs no cluster at all.
    offline = subprocess.run(
        [str(LBCTL), "--kubeconfig", str(tmp_path / "missing"), "import", "metallb", "-f", "-"],
        input=METALLB,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert offline.returncode == 0, offline.stderr
    printed = yaml.safe_load(offline.stdout)
    assert printed["kind"] == "IPAddressPool" and printed["metadata"] == {"name": "lan"}
    assert printed["spec"]["l2"] == {"interfaces": ["eth0"]}
    assert "lbctl: note: BGPPeer router: not carried over" in offline.stderr
    assert pools(api) == {}

    applied = lbctl(kc, "import", "metallb", "-f", str(manifest), "--apply")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == "ipaddresspool.ironlb.io/lan created"
    stored = pools(api)["lan"]["spec"]
    assert stored["avoidBuggyIPs"] is True and stored["l2"] == {"interfaces": ["eth0"]}

    # Again: refused whole, nothing changed.
    again = lbctl(kc, "import", "metallb", "-f", str(manifest), "--apply")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        "lbctl: IPAddressPool 'lan' already exists; nothing created"
    )


def test_import_metallb_refusals_create_nothing(
    kc: Path, api: client.ApiClient, tmp_path: Path
) -> None:
    lbctl(kc, "pool", "create", "taken", "--addresses", "198.18.71.0/28")
    clash = tmp_path / "clash.yaml"
    clash.write_text(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: ok}\n"
        "spec: {addresses: [198.18.72.0/28]}\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: overlapping}\n"
        "spec: {addresses: [198.18.71.8/29]}\n"
    )
    out = lbctl(kc, "import", "metallb", "-f", str(clash), "--apply")
    assert out.returncode == 2
    assert "overlap" in out.stderr and "nothing created" in out.stderr, out.stderr
    assert set(pools(api)) == {"taken"}

    cases = {
        "bad.yaml": ("kind: [unclosed\n", "not valid YAML at line"),
        "host-bits.yaml": (
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: hb}\n"
            "spec: {addresses: [198.18.73.1/24]}\n",
            "pool 'hb' cannot be converted",
        ),
        "empty.yaml": ("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n", "no MetalLB"),
    }
    for filename, (text, words) in cases.items():
        path = tmp_path / filename
        path.write_text(text)
        out = lbctl(kc, "import", "metallb", "-f", str(path), "--apply")
        assert out.returncode == 2, (filename, out.stderr)
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("lbctl: ") and words in last, (filename, out.stderr)
        assert "Traceback" not in out.stderr
    missing = lbctl(kc, "import", "metallb", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert set(pools(api)) == {"taken"}


# --- version, kubectl plugin, completion ---------------------------------------------------------


def test_version_and_kubectl_plugin(tmp_path: Path) -> None:
    from ironlb import __version__

    own = subprocess.run([str(LBCTL), "--version"], capture_output=True, text=True, check=False)
    assert own.returncode == 0 and own.stdout.strip() == f"lbctl (ironlb) {__version__}"
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (the plugin check needs it)")
    env = {**os.environ, "PATH": f"{LBCTL.parent}:{os.environ.get('PATH', '')}"}
    plugin = subprocess.run(
        [kubectl, "lb", "--version"], capture_output=True, text=True, env=env, check=False
    )
    assert plugin.returncode == 0, plugin.stderr
    assert plugin.stdout.strip() == f"lbctl (ironlb) {__version__}"
    usage = subprocess.run([kubectl, "lb"], capture_output=True, text=True, env=env, check=False)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: kubectl lb")


def test_bash_completion_completes_commands_and_subcommands() -> None:
    script = subprocess.run(
        [str(LBCTL), "completion", "bash"], capture_output=True, text=True, check=True
    ).stdout

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        program = (
            f"{script}\n"
            f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
            f'COMP_LINE="{line}"; COMP_POINT={len(line)}; '
            f"_python_argcomplete lbctl {words[-1]} {words[-2]}; "
            'printf "%s\\n" "${COMPREPLY[@]}"'
        )
        env = {**os.environ, "PATH": f"{LBCTL.parent}:{os.environ.get('PATH', '')}"}
        out = subprocess.run(
            ["bash", "-c", program], capture_output=True, text=True, env=env, check=True
        )
        return sorted(w.strip() for w in out.stdout.split("\n") if w.strip())

    assert complete("lbctl", "po") == ["pool"]
    assert complete("lbctl", "pool", "cr") == ["create"]
    assert [w for w in complete("lbctl", "import", "") if not w.startswith("-")] == ["metallb"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_get_a_script_they_parse(shell: str, tmp_path: Path) -> None:
    script = subprocess.run(
        [str(LBCTL), "completion", shell], capture_output=True, text=True, check=True
    ).stdout
    assert "lbctl" in script
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed: its script is printed but not parsed here")
    path = tmp_path / f"lbctl.{shell}"
    path.write_text(script)
    checked = subprocess.run([binary, "-n", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("bad", ["NOPE_", "Shop", "-shop", "a" * 64, ""])
def test_pool_create_refuses_invalid_namespace_names(
    kc: Path, api: client.ApiClient, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    code, out, err = run(
        capsys,
        "--kubeconfig",
        str(kc),
        "pool",
        "create",
        "p",
        "--addresses",
        "198.18.10.0/28",
        "--namespace",
        "ok",
        f"--namespace={bad}",
    )
    assert (code, out) == (2, "")
    assert err.startswith(f"lbctl: --namespace {bad!r} is not a namespace name: ")
    assert err.count("\n") == 1
    assert pools(api) == {}
