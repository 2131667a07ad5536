"""Server-side printing: ``meta.k8s.io/v1`` Table bodies for ``kubectl get``.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and
prints whatever columns the server sends. This module provides the columns
kubectl users expect for the types the lab serves (Services with TYPE,
CLUSTER-IP, EXTERNAL-IP, PORT(S); Namespaces; Nodes; Leases; Pods;
Deployments with READY, UP-TO-DATE, AVAILABLE; DaemonSets with DESIRED ...
NODE SELECTOR; EndpointSlices with ADDRESSTYPE, PORTS, ENDPOINTS), a
CRD's ``additionalPrinterColumns`` (simple JSONPath: ``.a.b``, ``.a[*].b``,
``.a[0]``), and NAME + AGE otherwise. Pure: no I/O.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ironlb.lab.apiserver.registry import ResourceType

Obj = Mapping[str, Any]
Column = tuple[str, str, Callable[[Obj], Any], int]  # name, type, cell, priority


def wants_table(accept: str | None) -> bool:
    return bool(accept) and "as=Table" in (accept or "")


def human_age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    if not timestamp:
        return "<unknown>"
    created = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC
    )
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - created).total_seconds())
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


_STEP = re.compile(r"^(?P<name>[^\[\]]*)(\[(?P<index>\*|-?\d+)\])?$")


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Values at a simple JSONPath (``.a.b``, ``.a[*].b``, ``.a[0]``); [] if absent."""
    values = [obj]
    for step in [s for s in path.strip().lstrip("$").strip("{}").split(".") if s]:
        match = _STEP.match(step)
        if not match:
            return []
        found: list[Any] = []
        for value in values:
            if match["name"]:
                if not isinstance(value, Mapping) or match["name"] not in value:
                    continue
                value = value[match["name"]]
            index = match["index"]
            if index is None:
                found.append(value)
            elif isinstance(value, list):
                if index == "*":
                    found.extend(value)
                elif -len(value) <= int(index) < len(value):
                    found.append(value[int(index)])
        values = found
    return values


def _cell(values: Sequence[Any]) -> Any:
    if not values:
        return None
    text = [v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for v in values]
    if len(values) == 1 and isinstance(values[0], (int, float, bool)):
        return values[0]
    return ",".join(text)


def _age(obj: Obj) -> str:
    return human_age((obj.get("metadata") or {}).get("creationTimestamp"))


def _service_ports(obj: Obj) -> str:
    parts = []
    for port in (obj.get("spec") or {}).get("ports") or []:
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        parts.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _external_ip(obj: Obj) -> str:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ingress = [
        i.get("ip") or i.get("hostname")
        for i in (status.get("loadBalancer") or {}).get("ingress") or []
    ]
    addresses = [a for a in ingress if a] + list(spec.get("externalIPs") or [])
    if addresses:
        return ",".join(addresses)
    if spec.get("type") == "LoadBalancer":
        return "<pending>"
    if spec.get("type") == "ExternalName":
        return str(spec.get("externalName", "<none>"))
    return "<none>"


