"""The Helm chart charts/ironlb, rendered offline by the Helm v4 engine (helm-python-sdk).

Every rendered object is checked against the Kubernetes 1.32 schemas
(kubernetes-validate, strict: unknown fields fail), the chart's pools against
the IPAddressPool CRD's own schema, the container arguments against the real
``ironlb`` argument parsers, and the webhook certificate with a real TLS
handshake on loopback.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from ironlb.cli import build_parser
from ironlb.lab.apiserver.schema import apply_schema, version_schema
from ironlb.lbctl.doctor import SPEAKER_DAEMONSET
from ironlb.operator.controller_runtime import LEASE_NAME
from ironlb.operator.kopf_handlers import VALIDATE_POOL_ID
from ironlb.operator.webhook import pool_admission_problem
from ironlb.speaker.heartbeat import heartbeat_key_from_secret
from ironlb.speaker.runtime import HEARTBEAT_SECRET
from tests.chart.chart_support import (
    CHART,
    CRD,
    NAMESPACE,
    Obj,
    all_values,
    by_kind,
    notes,
    one,
    render,
)

KUBE_VERSION = "1.32.0"
# Kinds from CRDs that are not ironlb's: no schema for them here (cert-manager,
# Prometheus Operator); their few fields are asserted by hand below.
FOREIGN = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
# Values whose default the all-values file keeps, because the non-default value
# switches off what the other values configure; VARIANTS render the other side.
KEPT_DEFAULTS = {"webhook.enabled", "speaker.metrics.enabled"}

VARIANTS: dict[str, dict[str, Any] | None] = {
    "defaults": None,
    "all-values": all_values(),
    "webhook-off": {"webhook": {"enabled": False}},
    "cert-manager-self-signed": {"webhook": {"certManager": {"enabled": True}}},
    "speaker-metrics-off": {"speaker": {"metrics": {"enabled": False}}},
}


def leaves(values: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted path -> value for every leaf (lists and empty maps are leaves)."""
    if isinstance(values, dict) and values:
        out: dict[str, Any] = {}
        for key, value in values.items():
            out.update(leaves(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): values}


def container(workload: Obj, name: str, *, init: bool = False) -> Obj:
    spec = workload["spec"]["template"]["spec"]
    found: dict[str, Obj] = {
        c["name"]: c for c in spec.get("initContainers" if init else "containers", [])
    }
    assert name in found, f"no container {name} in {workload['metadata']['name']}"
    return found[name]


def parsed_args(c: Obj) -> Any:
    """The container's command line as the real ``ironlb`` parser reads it."""
    assert c["command"][0] == "ironlb"
    return build_parser().parse_args([*c["command"][1:], *c["args"]])


# -- lint, schemas ------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lint_is_clean(variant: str) -> None:
    report = helm.lint(CHART, VARIANTS[variant], strict=True, kube_version="v1.32.0")
    assert report["errors"] == []
    # Only the informational "icon is recommended" may remain.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_all_values_file_sets_every_value_to_a_non_default() -> None:
    defaults = leaves(yaml.safe_load((CHART / "values.yaml").read_text()))
    given = leaves(all_values())
    # An empty map by default ({}) is covered by any key under it.
    missing = sorted(
        k for k in defaults if k not in given and not any(g.startswith(f"{k}.") for g in given)
    )
    assert missing == [], f"values-all.yaml leaves these at the default: {missing}"
    same = sorted(
        k for k in defaults if k in given and given[k] == defaults[k] and k not in KEPT_DEFAULTS
    )
    assert same == [], f"values-all.yaml sets these to their default: {same}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_is_valid_kubernetes_1_32(variant: str) -> None:
    objs = render(VARIANTS[variant])
    crd_schema = version_schema(yaml.safe_load(CRD.read_text()), "v1alpha1")
    assert crd_schema is not None
    for obj in objs:
        kind = (obj["apiVersion"], obj["kind"])
        label = f"{obj['kind']} {obj['metadata']['name']}"
        if kind == ("ironlb.io/v1alpha1", "IPAddressPool"):
            unknown: list[str] = []
            _, errors = apply_schema(obj, crd_schema, unknown)
            assert (errors, unknown) == ([], []), label
        elif kind not in FOREIGN:
            try:
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{label}: {exc.message} at {list(exc.path)}")
        labels = obj["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by", "part-of"):
            assert f"app.kubernetes.io/{key}" in labels, label


