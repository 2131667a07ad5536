"""Names the workload controllers give: the pod template hash and random name suffixes.

Rules after Kubernetes (``pkg/controller/controller_utils.go`` ``ComputeHash``
and ``k8s.io/apimachinery/pkg/util/rand``): a Deployment's pods carry the label
``pod-template-hash``, the FNV-1a 32-bit hash of the pod template (plus the
collision count, when set) written in decimal and "safe-encoded": each
character ``c`` of the decimal string becomes ``ALPHABET[ord(c) % 27]``, so
the value never spells a word or looks like a number. Generated names end in
five random characters of the same alphabet (``SafeEncodeString`` and
``String(n)`` share it: vowels and the confusable ``0 1 3`` left out).

Kubernetes hashes the template with ``spew`` (Go's in-memory layout); this
module hashes its canonical JSON instead, so values differ from a real
cluster's but obey the same rules: the same template gives the same hash, a
changed template a different one.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

#: ``k8s.io/apimachinery/pkg/util/rand`` ``alphanums``.
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LENGTH = 5
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    """The 32-bit FNV-1a hash of ``data`` (``hash/fnv`` ``New32a``)."""
    value = _FNV32_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return value


def safe_encode(text: str) -> str:
    """``rand.SafeEncodeString``: each character mapped to ``ALPHABET[ord(c) % 27]``."""
    return "".join(ALPHABET[ord(c) % len(ALPHABET)] for c in text)


def template_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """The ``pod-template-hash`` of a pod template (a dict as the API serves it).

    Keys are sorted and ``metadata.creationTimestamp: null`` (which kubectl
    sends) is ignored, so equal templates hash equal whatever their source.
    """
    body = json.loads(json.dumps(template))
    meta = body.get("metadata")
    if isinstance(meta, dict) and meta.get("creationTimestamp") is None:
        meta.pop("creationTimestamp", None)
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += collision_count.to_bytes(4, "little", signed=True)
    return safe_encode(str(fnv1a_32(data)))


def random_suffix(rng: random.Random | None = None, length: int = SUFFIX_LENGTH) -> str:
    """``length`` random characters of :data:`ALPHABET` (``rand.String``)."""
    pick = (rng or random).choice
    return "".join(pick(ALPHABET) for _ in range(length))