def _node_status(obj: Obj) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    text = (
        "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    )
    if (obj.get("spec") or {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _selector(obj: Obj) -> str:
    selector = (obj.get("spec") or {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"


def _event_seen(obj: Obj) -> str:
    stamp = obj.get("lastTimestamp") or obj.get("eventTime") or obj.get("deprecatedLastTimestamp")
    if isinstance(stamp, str) and len(stamp) >= 19:
        return human_age(stamp[:19] + "Z")
    return _age(obj)


def _event_object(obj: Obj) -> str:
    ref = obj.get("involvedObject") or obj.get("regarding") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _num(obj: Obj, part: str, key: str) -> int:
    value = (obj.get(part) or {}).get(key, 1 if (part, key) == ("spec", "replicas") else 0)
    return int(value) if isinstance(value, int) else 0


def _deployment_ready(obj: Obj) -> str:
    return f"{_num(obj, 'status', 'readyReplicas')}/{_num(obj, 'spec', 'replicas')}"


def _template_containers(obj: Obj, key: str) -> str:
    template = (obj.get("spec") or {}).get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    return ",".join(str(c.get(key, "")) for c in containers)


def _label_selector(obj: Obj) -> str:
    selector = (obj.get("spec") or {}).get("selector") or {}
    labels = selector.get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def _ds_node_selector(obj: Obj) -> str:
    template = (obj.get("spec") or {}).get("template") or {}
    selector = (template.get("spec") or {}).get("nodeSelector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"


def _slice_ports(obj: Obj) -> str:
    ports = [str(p.get("port")) for p in obj.get("ports") or [] if p.get("port") is not None]
    return ",".join(ports) or "<unset>"


def _slice_endpoints(obj: Obj) -> str:
    """kubectl's form: up to three addresses, then ``+ N more...``."""
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    if not addresses:
        return "<unset>"
    text = ",".join(addresses[:3])
    return text + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")


def _pod_ready(obj: Obj) -> str:
    """kubectl's READY: ready containers / containers."""
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for c in statuses if c.get('ready'))}/{total}"


def _pod_restarts(obj: Obj) -> int:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    return sum(int(c.get("restartCount") or 0) for c in statuses)


def _node_address(kind: str) -> Callable[[Obj], str]:
    def first(obj: Obj) -> str:
        for entry in (obj.get("status") or {}).get("addresses") or []:
            if entry.get("type") == kind:
                return str(entry.get("address", ""))
        return "<none>"

    return first


NAME: Column = ("Name", "string", lambda o: (o.get("metadata") or {}).get("name"), 0)
AGE: Column = ("Age", "string", _age, 0)

BUILTIN_COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "services"): [
        NAME,
        ("Type", "string", lambda o: (o.get("spec") or {}).get("type"), 0),
        ("Cluster-IP", "string", lambda o: (o.get("spec") or {}).get("clusterIP") or "<none>", 0),
        ("External-IP", "string", _external_ip, 0),
        ("Port(s)", "string", _service_ports, 0),
        AGE,
        ("Selector", "string", _selector, 1),
    ],
    ("", "namespaces"): [
        NAME,
        ("Status", "string", lambda o: (o.get("status") or {}).get("phase"), 0),
        AGE,
    ],
    ("", "nodes"): [
        NAME,
        ("Status", "string", _node_status, 0),
        AGE,
        (
            "Version",
            "string",
            lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
            0,
        ),
        ("Internal-IP", "string", _node_address("InternalIP"), 1),
    ],
    ("", "pods"): [
        NAME,
        ("Ready", "string", _pod_ready, 0),
        ("Status", "string", lambda o: (o.get("status") or {}).get("phase"), 0),
        ("Restarts", "integer", _pod_restarts, 0),
        AGE,
        ("IP", "string", lambda o: (o.get("status") or {}).get("podIP") or "<none>", 1),
        ("Node", "string", lambda o: (o.get("spec") or {}).get("nodeName") or "<none>", 1),
    ],
    ("", "events"): [
        ("Last Seen", "string", _event_seen, 0),
        ("Type", "string", lambda o: o.get("type", ""), 0),
        ("Reason", "string", lambda o: o.get("reason", ""), 0),
        ("Object", "string", _event_object, 0),
        ("Message", "string", lambda o: o.get("message") or o.get("note") or "", 0),
    ],
    ("events.k8s.io", "events"): [
        ("Last Seen", "string", _event_seen, 0),
        ("Type", "string", lambda o: o.get("type", ""), 0),
        ("Reason", "string", lambda o: o.get("reason", ""), 0),
        ("Object", "string", _event_object, 0),
        ("Message", "string", lambda o: o.get("note") or "", 0),
    ],
    ("apps", "deployments"): [
        NAME,
        ("Ready", "string", _deployment_ready, 0),
        ("Up-to-date", "integer", lambda o: _num(o, "status", "updatedReplicas"), 0),
        ("Available", "integer", lambda o: _num(o, "status", "availableReplicas"), 0),
        AGE,
        ("Containers", "string", lambda o: _template_containers(o, "name"), 1),
        ("Images", "string", lambda o: _template_containers(o, "image"), 1),
        ("Selector", "string", _label_selector, 1),
    ],
    ("apps", "daemonsets"): [
        NAME,
        ("Desired", "integer", lambda o: _num(o, "status", "desiredNumberScheduled"), 0),
        ("Current", "integer", lambda o: _num(o, "status", "currentNumberScheduled"), 0),
        ("Ready", "integer", lambda o: _num(o, "status", "numberReady"), 0),
        ("Up-to-date", "integer", lambda o: _num(o, "status", "updatedNumberScheduled"), 0),
        ("Available", "integer", lambda o: _num(o, "status", "numberAvailable"), 0),
        ("Node Selector", "string", _ds_node_selector, 0),
        AGE,
    ],
    ("discovery.k8s.io", "endpointslices"): [
        NAME,
        ("AddressType", "string", lambda o: o.get("addressType", ""), 0),
        ("Ports", "string", _slice_ports, 0),
        ("Endpoints", "string", _slice_endpoints, 0),
        AGE,
    ],
    ("coordination.k8s.io", "leases"): [
        NAME,
        ("Holder", "string", lambda o: (o.get("spec") or {}).get("holderIdentity", ""), 0),
        AGE,
    ],
}


def _path_cell(path: str) -> Callable[[Obj], Any]:
    return lambda obj: _cell(jsonpath(obj, path))


def _date_cell(path: str) -> Callable[[Obj], Any]:
    def cell(obj: Obj) -> str:
        values = jsonpath(obj, path)
        return human_age(values[0]) if values and isinstance(values[0], str) else "<unknown>"

    return cell


def crd_columns(crd: Obj | None, version: str) -> list[Column] | None:
    """NAME plus the CRD version's additionalPrinterColumns, or None if it declares none."""
    if not crd:
        return None
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if entry.get("name") != version or not entry.get("additionalPrinterColumns"):
            continue
        columns: list[Column] = [NAME]
        for column in entry["additionalPrinterColumns"]:
            path, kind = str(column.get("jsonPath", "")), str(column.get("type", "string"))
            priority = int(column.get("priority", 0))
            if kind == "date":
                columns.append((column["name"], "string", _date_cell(path), priority))
            else:
                columns.append((column["name"], kind, _path_cell(path), priority))
        return columns
    return None


def table(
    rtype: ResourceType,
    objects: Sequence[Obj],
    resource_version: str,
    columns: list[Column] | None,
    include_object: str = "Metadata",
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects`` (already rendered for ``rtype``)."""
    chosen = columns or BUILTIN_COLUMNS.get(rtype.storage_key) or [NAME, AGE]
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [cell(obj) for _name, _type, cell, _prio in chosen]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {}),
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": prio,
            }
            for name, kind, _cell_fn, prio in chosen
        ],
        "rows": rows,
    }
