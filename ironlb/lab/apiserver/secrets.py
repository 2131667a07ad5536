"""Secret writes: ``stringData`` folded into ``data``, ``type`` defaulted to Opaque.

kube-apiserver does this when it converts a v1 Secret to its internal form, so it
holds for every write (create, update, patch, server-side apply) and nothing ever
stores or returns ``stringData``: each of its values is base64-encoded into
``data`` under the same key, replacing a ``data`` entry there (Kubernetes API
reference, Secret v1: "stringData ... is merged into the data field on write,
overwriting any existing values. The stringData field is never output when
reading from the API"). Helm charts write Secrets this way. Pure: no I/O.
"""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["SecretError", "fold_string_data"]


class SecretError(ValueError):
    """A ``stringData`` or ``data`` field of the wrong shape; ``field`` is its path."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.problem = message


def fold_string_data(obj: dict[str, Any]) -> None:
    """In place: move ``obj["stringData"]`` (str -> str) into ``obj["data"]`` as base64
    and set ``type`` to ``Opaque`` when absent or empty.

    Raises ``SecretError`` when ``stringData`` is not a mapping of strings or
    ``data`` is not a mapping; ``obj`` is then unchanged.
    """
    string_data = obj.get("stringData")
    data = obj.get("data")
    if data is not None and not isinstance(data, dict):
        raise SecretError("data", f"must be a map of base64 strings, not {data!r}")
    if string_data is not None:
        if not isinstance(string_data, dict):
            raise SecretError("stringData", f"must be a map of strings, not {string_data!r}")
        for key, value in string_data.items():
            if not isinstance(value, str):
                raise SecretError(f"stringData[{key}]", f"must be a string, not {value!r}")
        folded = dict(data or {})
        for key, value in string_data.items():
            folded[key] = base64.b64encode(value.encode()).decode("ascii")
        obj["data"] = folded
    obj.pop("stringData", None)
    if not obj.get("type"):
        obj["type"] = "Opaque"
