"""MetalLB manifests (the documented examples) converted to ironlb pools, and the
addresses those pools hand out compared with MetalLB's rules."""

from __future__ import annotations

import ipaddress
import textwrap
from typing import Any

import pytest

from ironlb.lbctl.metallb import Conversion, DocumentError, convert, load_documents
from ironlb.operator.allocator import Allocator, ServiceKey, ServiceRequest
from ironlb.operator.pools import parse_pool

# MetalLB's documentation examples ("Configuration", "Advanced AddressPool configuration",
# "Advanced L2 configuration"), as a user would have them in one file.
DOCUMENTED = textwrap.dedent(
    """
    apiVersion: metallb.io/v1beta1
    kind: IPAddressPool
    metadata:
      name: first-pool
      namespace: metallb-system
    spec:
      addresses:
      - 192.168.10.0/24
      - 192.168.9.1-192.168.9.5
      - fc00:f853:0ccd:e799::/124
    ---
    apiVersion: metallb.io/v1beta1
    kind: IPAddressPool
    metadata:
      name: expensive
      namespace: metallb-system
      labels:
        tier: premium
    spec:
      addresses:
      - 42.176.25.64/30
      autoAssign: false
    ---
    apiVersion: metallb.io/v1beta1
    kind: IPAddressPool
    metadata:
      name: cheap
      namespace: metallb-system
    spec:
      addresses:
      - 192.168.144.0/20
      avoidBuggyIPs: true
      serviceAllocation:
        priority: 50
        namespaces:
        - namespace-a
        - namespace-b
        namespaceSelectors:
        - matchLabels:
            foo: bar
        serviceSelectors:
        - matchExpressions:
          - {key: app, operator: In, values: [bar]}
    ---
    apiVersion: metallb.io/v1beta1
    kind: L2Advertisement
    metadata:
      name: example
      namespace: metallb-system
    spec:
      ipAddressPools:
      - first-pool
      nodeSelectors:
      - matchLabels:
          kubernetes.io/hostname: NodeA
      - matchLabels:
          kubernetes.io/hostname: NodeB
      interfaces:
      - eth3
      - eth4
    ---
    apiVersion: metallb.io/v1beta1
    kind: L2Advertisement
    metadata:
      name: premium
      namespace: metallb-system
    spec:
      ipAddressPoolSelectors:
      - matchLabels:
          tier: premium
    ---
    apiVersion: metallb.io/v1beta2
    kind: BGPPeer
    metadata:
      name: sample
      namespace: metallb-system
    spec:
      myASN: 64500
      peerASN: 64501
      peerAddress: 10.0.0.1
    ---
    apiVersion: metallb.io/v1beta1
    kind: BGPAdvertisement
    metadata:
      name: external
      namespace: metallb-system
    """
)

LEGACY = textwrap.dedent(
    """
    apiVersion: v1
    kind: ConfigMap
    metadata:
      namespace: metallb-system
      name: config
    data:
      config: |
        peers:
        - peer-address: 10.0.0.1
          peer-asn: 64501
          my-asn: 64500
        address-pools:
        - name: default
          protocol: layer2
          addresses:
          - 192.168.1.240-192.168.1.250
          avoid-buggy-ips: true
        - name: manual
          protocol: layer2
          auto-assign: false
          addresses:
          - 192.168.2.0/24
        - name: bgp-pool
          protocol: bgp
          addresses:
          - 198.51.100.0/24
    """
)


def by_name(result: Conversion) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in result.pools}


def test_documented_manifests_convert_with_scope_and_notes() -> None:
    result = convert(load_documents(DOCUMENTED))
    assert result.errors == []
    pools = by_name(result)
    assert list(pools) == ["first-pool", "expensive", "cheap"]
    first = pools["first-pool"]
    assert first["apiVersion"] == "ironlb.io/v1alpha1"
    assert "namespace" not in first["metadata"]  # ironlb pools are cluster-scoped
    assert first["spec"] == {
        "addresses": ["192.168.10.0/24", "192.168.9.1-192.168.9.5", "fc00:f853:0ccd:e799::/124"],
        "l2": {
            "nodeSelectors": [
                {"matchLabels": {"kubernetes.io/hostname": "NodeA"}},
                {"matchLabels": {"kubernetes.io/hostname": "NodeB"}},
            ],
            "interfaces": ["eth3", "eth4"],
        },
    }
    # Selected by label, no scope: announced from every node.
    assert pools["expensive"]["spec"] == {"addresses": ["42.176.25.64/30"], "autoAssign": False}
    assert pools["expensive"]["metadata"]["labels"] == {"tier": "premium"}
    cheap = pools["cheap"]["spec"]
    assert cheap["avoidBuggyIPs"] is True
    assert cheap["serviceAllocation"]["priority"] == 50
    assert "l2" not in cheap
    notes = "\n".join(result.notes)
    assert "BGPPeer sample: not carried over" in notes
    assert "BGPAdvertisement external: not carried over" in notes
    # cheap has no advertisement: MetalLB never announced it; ironlb will. Said, not hidden.
    assert "IPAddressPool cheap: no L2Advertisement selects it" in notes
    for pool in result.pools:
        parse_pool(pool["metadata"]["name"], pool["spec"])  # what the controller accepts