def test_the_validator_refuses_a_broken_object() -> None:
    """The check above can fail: an unknown field and a wrong type are refused."""
    objs = render()
    ds = one(objs, "DaemonSet", "ironlb-speaker")
    ds["spec"]["template"]["spec"]["hostNetwrk"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, KUBE_VERSION, strict=True)
    deployment = one(objs, "Deployment", "ironlb-controller")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"controller": {"replicas": "two"}}, "/controller/replicas"),
        ({"controller": {"replicas": 0}}, "/controller/replicas"),
        ({"speaker": {"forwardingMode": "nat"}}, "/speaker/forwardingMode"),
        ({"speaker": {"forwardingmode": "kernel"}}, "forwardingmode"),
        ({"speaker": {"heartbeatPort": 70000}}, "/speaker/heartbeatPort"),
        ({"speaker": {"interfaces": ["eth0,eth1"]}}, "/speaker/interfaces/0"),
        ({"logLevel": "verbose"}, "/logLevel"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"webhook": {"failurePolicy": "fail"}}, "/webhook/failurePolicy"),
        ({"pools": [{"name": "Web", "addresses": ["198.18.10.0/24"]}]}, "/pools/0/name"),
        ({"pools": [{"name": "web"}]}, "/pools/0"),
    ],
)
def test_values_schema_refuses_bad_values(values: dict[str, Any], where: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as caught:
        chart.render(values, name="ironlb", namespace=NAMESPACE)
    assert where in str(caught.value)


# -- what the workloads run ------------------------------------------------------------


def test_names_are_the_ones_the_code_looks_for() -> None:
    objs = render()
    one(objs, "Deployment", "ironlb-controller")
    one(objs, "DaemonSet", SPEAKER_DAEMONSET)
    secret = one(objs, "Secret", HEARTBEAT_SECRET)
    assert len(heartbeat_key_from_secret(secret, NAMESPACE)) >= 32
    role = one(objs, "Role", "ironlb-controller")
    named = [r for r in role["rules"] if r.get("resourceNames")]
    assert [r["resourceNames"] for r in named] == [[LEASE_NAME]]
    webhook = one(objs, "ValidatingWebhookConfiguration", "ironlb-webhook")["webhooks"][0]
    assert webhook["clientConfig"]["service"]["path"] == f"/{VALIDATE_POOL_ID}"
    assert {o["metadata"].get("namespace", NAMESPACE) for o in objs} == {NAMESPACE}


def test_names_do_not_follow_the_release_but_the_namespace_does() -> None:
    objs = render(release="lb", namespace="lb-system")
    assert one(objs, "Deployment", "ironlb-controller")["metadata"]["namespace"] == "lb-system"
    assert (
        one(objs, "DaemonSet", SPEAKER_DAEMONSET)["metadata"]["labels"][
            "app.kubernetes.io/instance"
        ]
        == "lb"
    )
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in by_kind(objs, kind).values():
            assert binding["subjects"][0]["namespace"] == "lb-system"
    hook = one(objs, "ValidatingWebhookConfiguration", "ironlb-webhook")["webhooks"][0]
    assert hook["clientConfig"]["service"]["namespace"] == "lb-system"
    assert "lbctl doctor --namespace lb-system" in notes_for("lb-system")


def test_heartbeat_key_is_random_per_install() -> None:
    first = one(render(), "Secret", HEARTBEAT_SECRET)["data"]["key"]
    second = one(render(), "Secret", HEARTBEAT_SECRET)["data"]["key"]
    assert first != second


def test_default_args_are_real_flags_with_the_documented_defaults() -> None:
    objs = render()
    controller = parsed_args(container(one(objs, "Deployment", "ironlb-controller"), "controller"))
    assert controller.webhook_port == 9443
    assert controller.webhook_cert == "/etc/ironlb/webhook/tls.crt"
    assert controller.metrics_address == "0.0.0.0:7472"
    assert not controller.ignore_unset_class
    speaker = parsed_args(container(one(objs, "DaemonSet", "ironlb-speaker"), "speaker"))
    assert speaker.forwarding_mode == "proxy"
    assert speaker.interfaces == ""
    assert speaker.metrics_address == "0.0.0.0:7472"


def test_every_value_reaches_the_objects() -> None:
    values = all_values()
    objs = render(values)
    deployment = one(objs, "Deployment", "ironlb-controller")
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment, "controller")
    args = parsed_args(c)
    assert c["image"] == "registry.example.test/ironlb/ironlb:0.1.0-test"
    assert c["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert (args.log_level, args.log_format) == ("debug", "json")
    assert (args.load_balancer_class, args.ignore_unset_class) == ("example.test/lb", True)
    assert (args.lease_duration, args.webhook_port) == (20, 9444)
    assert args.metrics_address == "0.0.0.0:7482"
    assert deployment["spec"]["replicas"] == 3
    anti = pod["affinity"]["podAntiAffinity"]
    assert list(anti) == ["requiredDuringSchedulingIgnoredDuringExecution"]
    assert c["resources"] == values["controller"]["resources"]
    assert pod["nodeSelector"] == values["controller"]["nodeSelector"]
    assert pod["tolerations"] == values["controller"]["tolerations"]
    assert pod["priorityClassName"] == "system-cluster-critical"

    ds = one(objs, "DaemonSet", "ironlb-speaker")
    pod = ds["spec"]["template"]["spec"]
    s = container(ds, "speaker")
    args = parsed_args(s)
    assert (args.forwarding_mode, args.heartbeat_port, args.interfaces) == (
        "kernel",
        7483,
        "eth0,bond0",
    )
    assert (args.drain_seconds, args.workers, args.lease_duration) == (45, 2, 12)
    assert (args.log_level, args.load_balancer_class, args.ignore_unset_class) == (
        "debug",
        "example.test/lb",
        True,
    )
    assert args.metrics_address == "0.0.0.0:7484"
    assert pod["terminationGracePeriodSeconds"] > 45
    assert "initContainers" not in pod
    assert pod["tolerations"][0]["key"] == "node-role.kubernetes.io/control-plane"
    assert pod["tolerations"][1:] == values["speaker"]["tolerations"]
    assert pod["nodeSelector"] == values["speaker"]["nodeSelector"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert s["resources"] == values["speaker"]["resources"]

    webhook = one(objs, "ValidatingWebhookConfiguration", "ironlb-webhook")
    hook = webhook["webhooks"][0]
    assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Ignore", 5)
    assert "caBundle" not in hook["clientConfig"]
    assert webhook["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{NAMESPACE}/ironlb-webhook"
    }
    cert = one(objs, "Certificate", "ironlb-webhook")
    assert cert["spec"]["issuerRef"] == values["webhook"]["certManager"]["issuerRef"]
    assert cert["spec"]["secretName"] == "ironlb-webhook-tls"
    assert "ironlb-webhook.ironlb-system.svc" in cert["spec"]["dnsNames"]
    assert by_kind(objs, "Issuer") == {}
    assert "ironlb-webhook-tls" not in by_kind(objs, "Secret")  # cert-manager writes it

    monitor = one(objs, "ServiceMonitor", "ironlb")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    selected = {
        name
        for name, svc in by_kind(objs, "Service").items()
        if monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    }
    assert selected == {"ironlb-controller-metrics", "ironlb-speaker-metrics"}
    speaker_metrics = one(objs, "Service", "ironlb-speaker-metrics")
    assert speaker_metrics["spec"]["ports"][0]["port"] == 7484

    pools = by_kind(objs, "IPAddressPool")
    assert sorted(pools) == ["spare", "web"]
    for pool in values["pools"]:
        spec = {k: v for k, v in pool.items() if k != "name"}
        assert pools[pool["name"]]["spec"] == spec


def test_variants_switch_pieces_off_and_on() -> None:
    off = render(VARIANTS["webhook-off"])
    assert by_kind(off, "ValidatingWebhookConfiguration") == {}
    assert "ironlb-webhook" not in by_kind(off, "Service")
    args = parsed_args(container(one(off, "Deployment", "ironlb-controller"), "controller"))
    assert args.webhook_port is None and args.webhook_cert is None
    assert [
        v["name"]
        for v in one(off, "Deployment", "ironlb-controller")["spec"]["template"]["spec"]["volumes"]
    ] == ["tmp"]

    self_signed = render(VARIANTS["cert-manager-self-signed"])
    issuer = one(self_signed, "Issuer", "ironlb-selfsigned")
    assert issuer["spec"] == {"selfSigned": {}}
    ref = one(self_signed, "Certificate", "ironlb-webhook")["spec"]["issuerRef"]
    assert ref == {"name": "ironlb-selfsigned", "kind": "Issuer", "group": "cert-manager.io"}

    quiet = render(VARIANTS["speaker-metrics-off"])
    assert "ironlb-speaker-metrics" not in by_kind(quiet, "Service")
    speaker = container(one(quiet, "DaemonSet", "ironlb-speaker"), "speaker")
    assert parsed_args(speaker).metrics_address is None
    assert [p["name"] for p in speaker["ports"]] == ["heartbeat"]

    defaults = render()
    assert by_kind(defaults, "ServiceMonitor") == {}
    assert by_kind(defaults, "IPAddressPool") == {}


# -- security ---------------------------------------------------------------------------


def test_speaker_runs_with_net_admin_and_net_raw_only() -> None:
    ds = one(render(), "DaemonSet", "ironlb-speaker")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert "tolerations" not in pod  # control-plane nodes are off by default
    s = container(ds, "speaker")
    ctx = s["securityContext"]
    assert ctx["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert "privileged" not in ctx
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in s["env"]}
    assert env == {"NODE_NAME": "spec.nodeName", "POD_NAMESPACE": "metadata.namespace"}
    # The one privileged piece: the init container that raises two ARP sysctls.
    init = container(ds, "arp-sysctls", init=True)
    assert init["securityContext"]["privileged"] is True
    assert "arp_ignore 1" in init["command"][-1] and "arp_announce 2" in init["command"][-1]


def test_controller_runs_unprivileged() -> None:
    deployment = one(render(), "Deployment", "ironlb-controller")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert "hostNetwork" not in pod
    ctx = container(deployment, "controller")["securityContext"]
    assert ctx == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    env = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container(deployment, "controller")["env"]
    }
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    term = anti[0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["replicas"] == 2
    pdb = one(render(), "PodDisruptionBudget", "ironlb-controller")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("variant", ["defaults", "all-values"])
def test_rbac_has_no_wildcards_and_one_account_per_process(variant: str) -> None:
    objs = render(VARIANTS[variant])
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objs if o["kind"].endswith("Role")}
    assert sorted(roles) == [
        ("ClusterRole", "ironlb-controller"),
        ("ClusterRole", "ironlb-speaker"),
        ("Role", "ironlb-controller"),
        ("Role", "ironlb-speaker"),
    ]
    for key, role in roles.items():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (key, rule)
                assert all("*" not in item for item in rule[field]), (key, rule)
            assert not set(rule["verbs"]) & {"delete", "deletecollection", "escalate", "bind"}
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for name, binding in by_kind(objs, kind).items():
            assert binding["roleRef"]["name"] == name
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}
            ]
    for process in ("controller", "speaker"):
        for kind in ("Deployment", "DaemonSet"):
            workload = by_kind(objs, kind).get(f"ironlb-{process}")
            if workload is not None:
                spec = workload["spec"]["template"]["spec"]
                assert spec["serviceAccountName"] == f"ironlb-{process}"
    # Secrets: the speaker reads only the heartbeat key; the controller none.
    secret_rules = [
        (key, rule)
        for key, role in roles.items()
        for rule in role["rules"]
        if "secrets" in rule["resources"]
    ]
    assert secret_rules == [
        (
            ("Role", "ironlb-speaker"),
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [HEARTBEAT_SECRET],
                "verbs": ["get"],
            },
        ),
    ]


