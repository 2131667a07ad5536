"""kubectl against the local API server: create/apply (server-side field validation via the
OpenAPI v3 index), strategic-merge apply, server-side printing (Tables), status patches,
finalizers. Skipped where kubectl is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cluster.apiserver_helpers import run_kubectl

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: web, labels: {{app: web}}}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: {port}, targetPort: 8080}}]
"""

POOL_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: ipaddresspools.ironlb.io}
spec:
  group: ironlb.io
  scope: Cluster
  names: {plural: ipaddresspools, singular: ipaddresspool, kind: IPAddressPool, shortNames: [pool]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    additionalPrinterColumns:
    - {name: Addresses, type: string, jsonPath: .spec.addresses}
    - {name: Used, type: integer, jsonPath: .status.used}
"""

POOL = """\
apiVersion: ironlb.io/v1alpha1
kind: IPAddressPool
metadata: {name: p1}
spec: {addresses: [198.18.0.0/28]}
"""


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    result = run_kubectl(kubeconfig, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_services(api_thread_kubeconfig: Path) -> None:
    kc = api_thread_kubeconfig
    assert "default" in kubectl(kc, "get", "namespaces", "-o", "name")
    kubectl(kc, "apply", "-f", "-", stdin=SERVICE.format(port=80))
    kubectl(kc, "apply", "-f", "-", stdin=SERVICE.format(port=81))
    svc = json.loads(kubectl(kc, "get", "service", "web", "-o", "json"))
    assert [p["port"] for p in svc["spec"]["ports"]] == [81]  # port 80 removed by $patch: delete
    assert not any(key.startswith("$") for key in svc["spec"])

    kubectl(
        kc,
        "patch",
        "service",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"loadBalancer":{"ingress":[{"ip":"198.18.0.1"}]}}}',
    )
    table = kubectl(kc, "get", "services")
    header, row = table.splitlines()
    assert header.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert row.split()[:4] == ["web", "LoadBalancer", svc["spec"]["clusterIP"], "198.18.0.1"]
    assert row.split()[4] == f"81:{svc['spec']['ports'][0]['nodePort']}/TCP"

    kubectl(kc, "patch", "service", "web", "-p", '{"metadata":{"finalizers":["lab/x"]}}')
    kubectl(kc, "delete", "service", "web", "--wait=false")
    held = json.loads(kubectl(kc, "get", "service", "web", "-o", "json"))
    assert held["metadata"]["deletionTimestamp"]
    kubectl(
        kc,
        "patch",
        "service",
        "web",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    assert (
        "No resources found"
        in subprocess.run(
            ["kubectl", f"--kubeconfig={kc}", "get", "services"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stderr
    )


def test_kubectl_crd_printer_columns(api_thread_kubeconfig: Path) -> None:
    kc = api_thread_kubeconfig
    kubectl(kc, "apply", "-f", "-", stdin=POOL_CRD)
    kubectl(kc, "apply", "-f", "-", stdin=POOL)
    kubectl(
        kc,
        "patch",
        "pool",
        "p1",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"used":3}}',
    )
    header, row = kubectl(kc, "get", "ipaddresspools").splitlines()
    assert header.split() == ["NAME", "ADDRESSES", "USED"]
    assert row.split() == ["p1", '["198.18.0.0/28"]', "3"]
    resources = kubectl(kc, "api-resources", "--api-group=ironlb.io")
    assert "ipaddresspools" in resources and "pool" in resources


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]}
"""

EVENT = """\
apiVersion: v1
kind: Event
metadata: {name: web.1}
type: Normal
reason: IPAllocated
message: Assigned IP 198.18.0.10
involvedObject: {kind: Service, name: web, namespace: default}
lastTimestamp: "2026-01-01T00:00:00Z"
"""


def test_kubectl_expose_and_events(api_thread_kubeconfig: Path) -> None:
    kc = api_thread_kubeconfig
    kubectl(kc, "apply", "-f", "-", stdin=DEPLOYMENT)
    assert "service/web exposed" in kubectl(
        kc, "expose", "deployment", "web", "--type=LoadBalancer", "--port=80"
    )
    svc = json.loads(kubectl(kc, "get", "service", "web", "-o", "json"))
    assert svc["spec"]["selector"] == {"app": "web"}
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["ports"][0]["nodePort"]
    kubectl(kc, "create", "-f", "-", stdin=EVENT)
    header, row = kubectl(kc, "get", "events").splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert row.split()[1:] == [
        "Normal",
        "IPAllocated",
        "service/web",
        "Assigned",
        "IP",
        "198.18.0.10",
    ]


CHART_CRD = (
    Path(__file__).parents[2] / "charts" / "ironlb" / "crds" / "ipaddresspools.ironlb.io.yaml"
)


def test_kubectl_explain_reads_the_crd_schema(api_thread_kubeconfig: Path) -> None:
    """Issue 9: ``kubectl explain`` works on custom resources (OpenAPI v3 schemas)."""
    kc = api_thread_kubeconfig
    kubectl(kc, "apply", "-f", str(CHART_CRD))
    spec = kubectl(kc, "explain", "ipaddresspool.spec")
    assert "KIND:       IPAddressPool" in spec
    assert "addresses\t<[]string> -required-" in spec
    assert "avoidBuggyIPs\t<boolean>" in spec
    assert "<Object>" in kubectl(kc, "explain", "ipaddresspools.ironlb.io.spec.l2")
    missing = run_kubectl(kc, "explain", "ipaddresspool.spec.nosuchfield")
    assert missing.returncode != 0 and "nosuchfield" in missing.stderr


def test_kubectl_get_all_lists_the_all_category(api_thread_kubeconfig: Path) -> None:
    """Issue 9: ``kubectl get all`` (the ``all`` category of the discovery documents)."""
    kc = api_thread_kubeconfig
    kubectl(kc, "create", "deployment", "web", "--image=nginx")
    kubectl(kc, "create", "service", "clusterip", "web", "--tcp=80")
    listed = kubectl(kc, "get", "all", "-o", "name")
    assert set(listed.split()) >= {"service/web", "deployment.apps/web"}, listed
    assert "secret" not in listed and "configmap" not in listed


CHART_KINDS = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: lab-reader}
rules: [{apiGroups: [""], resources: [services], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: lab-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: lab-reader}
subjects: [{kind: ServiceAccount, name: reader, namespace: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: lab-leases, namespace: default}
rules: [{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, update]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: lab-leases, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: lab-leases}
subjects: [{kind: ServiceAccount, name: reader, namespace: default}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec: {maxUnavailable: 1, selector: {matchLabels: {app: web}}}
"""


def test_kubectl_applies_the_rbac_and_pdb_kinds_a_chart_installs(
    api_thread_kubeconfig: Path,
) -> None:
    kc = api_thread_kubeconfig
    created = kubectl(kc, "apply", "--server-side", "-f", "-", stdin=CHART_KINDS)
    assert (
        created.split("\n")[0]
        == "clusterrole.rbac.authorization.k8s.io/lab-reader serverside-applied"
    )
    assert "poddisruptionbudget.policy/web serverside-applied" in created
    role = json.loads(kubectl(kc, "get", "clusterrole", "lab-reader", "-o", "json"))
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}
    ]
    assert "namespace" not in role["metadata"]  # cluster-scoped
    binding = json.loads(kubectl(kc, "get", "rolebinding", "lab-leases", "-o", "json"))
    assert binding["roleRef"]["name"] == "lab-leases"
    pdb = json.loads(kubectl(kc, "get", "pdb", "web", "-o", "json"))
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "pdb" in kubectl(kc, "api-resources", "--api-group=policy")
    kubectl(kc, "delete", "-f", "-", stdin=CHART_KINDS)
    left = subprocess.run(
        ["kubectl", f"--kubeconfig={kc}", "get", "pdb,roles,rolebindings", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert left.returncode == 0 and left.stdout == ""