def test_legacy_configmap_layer2_pools_and_bgp_listed() -> None:
    result = convert(load_documents(LEGACY))
    pools = by_name(result)
    assert pools["default"]["spec"] == {
        "addresses": ["192.168.1.240-192.168.1.250"],
        "avoidBuggyIPs": True,
    }
    assert pools["manual"]["spec"] == {"addresses": ["192.168.2.0/24"], "autoAssign": False}
    assert "bgp-pool" not in pools
    notes = "\n".join(result.notes)
    assert "pool bgp-pool uses protocol bgp: not carried over" in notes
    assert "peers not carried over" in notes
    assert "no L2Advertisement" not in notes  # legacy layer2 pools were announced everywhere


def test_several_advertisements_are_merged_and_said() -> None:
    docs = load_documents(
        DOCUMENTED
        + textwrap.dedent(
            """
            ---
            apiVersion: metallb.io/v1beta1
            kind: L2Advertisement
            metadata: {name: also-first, namespace: metallb-system}
            spec:
              ipAddressPools: [first-pool]
              interfaces: [eth5]
            """
        )
    )
    result = convert(docs)
    first = by_name(result)["first-pool"]["spec"]["l2"]
    # also-first has no node selector: the pool is announced from every node.
    assert first == {"interfaces": ["eth3", "eth4", "eth5"]}
    assert any("example, also-first give different scopes" in n for n in result.notes)


def test_an_advertisement_for_all_pools() -> None:
    docs = load_documents(
        DOCUMENTED.replace(
            "spec:\n  ipAddressPoolSelectors:\n  - matchLabels:\n      tier: premium\n",
            "spec:\n  interfaces: [eth9]\n",
        )
    )
    result = convert(docs)
    pools = by_name(result)
    assert pools["cheap"]["spec"]["l2"] == {"interfaces": ["eth9"]}
    assert not any("cheap: no L2Advertisement" in n for n in result.notes)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bad}\n"
            "spec: {addresses: [192.168.1.1/24]}\n",
            "host bits",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bad}\n"
            "spec: {addresses: [10.0.0.9-10.0.0.1]}\n",
            "spec.addresses[0]",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: twice, "
            "namespace: a}\nspec: {addresses: [10.0.0.0/30]}\n---\napiVersion: metallb.io/v1beta1"
            "\nkind: IPAddressPool\nmetadata: {name: twice, namespace: b}\n"
            "spec: {addresses: [10.0.1.0/30]}\n",
            "same name",
        ),
    ],
)
def test_pools_ironlb_would_refuse_are_errors(text: str, words: str) -> None:
    result = convert(load_documents(text))
    assert result.pools == [] or all(p["metadata"]["name"] != "bad" for p in result.pools)
    assert result.errors, result
    assert words in result.errors[0].message, result.errors[0].message
    assert "\n" not in result.errors[0].message


def test_not_yaml_is_one_line() -> None:
    with pytest.raises(DocumentError) as info:
        load_documents("kind: [unclosed\n")
    assert "not valid YAML at line" in str(info.value)
    assert "\n" not in str(info.value)


def test_converted_pools_allocate_what_metallb_would() -> None:
    """MetalLB: lowest free address of the pool, ranges in order, no .0/.255 with
    avoidBuggyIPs, autoAssign: false only on request, priority pools first for the
    Services they select."""
    result = convert(load_documents(DOCUMENTED + "---\n" + LEGACY))
    allocator = Allocator()
    allocator.set_pools(parse_pool(p["metadata"]["name"], p["spec"]) for p in result.pools)

    def assign(name: str, ns: str = "default", **kw: Any) -> str:
        got = allocator.assign(ServiceRequest(ServiceKey(ns, name), **kw))
        return f"{got.pool}:{','.join(str(ip) for ip in got.ips)}"

    # No serviceAllocation match: autoAssign pools by name (default, then first-pool).
    assert assign("a") == "default:192.168.1.240"
    # Selected by the cheap pool (namespace-a, app=bar): its lowest non-buggy address.
    assert assign("b", ns="namespace-a", labels={"app": "bar"}) == "cheap:192.168.144.1"
    ip = ipaddress.ip_address
    assert assign("c", requested_ips=(ip("42.176.25.66"),)) == "expensive:42.176.25.66"
    assert assign("d", pool="manual") == "manual:192.168.2.0"
