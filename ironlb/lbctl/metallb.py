"""MetalLB manifests in, the equivalent ironlb ``IPAddressPool`` manifests out (pure).

A MetalLB L2 install is described by ``IPAddressPool`` objects
(``metallb.io/v1beta1``) and ``L2Advertisement`` objects saying which pools
are announced from which nodes and interfaces; installs older than MetalLB
0.13 used one ConfigMap (``data.config``, ``address-pools:``). ironlb keeps
both halves in one object: the pool's ``spec`` has the same fields as
MetalLB's (``addresses``, ``autoAssign``, ``avoidBuggyIPs``,
``serviceAllocation``), and its ``spec.l2`` holds the announcement scope
(``nodeSelectors``, ``interfaces``) MetalLB put in advertisements.

:func:`convert` never drops anything silently: everything without an ironlb
equivalent (BGP peers, BGP advertisements, BFD profiles, communities, BGP
pools, fields ironlb does not know) and every place where the result differs
from what MetalLB did (a pool no L2Advertisement announces, several
advertisements with different scopes merged into one) comes back as a
one-line note. Each pool produced is checked with the controller's own
:func:`~ironlb.operator.pools.parse_pool`; a pool that would be refused is a
:class:`ConversionError` entry, not output.

Rules followed (MetalLB documentation, "Configuration" and "Advanced L2
configuration"): an L2Advertisement with neither ``ipAddressPools`` nor
``ipAddressPoolSelectors`` applies to every pool; a pool is announced where
any advertisement that selects it says; a pool no advertisement selects is
not announced by MetalLB at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ironlb.operator.pools import LabelSelector, PoolError, parse_pool, parse_selector

__all__ = ["Conversion", "ConversionError", "convert", "load_documents"]

GROUP_VERSION = "ironlb.io/v1alpha1"
_METALLB_GROUPS = ("metallb.io/",)
_POOL_FIELDS = ("addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation")
_ADV_FIELDS = {"ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "interfaces"}
_BGP_KINDS = {"BGPPeer", "BGPAdvertisement", "BFDProfile", "Community"}
_LEGACY_POOL_KEYS = {"name", "protocol", "addresses", "auto-assign", "avoid-buggy-ips"}


@dataclass(frozen=True)
class ConversionError:
    """A MetalLB pool that cannot become an ironlb pool: its name and why (one line)."""

    name: str
    message: str


@dataclass
class Conversion:
    """The result of :func:`convert`.

    ``pools``: ironlb ``IPAddressPool`` manifests (dicts), in input order.
    ``notes``: one line each, what was not carried over or behaves differently.
    ``errors``: pools that would be refused, with the reason.
    """

    pools: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[ConversionError] = field(default_factory=list)


class DocumentError(ValueError):
    """The input is not YAML, or not a list/set of Kubernetes objects."""


def load_documents(text: str) -> list[Any]:
    """Every object in a multi-document YAML/JSON stream; ``kind: List`` items unpacked.

    Raises :class:`DocumentError` (one line) when the text is not YAML.
    """
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DocumentError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    out: list[Any] = []
    for doc in docs:
        if isinstance(doc, Mapping) and str(doc.get("kind", "")).endswith("List"):
            out.extend(doc.get("items") or [])
        else:
            out.append(doc)
    return out


@dataclass
class _Source:
    name: str
    labels: dict[str, str]
    spec: dict[str, Any]
    where: str
    legacy: bool = False  # from the ConfigMap format: announced from every node


@dataclass
class _Advertisement:
    name: str
    pools: list[str] | None
    pool_selectors: list[LabelSelector] | None
    node_selectors: list[Any]
    interfaces: list[str]

    def selects(self, pool: _Source) -> bool:
        if self.pools is None and self.pool_selectors is None:
            return True
        if self.pools is not None and pool.name in self.pools:
            return True
        return any(s.matches(pool.labels) for s in self.pool_selectors or [])


def _describe(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')} {meta.get('name', '?')!s}"


def convert(documents: Iterable[Any]) -> Conversion:
    """Convert MetalLB objects (plain dicts, as :func:`load_documents` returns) to ironlb pools."""
    result = Conversion()
    sources: list[_Source] = []
    adverts: list[_Advertisement] = []
    for doc in documents:
        if not isinstance(doc, Mapping):
            result.notes.append(f"skipped a document that is not an object: {doc!r:.60}")
            continue
        kind = str(doc.get("kind") or "")
        api_version = str(doc.get("apiVersion") or "")
        metallb = api_version.startswith(_METALLB_GROUPS)
        if kind == "ConfigMap" and "config" in (doc.get("data") or {}):
            sources.extend(_legacy_config(doc, result))
        elif metallb and kind == "IPAddressPool":
            sources.append(_pool_source(doc, result))
        elif metallb and kind == "L2Advertisement":
            advert = _advertisement(doc, result)
            if advert is not None:
                adverts.append(advert)
        elif metallb and kind in _BGP_KINDS:
            result.notes.append(
                f"{_describe(doc)}: not carried over (ironlb announces in L2 mode only; no BGP/BFD)"
            )
        else:
            result.notes.append(f"{_describe(doc)} ({api_version or 'no apiVersion'}): not MetalLB")
    names = [s.name for s in sources]
    for source in sources:
        if names.count(source.name) > 1:
            result.errors.append(
                ConversionError(
                    source.name,
                    f"{source.where}: another pool has the same name; ironlb pools are "
                    "cluster-scoped, rename one",
                )
            )
            continue
        spec = {k: source.spec[k] for k in _POOL_FIELDS if k in source.spec}
        scope = _l2_scope(source, adverts, result)
        if scope:
            spec["l2"] = scope
        try:
            parse_pool(source.name, spec)
        except PoolError as exc:
            result.errors.append(ConversionError(source.name, f"{source.where}: {exc}"))
            continue
        metadata: dict[str, Any] = {"name": source.name}
        if source.labels:
            metadata["labels"] = dict(source.labels)
        result.pools.append(
            {
                "apiVersion": GROUP_VERSION,
                "kind": "IPAddressPool",
                "metadata": metadata,
                "spec": spec,
            }
        )
    return result


def _pool_source(doc: Mapping[str, Any], result: Conversion) -> _Source:
    meta = doc.get("metadata") or {}
    spec = dict(doc.get("spec") or {})
    name = str(meta.get("name") or "")
    for key in sorted(set(spec) - set(_POOL_FIELDS)):
        result.notes.append(f"IPAddressPool {name}: spec.{key} has no ironlb equivalent, dropped")
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    return _Source(name, labels, spec, f"IPAddressPool {name}")


def _advertisement(doc: Mapping[str, Any], result: Conversion) -> _Advertisement | None:
    meta = doc.get("metadata") or {}
    name = str(meta.get("name") or "")
    spec = doc.get("spec") or {}
    for key in sorted(set(spec) - _ADV_FIELDS):
        result.notes.append(f"L2Advertisement {name}: spec.{key} has no ironlb equivalent, dropped")
    try:
        pool_selectors = (
            [
                parse_selector(s, f"L2Advertisement {name}: spec.ipAddressPoolSelectors[{i}]")
                for i, s in enumerate(spec["ipAddressPoolSelectors"])
            ]
            if spec.get("ipAddressPoolSelectors")
            else None
        )
    except PoolError as exc:
        result.notes.append(f"L2Advertisement {name}: ignored, {exc}")
        return None
    pools = spec.get("ipAddressPools")
    return _Advertisement(
        name=name,
        pools=[str(p) for p in pools] if pools else None,
        pool_selectors=pool_selectors,
        node_selectors=list(spec.get("nodeSelectors") or []),
        interfaces=[str(i) for i in spec.get("interfaces") or []],
    )


def _l2_scope(source: _Source, adverts: list[_Advertisement], result: Conversion) -> dict[str, Any]:
    chosen = [a for a in adverts if a.selects(source)]
    if not chosen and source.legacy:
        return {}
    if not chosen:
        result.notes.append(
            f"{source.where}: no L2Advertisement selects it, so MetalLB does not announce it; "
            "ironlb announces every pool (from every node)"
        )
        return {}
    # Announced wherever any advertisement says: no selector (or no interface list) in one
    # of them means every node (every interface).
    nodes: list[Any] = []
    if all(a.node_selectors for a in chosen):
        for a in chosen:
            nodes.extend(s for s in a.node_selectors if s not in nodes)
    interfaces: list[str] = []
    if all(a.interfaces for a in chosen):
        for a in chosen:
            interfaces.extend(i for i in a.interfaces if i not in interfaces)
    scopes = {(repr(a.node_selectors), tuple(a.interfaces)) for a in chosen}
    if len(scopes) > 1:
        result.notes.append(
            f"{source.where}: L2Advertisements {', '.join(a.name for a in chosen)} give "
            "different scopes; ironlb takes their union (any of the node selectors, any of "
            "the interfaces)"
        )
    scope: dict[str, Any] = {}
    if nodes:
        scope["nodeSelectors"] = nodes
    if interfaces:
        scope["interfaces"] = interfaces
    return scope


def _legacy_config(doc: Mapping[str, Any], result: Conversion) -> list[_Source]:
    """MetalLB < 0.13: ``data.config`` with ``address-pools`` (and BGP sections)."""
    where = f"ConfigMap {(doc.get('metadata') or {}).get('name', '?')}"
    try:
        config = yaml.safe_load(str((doc.get("data") or {}).get("config") or "")) or {}
    except yaml.YAMLError:
        result.notes.append(f"{where}: data.config is not YAML, skipped")
        return []
    if not isinstance(config, Mapping):
        result.notes.append(f"{where}: data.config is not a mapping, skipped")
        return []
    for key in sorted(set(config) - {"address-pools"}):
        result.notes.append(f"{where}: {key} not carried over (ironlb has no BGP/BFD)")
    sources: list[_Source] = []
    for i, entry in enumerate(config.get("address-pools") or []):
        if not isinstance(entry, Mapping):
            result.notes.append(f"{where}: address-pools[{i}] is not an object, skipped")
            continue
        name = str(entry.get("name") or f"pool-{i}")
        protocol = entry.get("protocol", "layer2")
        if protocol != "layer2":
            result.notes.append(
                f"{where}: pool {name} uses protocol {protocol}: not carried over (L2 only)"
            )
            continue
        for key in sorted(set(entry) - _LEGACY_POOL_KEYS):
            result.notes.append(f"{where}: pool {name}: {key} has no ironlb equivalent, dropped")
        spec: dict[str, Any] = {"addresses": entry.get("addresses")}
        if "auto-assign" in entry:
            spec["autoAssign"] = entry["auto-assign"]
        if "avoid-buggy-ips" in entry:
            spec["avoidBuggyIPs"] = entry["avoid-buggy-ips"]
        # Before L2Advertisements existed every layer2 pool was announced from every node.
        sources.append(_Source(name, {}, spec, f"{where}: pool {name}", legacy=True))
    return sources