# -- the webhook certificate --------------------------------------------------------------


def _serve_once(context: ssl.SSLContext, listener: socket.socket, done: list[str]) -> None:
    conn, _ = listener.accept()
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"ok")
            done.append("served")
    except (ssl.SSLError, OSError) as exc:
        done.append(f"refused: {exc}")


def _handshake(tmp_path: Path, secret: Obj, ca_bundle: str, server_name: str) -> bytes:
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    crt.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    key.write_bytes(base64.b64decode(secret["data"]["tls.key"]))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(crt, key)
    client = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode())
    with socket.create_server(("127.0.0.1", 0)) as listener:
        done: list[str] = []
        thread = threading.Thread(target=_serve_once, args=(server, listener, done), daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=5) as raw,
                client.wrap_socket(raw, server_hostname=server_name) as tls,
            ):
                return tls.recv(2)
        finally:
            thread.join(5)


def test_generated_certificate_is_trusted_for_the_webhook_service(tmp_path: Path) -> None:
    objs = render()
    secret = one(objs, "Secret", "ironlb-webhook-tls")
    hook = one(objs, "ValidatingWebhookConfiguration", "ironlb-webhook")["webhooks"][0]
    assert secret["data"]["ca.crt"] == hook["clientConfig"]["caBundle"]
    service = hook["clientConfig"]["service"]
    name = f"{service['name']}.{service['namespace']}.svc"
    assert _handshake(tmp_path, secret, hook["clientConfig"]["caBundle"], name) == b"ok"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tmp_path, secret, hook["clientConfig"]["caBundle"], "ironlb-webhook.other.svc")
    other_ca = one(render(), "Secret", "ironlb-webhook-tls")["data"]["ca.crt"]
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tmp_path, secret, other_ca, name)


