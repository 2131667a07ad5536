"""Validating admission webhooks: which ones a write must pass, and calling them.

Before a create or update is stored, every ``ValidatingWebhookConfiguration``
webhook whose ``rules`` (operations, apiGroups, apiVersions, resources incl.
``plural/subresource`` and ``*``, scope), ``objectSelector`` and
``namespaceSelector`` match gets an ``admission.k8s.io/v1`` AdmissionReview
POSTed to its ``clientConfig.url`` (http, or https verified with
``caBundle``). A denial becomes the error kube-apiserver returns
(``admission webhook "<name>" denied the request: <message>``, code >= 400);
a webhook that cannot be called fails the request (500) unless its
``failurePolicy`` is ``Ignore``.

Not implemented (documented): ``clientConfig.service`` references (there is
no cluster network: they count as call failures), mutating webhooks (their
configurations are stored, never called), ``matchConditions``, DELETE and
CONNECT operations, and the ``matchPolicy: Equivalent`` mapping between
versions (rules must name the version that is written).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from ironlb.lab.apiserver import errors
from ironlb.lab.apiserver.registry import ResourceType
from ironlb.lab.apiserver.selectors import SelectorError, label_selector_matches

log = logging.getLogger(__name__)

CONFIGS = ("admissionregistration.k8s.io", "validatingwebhookconfigurations")
_EXEMPT = {CONFIGS, ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")}


@dataclass(frozen=True)
class Attributes:
    """What a write is, as admission sees it."""

    operation: str  # "CREATE" | "UPDATE"
    rtype: ResourceType
    namespace: str  # "" for cluster-scoped
    name: str
    subresource: str | None
    obj: Mapping[str, Any]
    old: Mapping[str, Any] | None
    namespace_labels: Mapping[str, str]
    dry_run: bool = False  # dryRun=All: the review says so, nothing will be stored


def _listed(value: str, allowed: Sequence[str] | None) -> bool:
    return allowed is not None and ("*" in allowed or value in allowed)


def rule_matches(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    rtype = attrs.rtype
    if not _listed(attrs.operation, rule.get("operations")):
        return False
    if not _listed(rtype.group, rule.get("apiGroups")):
        return False
    if not _listed(rtype.version, rule.get("apiVersions")):
        return False
    wanted = f"{rtype.plural}/{attrs.subresource}" if attrs.subresource else rtype.plural
    resources = list(rule.get("resources") or ())
    found = any(
        r == wanted
        or (r == "*" and not attrs.subresource)
        or r == "*/*"
        or (attrs.subresource and r in (f"*/{attrs.subresource}", f"{rtype.plural}/*"))
        for r in resources
    )
    if not found:
        return False
    scope = rule.get("scope", "*")
    namespaced = rtype.namespaced
    return bool(scope == "*" or (scope == "Namespaced") == namespaced)


def _labels(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def webhook_matches(webhook: Mapping[str, Any], attrs: Attributes) -> bool:
    if not any(rule_matches(rule, attrs) for rule in webhook.get("rules") or ()):
        return False
    try:
        object_ok = label_selector_matches(
            webhook.get("objectSelector"), _labels(attrs.obj)
        ) or label_selector_matches(webhook.get("objectSelector"), _labels(attrs.old))
        if attrs.rtype.storage_key == ("", "namespaces"):
            ns_labels = _labels(attrs.obj)
        elif attrs.rtype.namespaced:
            ns_labels = attrs.namespace_labels
        else:
            return object_ok
        return object_ok and label_selector_matches(webhook.get("namespaceSelector"), ns_labels)
    except SelectorError:
        return False


def matching_webhooks(
    configurations: Sequence[Mapping[str, Any]], attrs: Attributes
) -> list[Mapping[str, Any]]:
    """The webhooks (across all configurations, in order) that must admit this write."""
    if attrs.rtype.storage_key in _EXEMPT:
        return []
    return [
        webhook
        for config in configurations
        for webhook in config.get("webhooks") or ()
        if isinstance(webhook, Mapping) and webhook_matches(webhook, attrs)
    ]


def review_request(attrs: Attributes) -> dict[str, Any]:
    rtype = attrs.rtype
    gvk = {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
    gvr = {"group": rtype.group, "version": rtype.version, "resource": rtype.plural}
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": attrs.name,
        "operation": attrs.operation,
        "userInfo": {"username": "ironlb-lab", "groups": ["system:masters"]},
        "object": attrs.obj,
        "oldObject": attrs.old,
        "dryRun": attrs.dry_run,
        "options": {
            "apiVersion": "meta.k8s.io/v1",
            "kind": "CreateOptions" if attrs.operation == "CREATE" else "UpdateOptions",
        },
    }
    if attrs.namespace:
        request["namespace"] = attrs.namespace
    if attrs.subresource:
        request["subResource"] = attrs.subresource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def denial(name: str, status: Mapping[str, Any] | None) -> errors.ApiError:
    status = status or {}
    code = int(status.get("code") or 0)
    prefix = f'admission webhook "{name}" denied the request'
    message = status.get("message") or status.get("reason")
    return errors.ApiError(
        max(code, 400),
        str(status.get("reason") or ""),
        f"{prefix}: {message}" if message else f"{prefix} without explanation",
    )


class AdmissionCaller:
    """Calls matching webhooks over HTTP(S); one client session per server."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def admit(self, webhooks: Sequence[Mapping[str, Any]], attrs: Attributes) -> None:
        """Raise the apiserver's error if any webhook denies (or fails under policy Fail)."""
        for webhook in webhooks:
            name = str(webhook.get("name", ""))
            try:
                response = await self._call(webhook, review_request(attrs))
            except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
                if webhook.get("failurePolicy", "Fail") == "Ignore":
                    log.info("webhook %s failed, ignored by its failurePolicy: %s", name, exc)
                    continue
                raise errors.ApiError(
                    500,
                    "InternalError",
                    f'Internal error occurred: failed calling webhook "{name}": {exc}',
                ) from exc
            if not response.get("allowed"):
                raise denial(name, response.get("status"))

    async def _call(self, webhook: Mapping[str, Any], review: dict[str, Any]) -> dict[str, Any]:
        config = webhook.get("clientConfig") or {}
        url = config.get("url")
        if not url:
            raise ValueError("only clientConfig.url is supported by the lab API server")
        ssl_context: ssl.SSLContext | None = None
        if str(url).startswith("https:"):
            ssl_context = ssl.create_default_context()
            if config.get("caBundle"):
                ssl_context = ssl.create_default_context(
                    cadata=base64.b64decode(config["caBundle"]).decode()
                )
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=float(webhook.get("timeoutSeconds") or 10))
        async with asyncio.timeout(timeout.total):
            async with self._session.post(
                url, json=review, ssl=ssl_context if ssl_context else True, timeout=timeout
            ) as rsp:
                if rsp.status != 200:
                    raise ValueError(f"the webhook answered HTTP {rsp.status}")
                body = await rsp.json(content_type=None)
        response = body.get("response") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise ValueError("the webhook's answer has no AdmissionReview response")
        if response.get("uid") != review["request"]["uid"]:
            raise ValueError("the webhook's answer has the wrong uid")
        return response
