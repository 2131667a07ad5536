"""The server-side apply core (``ironlb.lab.apiserver.apply``): field sets and their
fieldsV1 form, merge keys of built-in kinds and CRD schemas, conflicts, forced ownership,
removal of dropped fields, Update entries; plus properties over generated objects
(applying twice changes nothing, applying a subset removes exactly what was dropped,
a forced apply leaves every applied value in place, fieldsV1 round-trips)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ironlb.lab.apiserver import apply as ssa
from tests.props import PROPS, tried

LT = ssa.builtin_list_type


def run(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    owners: list[ssa.Owner],
    manager: str,
    force: bool = False,
    now: str = "t1",
) -> tuple[dict[str, Any], list[ssa.Owner]]:
    obj, new_owners = ssa.apply(
        live, applied, owners, manager, force=force, list_types=LT, api_version="v1", now=now
    )
    return obj, ssa.prune_owners(new_owners, obj, LT)


def svc(*ports: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "s"}, "spec": {"ports": list(ports), **spec}}


def test_field_set_and_fields_v1_of_a_service() -> None:
    obj = {
        "apiVersion": "v1",
        "metadata": {"name": "s", "uid": "u", "labels": {"a": "1"}, "finalizers": ["x/y"]},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {}, "ips": ["a"]},
    }
    fields = ssa.field_set(obj, LT)
    port = 'k:{"port":80,"protocol":"TCP"}'  # protocol defaulted in the key, as on a cluster
    assert fields == {
        ("f:metadata", "f:labels", "f:a"),
        ("f:metadata", "f:finalizers", 'v:"x/y"'),
        ("f:spec", "f:ports", port),
        ("f:spec", "f:ports", port, "f:port"),
        ("f:spec", "f:ports", port, "f:targetPort"),
        ("f:spec", "f:selector"),
        ("f:spec", "f:ips"),  # not a known associative list: atomic
    }
    encoded = ssa.encode_fields(fields)
    assert encoded["f:spec"]["f:ports"][port] == {".": {}, "f:port": {}, "f:targetPort": {}}
    assert encoded["f:metadata"]["f:finalizers"] == {'v:"x/y"': {}}
    assert ssa.decode_fields(encoded) == fields
    assert ssa.path_string(("f:spec", "f:ports", port, "f:port")) == (
        '.spec.ports[port=80,protocol="TCP"].port'
    )


def test_container_ports_and_crd_schema_list_types() -> None:
    assert LT(("spec", "containers", "ports"), [{"containerPort": 80}]) == (
        "containerPort",
        "protocol",
    )
    assert LT(("spec", "containers"), [{"image": "x"}]) is None  # no key: atomic
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "properties": {
                    "rules": {
                        "type": "array",
                        "items": {
                            "properties": {
                                "hosts": {
                                    "type": "array",
                                    "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["name", "port"],
                                },
                                "tags": {"type": "array", "x-kubernetes-list-type": "set"},
                            }
                        },
                    }
                }
            }
        },
    }
    crd = ssa.schema_list_type(schema)
    assert crd(("spec", "rules", "hosts"), [{"name": "a", "port": 1}]) == ("name", "port")
    assert crd(("spec", "rules", "hosts"), [{"name": "a"}]) is None  # a key missing
    assert crd(("spec", "rules", "tags"), ["a"]) == "set"
    assert crd(("spec", "rules"), [{}]) is None
    assert crd(("metadata", "finalizers"), ["f"]) == "set"


def test_conflict_force_and_shared_ownership() -> None:
    obj, owners = run(None, svc({"port": 80}, type="ClusterIP"), [], "a")
    # the same value is shared, a different one conflicts
    obj, owners = run(obj, svc(type="ClusterIP"), owners, "b")
    with pytest.raises(ssa.ConflictError) as caught:
        run(obj, svc(type="NodePort"), owners, "c")
    assert caught.value.message == (
        'Apply failed with 2 conflicts: conflicts with "a":\n- .spec.type\n'
        'conflicts with "b":\n- .spec.type'
    )
    forced, after = run(obj, svc(type="NodePort"), owners, "c", force=True)
    assert forced["spec"]["type"] == "NodePort"
    by = {o.manager: o.fields for o in after}
    assert ("f:spec", "f:type") in by["c"]
    assert "b" not in by  # b owned only spec.type: gone
    assert ("f:spec", "f:type") not in by["a"] and by["a"]  # a keeps its port


def test_dropped_fields_go_unless_another_manager_owns_them() -> None:
    obj, owners = run(None, svc({"port": 80, "name": "http"}, {"port": 81}), [], "a")
    obj, owners = run(obj, svc({"port": 81, "name": "x"}), owners, "b")
    obj, owners = run(obj, svc(), owners, "a")  # a drops both ports and owns nothing else
    assert obj["spec"]["ports"] == [{"port": 81, "name": "x"}]  # b's item and fields stay
    obj, owners = run(obj, {"metadata": {"name": "s"}}, owners, "b")
    assert obj == {"metadata": {"name": "s"}}  # emptied maps go too
    assert owners == []


def test_an_items_key_never_goes_alone() -> None:
    obj, owners = run(None, svc({"port": 80, "name": "a"}), [], "a")
    update = copy.deepcopy(obj)
    update["spec"]["ports"][0]["targetPort"] = 9
    owners = ssa.record_update(
        obj, update, owners, "edit", list_types=LT, api_version="v1", now="t"
    )
    obj, owners = run(update, svc(), owners, "a")
    assert obj["spec"]["ports"] == [{"port": 80, "targetPort": 9}]


def test_record_update_takes_changed_fields_and_keeps_times_of_untouched_entries() -> None:
    obj, owners = run(None, {"data": {"a": "1", "b": "2"}}, [], "apply", now="t0")
    new = {"data": {"a": "1", "b": "3", "c": "4"}}
    after = ssa.record_update(
        obj, new, owners, "kubectl-edit", list_types=LT, api_version="v1", now="t1"
    )
    assert [(o.manager, o.operation, o.time) for o in after] == [
        ("apply", "Apply", "t1"),
        ("kubectl-edit", "Update", "t1"),
    ]
    assert after[0].fields == {("f:data", "f:a")}
    assert after[1].fields == {("f:data", "f:b"), ("f:data", "f:c")}
    with pytest.raises(ssa.ConflictError) as caught:
        run(new, {"data": {"b": "2"}}, after, "apply")
    assert caught.value.causes() == [
        {
            "type": "FieldManagerConflict",
            "message": 'conflict with "kubectl-edit" using v1: .data.b',
            "field": ".data.b",
        }
    ]
    same = ssa.record_update(
        new, new, after, "kubectl-edit", list_types=LT, api_version="v1", now="t2"
    )
    assert same == after  # nothing changed: entries (and their times) as they were
    entries = [o.to_json() for o in after]
    assert ssa.owners_from_json(entries) == after
    assert ssa.owners_from_json([{"manager": "x"}, "junk"]) == []


# --- properties -------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "d"])
SCALARS = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y", ""]), st.booleans())
PORTS = st.lists(
    st.fixed_dictionaries(
        {"port": st.integers(1, 4)},
        optional={"protocol": st.sampled_from(["TCP", "UDP"]), "name": SCALARS, "x": SCALARS},
    ),
    max_size=4,
)
VALUES = st.recursive(
    st.one_of(SCALARS, st.lists(SCALARS, max_size=2)),
    lambda inner: st.dictionaries(NAMES, inner, min_size=1, max_size=3),
    max_leaves=6,
)
OBJECTS = st.fixed_dictionaries(
    {"metadata": st.just({"name": "o"})},
    optional={
        "data": st.dictionaries(NAMES, VALUES, min_size=1, max_size=3),
        "spec": st.fixed_dictionaries({}, optional={"ports": PORTS, "type": SCALARS}),
        "finalizers": st.lists(st.sampled_from(["f1", "f2", "f3"]), unique=True, min_size=1),
    },
)


def _unique_ports(obj: dict[str, Any]) -> dict[str, Any]:
    ports = obj.get("spec", {}).get("ports")
    if ports is not None:
        seen, kept = set(), []
        for p in ports:
            key = (p["port"], p.get("protocol", "TCP"))
            if key not in seen:
                seen.add(key)
                kept.append(p)
        obj["spec"]["ports"] = kept
        if not kept:
            del obj["spec"]["ports"]
    if obj.get("spec") == {}:
        del obj["spec"]
    return obj


def _subset(value: Any, keep: st.DataObject, key_fields: tuple[str, ...] = ()) -> Any:
    """A random part of a generated object: map keys and keyed items dropped at random
    (an item keeps its key fields), emptied maps dropped; None when nothing is left."""
    if isinstance(value, dict) and value:
        out = {}
        for key, item in value.items():
            if key in key_fields or key == "metadata":
                out[key] = item
                continue
            if not keep.draw(st.booleans()):
                continue
            part = _subset(item, keep) if key != "ports" else _ports_subset(item, keep)
            if part is not None:
                out[key] = part
        return out if out else None
    return value


def _ports_subset(ports: list[dict[str, Any]], keep: st.DataObject) -> list[Any] | None:
    kept = [_subset(p, keep, ("port", "protocol")) for p in ports if keep.draw(st.booleans())]
    return kept or None


def _leaves_equal(obj: dict[str, Any], ref: dict[str, Any]) -> bool:
    return all(ssa.value_at(obj, p, LT) == ssa.value_at(ref, p, LT) for p in ssa.field_set(ref, LT))


@PROPS
@given(OBJECTS.map(_unique_ports))
def test_applying_twice_changes_nothing(applied: dict[str, Any]) -> None:
    tried("server-side apply")
    obj, owners = run(None, applied, [], "m")
    assert obj == applied
    again, owners_again = run(obj, applied, owners, "m", now="t2")
    assert again == obj and owners_again == owners
    assert ssa.decode_fields(ssa.encode_fields(owners[0].fields if owners else ())) == (
        owners[0].fields if owners else frozenset()
    )


@PROPS
@given(OBJECTS.map(_unique_ports), st.data())
def test_applying_a_subset_removes_exactly_the_dropped_fields(
    applied: dict[str, Any], data: st.DataObject
) -> None:
    tried("server-side apply")
    obj, owners = run(None, applied, [], "m")
    part = _subset(applied, data) or {"metadata": {"name": "o"}}
    after, owners_after = run(obj, part, owners, "m", now="t2")
    assert after == part
    assert ssa.field_set(obj, LT) - ssa.field_set(after, LT) == (
        ssa.field_set(applied, LT) - ssa.field_set(part, LT)
    )
    assert frozenset().union(*(o.fields for o in owners_after)) == ssa.field_set(part, LT)


@PROPS
@given(OBJECTS.map(_unique_ports), OBJECTS.map(_unique_ports))
def test_a_second_manager_conflicts_or_its_values_stand(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    tried("server-side apply")
    obj, owners = run(None, first, [], "a")
    snapshot = copy.deepcopy((obj, owners))
    try:
        merged, _ = run(obj, second, owners, "b")
    except ssa.ConflictError as exc:
        assert copy.deepcopy((obj, owners)) == snapshot  # nothing changed
        for owner, path in exc.conflicts:
            assert owner.manager == "a" and path in ssa.field_set(first, LT)
            assert ssa.value_at(first, path, LT) != ssa.value_at(second, path, LT)
        merged, after = run(obj, second, owners, "b", force=True)
        taken = {p for _o, p in exc.conflicts}
        for owner in after:
            if owner.manager == "a":
                assert not owner.fields & taken
    assert _leaves_equal(merged, second)
