"""The IPAddressPool CRD: structural schema, names, printer columns, and agreement with
the pool parser and the allocator's status counters.

jsonschema is not a dependency, so ``validate`` below checks the small OpenAPI subset
the CRD uses (type, properties, required, items, enum, minItems, minLength, maxLength,
minimum, additionalProperties) the way the API server would; unknown fields are
reported separately because the API server prunes them rather than rejecting them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ironlb.operator.allocator import INT64_MAX, Allocator, ServiceKey, ServiceRequest
from ironlb.operator.pools import PoolError, parse_pool

CRD_PATH = Path(__file__).resolve().parents[2] / "charts/ironlb/crds/ipaddresspools.ironlb.io.yaml"
TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
}


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    with CRD_PATH.open() as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    result = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert isinstance(result, dict)
    return result


def _type_ok(kind: str, value: object) -> bool:
    if kind == "integer" and isinstance(value, bool):
        return False
    return isinstance(value, TYPES[kind])


def validate(node: dict[str, Any], value: Any, path: str = "") -> tuple[list[str], list[str]]:
    """(errors, pruned unknown fields) of ``value`` against a structural schema node."""
    errors: list[str] = []
    pruned: list[str] = []
    kind = node["type"]
    if not _type_ok(kind, value):
        return [f"{path}: expected {kind}, got {value!r}"], []
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: {value!r} not in {node['enum']}")
    too_short = kind == "string" and len(value) < node.get("minLength", 0)
    if too_short or (kind == "string" and len(value) > node.get("maxLength", 1 << 30)):
        errors.append(f"{path}: length of {value!r} out of bounds")
    if kind == "integer" and value < node.get("minimum", -(1 << 63)):
        errors.append(f"{path}: {value} below minimum")
    if kind == "integer" and node.get("format") == "int64" and not -(1 << 63) <= value < 1 << 63:
        errors.append(f"{path}: {value} overflows int64")
    if kind == "array":
        if len(value) < node.get("minItems", 0):
            errors.append(f"{path}: fewer than {node['minItems']} items")
        for i, item in enumerate(value):
            e, p = validate(node["items"], item, f"{path}[{i}]")
            errors += e
            pruned += p
    if kind == "object":
        for req in node.get("required", []):
            if req not in value:
                errors.append(f"{path}.{req}: required")
        props = node.get("properties")
        extra = node.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                e, p = validate(props[key], item, f"{path}.{key}")
            elif isinstance(extra, dict):
                e, p = validate(extra, item, f"{path}.{key}")
            elif props is not None:
                e, p = [], [f"{path}.{key}"]
            else:
                e, p = [], []  # e.g. metadata: an object the API server owns
            errors += e
            pruned += p
    return errors, pruned


def schema_paths(node: dict[str, Any], path: str) -> set[str]:
    paths = {path}
    for key, sub in node.get("properties", {}).items():
        paths |= schema_paths(sub, f"{path}.{key}")
    if "items" in node:
        paths |= schema_paths(node["items"], f"{path}[]")
    return paths


def value_paths(value: Any, path: str) -> set[str]:
    paths = {path}
    if isinstance(value, dict):
        for key, sub in value.items():
            if path.endswith(".matchLabels"):
                continue  # free-form map
            paths |= value_paths(sub, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            paths |= value_paths(item, f"{path}[]")
    return paths


FULL_SELECTOR: dict[str, Any] = {
    "matchLabels": {"tenant": "blue"},
    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}],
}
FULL_SPEC: dict[str, Any] = {
    "addresses": ["198.18.10.0/24", "198.18.11.10-198.18.11.20", "198.18.12.5", "2001:db8::/64"],
    "autoAssign": False,
    "avoidBuggyIPs": True,
    "serviceAllocation": {
        "priority": 10,
        "namespaces": ["web"],
        "namespaceSelectors": [copy.deepcopy(FULL_SELECTOR)],
        "serviceSelectors": [copy.deepcopy(FULL_SELECTOR)],
    },
    "l2": {"nodeSelectors": [copy.deepcopy(FULL_SELECTOR)], "interfaces": ["eth0"]},
}


def pool_object(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = {
        "apiVersion": "ironlb.io/v1alpha1",
        "kind": "IPAddressPool",
        "metadata": {"name": "example"},
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


# --- shape -------------------------------------------------------------------------------------


def test_names_scope_and_subresources(crd: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert spec["group"] == "ironlb.io"
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == "IPAddressPool"
    assert spec["names"]["plural"] == "ipaddresspools"
    assert "ipp" in spec["names"]["shortNames"]
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_schema_is_structural(schema: dict[str, Any]) -> None:
    def walk(node: dict[str, Any], path: str) -> None:
        assert "type" in node, f"{path} has no type"
        assert "$ref" not in node and "definitions" not in node, path
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}")
        if node["type"] == "array":
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}{{}}")
        if "default" in node:
            assert isinstance(node["default"], TYPES[node["type"]]), path

    walk(schema, "")


def test_defaults(schema: dict[str, Any]) -> None:
    spec = schema["properties"]["spec"]
    assert spec["properties"]["autoAssign"]["default"] is True
    assert spec["properties"]["avoidBuggyIPs"]["default"] is False
    assert spec["required"] == ["addresses"]


def test_printer_columns_point_at_schema_fields(
    crd: dict[str, Any], schema: dict[str, Any]
) -> None:
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    by_name = {c["name"].upper(): c for c in columns}
    assert list(by_name) == ["ADDRESSES", "USED", "FREE", "AUTO-ASSIGN", "STATUS", "AGE"]
    known = schema_paths(schema, "") | {".metadata.creationTimestamp"}
    for column in columns:
        assert column["jsonPath"] in known, column
    # Strings the controller writes: a JSONPath cannot join a list, int64 cannot count a /64.
    assert by_name["ADDRESSES"]["jsonPath"] == ".status.addressesText"
    assert by_name["USED"]["type"] == by_name["FREE"]["type"] == "string"
    assert by_name["AGE"]["type"] == "date"


# --- examples ----------------------------------------------------------------------------------


def test_full_example_is_valid_and_covers_every_spec_field(schema: dict[str, Any]) -> None:
    errors, pruned = validate(schema, pool_object(FULL_SPEC))
    assert errors == [] and pruned == []
    parse_pool("example", FULL_SPEC)  # the parser accepts everything the schema allows
    spec_schema = schema["properties"]["spec"]
    assert schema_paths(spec_schema, ".spec") == value_paths(FULL_SPEC, ".spec")


@pytest.mark.parametrize(
    "spec",
    [
        {"addresses": ["198.18.10.5"]},
        {"addresses": ["2001:db8::1-2001:db8::ff", "198.18.0.0/16"], "autoAssign": True},
        {"addresses": ["198.18.0.1"], "serviceAllocation": {}, "l2": {}},
    ],
)
def test_minimal_examples_are_valid(schema: dict[str, Any], spec: dict[str, Any]) -> None:
    assert validate(schema, pool_object(spec)) == ([], [])
    parse_pool("example", spec)


def _with(path: list[str | int], value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(FULL_SPEC)
    node: Any = spec
    for step in path[:-1]:
        node = node[step]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return spec


BAD_SPECS = [
    (_with(["addresses"], []), ".spec.addresses"),
    (_with(["addresses"], KeyError), ".spec.addresses"),
    (_with(["addresses"], "198.18.0.0/24"), ".spec.addresses"),
    (_with(["addresses", 0], ""), ".spec.addresses[0]"),
    (_with(["autoAssign"], "yes"), ".spec.autoAssign"),
    (_with(["avoidBuggyIPs"], 1), ".spec.avoidBuggyIPs"),
    (_with(["serviceAllocation", "priority"], "high"), ".spec.serviceAllocation.priority"),
    (_with(["serviceAllocation", "priority"], -1), ".spec.serviceAllocation.priority"),
    (
        _with(
            ["serviceAllocation", "serviceSelectors", 0, "matchExpressions", 0, "operator"], "Gt"
        ),
        ".spec.serviceAllocation.serviceSelectors[0].matchExpressions[0].operator",
    ),
    (
        _with(["serviceAllocation", "namespaceSelectors", 0, "matchLabels", "tenant"], 3),
        ".spec.serviceAllocation.namespaceSelectors[0].matchLabels[tenant]",
    ),
    (_with(["l2", "interfaces"], ["a-very-long-interface-name"]), ".spec.l2.interfaces[0]"),
]


@pytest.mark.parametrize(("spec", "where"), BAD_SPECS)
def test_schema_and_parser_reject_bad_specs(
    schema: dict[str, Any], spec: dict[str, Any], where: str
) -> None:
    errors, _ = validate(schema, pool_object(spec))
    schema_where = where.replace("[tenant]", ".tenant")  # the parser names map keys in []
    assert errors and all(e.startswith(schema_where) for e in errors), errors
    with pytest.raises(PoolError) as info:
        parse_pool("example", spec)
    assert "." + info.value.field == where


def test_unknown_fields_are_pruned_by_schema_and_rejected_by_parser(
    schema: dict[str, Any],
) -> None:
    spec = _with(["colour"], "blue")
    assert validate(schema, pool_object(spec)) == ([], [".spec.colour"])
    with pytest.raises(PoolError):
        parse_pool("example", spec)


def test_parser_catches_what_the_schema_cannot(schema: dict[str, Any]) -> None:
    # Syntactically fine strings the API server would store; the controller marks them Invalid.
    for addresses in (
        ["198.18.0.7/24"],
        ["198.18.0.9-198.18.0.1"],
        ["198.18.0.0/24", "198.18.0.9"],
    ):
        spec = {"addresses": addresses}
        assert validate(schema, pool_object(spec)) == ([], [])
        with pytest.raises(PoolError):
            parse_pool("example", spec)


# --- status ------------------------------------------------------------------------------------


def test_allocator_status_fits_the_status_schema(schema: dict[str, Any]) -> None:
    spec = {"addresses": ["198.18.0.0/24", "2001:db8::/32"]}
    alloc = Allocator()
    alloc.set_pools([parse_pool("example", spec)])
    alloc.assign(
        ServiceRequest(ServiceKey("ns", "svc"), families=(4, 6), family_policy="RequireDualStack")
    )
    counters = alloc.usage("example").to_status()
    assert counters["availableIPv6"] == INT64_MAX  # 2**96 - 1 capped
    assert counters["assignedIPv4"] == 1 and counters["availableIPv4"] == 255
    status: dict[str, Any] = {
        **counters,
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Valid",
                "message": "pool is in use",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 3,
            }
        ],
    }
    assert validate(schema, pool_object(spec, status)) == ([], [])
    broken = copy.deepcopy(status)
    del broken["conditions"][0]["reason"]
    broken["conditions"][0]["status"] = "Maybe"
    errors, _ = validate(schema, pool_object(spec, broken))
    assert sorted(errors) == [
        ".status.conditions[0].reason: required",
        ".status.conditions[0].status: 'Maybe' not in ['True', 'False', 'Unknown']",
    ]
    assert validate(schema, pool_object(spec, {"free": 2**64}))[0] == [
        ".status.free: 18446744073709551616 overflows int64"
    ]


def test_pool_status_of_a_huge_range_fits_and_prints_exact_counts(schema: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    from ironlb.operator.pool_status import pool_status

    spec = {"addresses": ["198.18.0.0/24", "2001:db8::/64"]}
    alloc = Allocator()
    alloc.set_pools([parse_pool("example", spec)])
    usage = alloc.usage("example")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    status = pool_status(
        usage, None, previous=None, generation=1, now=now, addresses=spec["addresses"]
    )
    assert validate(schema, pool_object(spec, status)) == ([], [])
    assert status["free"] == INT64_MAX
    assert status["freeText"] == str(256 + 2**64)
    assert status["conditions"][0]["message"] == f"0 addresses assigned, {256 + 2**64} available"
    assert (status["addressesText"], status["usedText"]) == ("198.18.0.0/24,2001:db8::/64", "0")
    assert status["state"] == "Ready"
    refused = pool_status(None, ("Overlap", "it overlaps"), previous=None, generation=1, now=now)
    assert (refused["state"], refused["freeText"]) == ("Invalid (Overlap)", "0")
