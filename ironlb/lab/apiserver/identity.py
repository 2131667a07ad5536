"""Who a lab API caller is: ServiceAccount tokens (TokenRequest) and the lab admin.

A real cluster authenticates every request; the lab checks no credentials,
but it must still tell the controller's and the speakers' requests apart so
the chart's RBAC can be compared with what each one does. Pods get their
ServiceAccount token the way the kubelet gets it, through the TokenRequest
API (``POST /api/v1/namespaces/NS/serviceaccounts/NAME/token``); a request
bearing such a token is that ServiceAccount. Any other token, or none, is
the lab's admin (``ironlb-lab``, ``system:masters``), so kubeconfigs written
for the lab keep working. Tokens live in memory: they end with the server.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "ADMIN",
    "TOKEN_SECONDS_DEFAULT",
    "TokenRequestError",
    "Tokens",
    "UserInfo",
    "service_account_user",
    "token_request",
]

#: TokenRequestSpec.expirationSeconds when the request gives none (kube-apiserver: 1 hour).
TOKEN_SECONDS_DEFAULT = 3600
#: kube-apiserver refuses expirationSeconds below 10 minutes.
_TOKEN_SECONDS_MIN = 600
_TOKEN_SECONDS_MAX = 2**32


@dataclass(frozen=True)
class UserInfo:
    """An authenticated caller (``authentication.k8s.io/v1`` ``UserInfo``)."""

    username: str
    groups: tuple[str, ...] = ()


#: The caller of every request that carries no token the lab issued.
ADMIN = UserInfo("ironlb-lab", ("system:masters", "system:authenticated"))


def service_account_user(namespace: str, name: str) -> UserInfo:
    """The user a ServiceAccount's token authenticates as, with kube-apiserver's
    groups (Kubernetes docs, "Service account tokens": ``system:serviceaccounts``
    and ``system:serviceaccounts:<namespace>``)."""
    return UserInfo(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
    )


class Tokens:
    """Bearer tokens the lab issued for ServiceAccounts (TokenRequest), in memory.

    ``issue`` gives a new random token (URL-safe, 32 bytes of entropy) for a
    ServiceAccount; ``user`` resolves a request's ``Authorization`` header
    value to its :class:`UserInfo`, :data:`ADMIN` for anything else.
    Thread-safe: the lab API may run in a thread beside sync tests.
    """

    def __init__(self) -> None:
        self._users: dict[str, UserInfo] = {}
        self._lock = threading.Lock()

    def issue(self, namespace: str, name: str) -> str:
        token = f"ironlb-lab-sa.{secrets.token_urlsafe(32)}"
        with self._lock:
            self._users[token] = service_account_user(namespace, name)
        return token

    def user(self, authorization: str | None) -> UserInfo:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return ADMIN
        with self._lock:
            return self._users.get(token.strip(), ADMIN)


class TokenRequestError(ValueError):
    """A TokenRequest body the API refuses (the message is kube-apiserver's field error)."""


def token_request(
    body: Any, token: str, now: datetime, namespace: str, name: str
) -> dict[str, Any]:
    """The answer to ``POST serviceaccounts/NAME/token``: the ``authentication.k8s.io/v1``
    ``TokenRequest`` with ``status.token`` and ``status.expirationTimestamp``.

    ``body`` is the request's TokenRequest (``spec.expirationSeconds``,
    default 3600, at least 600; ``spec.audiences`` echoed). Raises
    :class:`TokenRequestError` for a body that is not a TokenRequest object
    or has an out-of-range ``expirationSeconds``.
    """
    if not isinstance(body, Mapping):
        raise TokenRequestError("TokenRequest must be an object")
    spec = body.get("spec")
    spec = {} if spec is None else spec
    if not isinstance(spec, Mapping):
        raise TokenRequestError("spec: Invalid value: must be an object")
    seconds = spec.get("expirationSeconds", TOKEN_SECONDS_DEFAULT)
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise TokenRequestError("spec.expirationSeconds: Invalid value: must be an integer")
    if not _TOKEN_SECONDS_MIN <= seconds <= _TOKEN_SECONDS_MAX:
        raise TokenRequestError(
            f"spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration "
            "less than 10 minutes"
            if seconds < _TOKEN_SECONDS_MIN
            else f"spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration "
            "larger than 2^32 seconds"
        )
    audiences = spec.get("audiences") or []
    expires = now + timedelta(seconds=seconds)
    meta = body.get("metadata") if isinstance(body.get("metadata"), Mapping) else {}
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {**dict(meta or {}), "name": name, "namespace": namespace},
        "spec": {
            "audiences": list(audiences) if isinstance(audiences, list) else [],
            "expirationSeconds": seconds,
            "boundObjectRef": spec.get("boundObjectRef"),
        },
        "status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
