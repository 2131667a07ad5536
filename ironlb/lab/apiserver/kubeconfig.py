"""Kubeconfig files that point clients (kubectl, kubernetes, kopf) at a local API server."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

CONTEXT = "ironlb-lab"


def kubeconfig_dict(
    url: str, namespace: str = "default", token: str = "ironlb-lab"
) -> dict[str, Any]:
    """A one-context kubeconfig (context, cluster and user all named ``ironlb-lab``).

    The user's bearer token is ``token``: the lab server accepts any token or
    none; the dummy default is its admin, a token from TokenRequest
    (``kubectl create token``) a ServiceAccount (:mod:`~ironlb.lab.apiserver.identity`).
    """
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
    }


def write_kubeconfig(path: str | os.PathLike[str], url: str, token: str = "ironlb-lab") -> None:
    """Write atomically (temp file + rename), so a reader never sees half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.safe_dump(kubeconfig_dict(url, token=token), handle, sort_keys=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