def test_webhook_service_reaches_the_controller_port() -> None:
    objs = render(all_values())
    svc = one(objs, "Service", "ironlb-webhook")
    deployment = one(objs, "Deployment", "ironlb-controller")
    ports = {p["name"]: p["containerPort"] for p in container(deployment, "controller")["ports"]}
    assert ports["webhook"] == 9444
    assert svc["spec"]["ports"][0]["targetPort"] == "webhook"
    assert (
        svc["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


# -- pools and notes ------------------------------------------------------------------------


def test_pools_from_values_pass_the_webhook_rules_and_skip_the_webhook() -> None:
    objs = render(all_values())
    pools = by_kind(objs, "IPAddressPool")
    for name, pool in pools.items():
        others = [(n, p["spec"]) for n, p in pools.items() if n != name]
        assert pool_admission_problem(name, pool["spec"], others) is None
    hook = one(objs, "ValidatingWebhookConfiguration", "ironlb-webhook")["webhooks"][0]
    (skip,) = hook["objectSelector"]["matchExpressions"]
    assert skip["operator"] == "DoesNotExist"
    assert all(skip["key"] in pool["metadata"]["labels"] for pool in pools.values())


def test_a_pool_against_the_crd_schema_can_fail() -> None:
    """The CRD check in test_every_object_is_valid_kubernetes_1_32 refuses a bad pool."""
    bad = {"pools": [{"name": "web", "addresses": ["198.18.10.0/24"], "autoAssign": "yes"}]}
    pool = one(render(bad), "IPAddressPool", "web")
    schema = version_schema(yaml.safe_load(CRD.read_text()), "v1alpha1")
    assert schema is not None
    _, errors = apply_schema(pool, schema)
    assert [field for field, _ in errors] == ["spec.autoAssign"]


def notes_for(namespace: str) -> str:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(None, name="lb", namespace=namespace, is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def test_notes_say_the_next_step() -> None:
    assert "lbctl pool create" in notes()
    assert "lbctl doctor --namespace ironlb-system" in notes()
    with_pools = notes(all_values())
    assert "Pools created: web, spare." in with_pools
    assert "lbctl pool create" not in with_pools
