"""The lab API's Secret write rule, pure: ``stringData`` folded into ``data`` as base64."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from ironlb.lab.apiserver.secrets import SecretError, fold_string_data


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_string_data_is_encoded_into_data_and_dropped() -> None:
    secret: dict[str, Any] = {
        "metadata": {"name": "s"},
        "stringData": {"token": "s3cret", "ü": "ä"},
    }
    fold_string_data(secret)
    assert secret == {
        "metadata": {"name": "s"},
        "data": {"token": b64("s3cret"), "ü": b64("ä")},
        "type": "Opaque",
    }


def test_string_data_overrides_data_under_the_same_key_and_keeps_the_rest() -> None:
    secret: dict[str, Any] = {
        "data": {"token": b64("old"), "other": b64("kept")},
        "stringData": {"token": "new"},
        "type": "kubernetes.io/basic-auth",
    }
    fold_string_data(secret)
    assert secret["data"] == {"token": b64("new"), "other": b64("kept")}
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert "stringData" not in secret


def test_a_secret_without_string_data_only_gets_its_type() -> None:
    secret: dict[str, Any] = {"data": {"k": b64("v")}, "type": ""}
    fold_string_data(secret)
    assert secret == {"data": {"k": b64("v")}, "type": "Opaque"}
    empty: dict[str, Any] = {"stringData": {}}
    fold_string_data(empty)
    assert empty == {"data": {}, "type": "Opaque"}


@pytest.mark.parametrize(
    ("secret", "field"),
    [
        ({"stringData": {"port": 80}}, "stringData[port]"),
        ({"stringData": {"k": None}}, "stringData[k]"),
        ({"stringData": ["k", "v"]}, "stringData"),
        ({"stringData": "k=v"}, "stringData"),
        ({"data": ["x"], "stringData": {"k": "v"}}, "data"),
    ],
)
def test_malformed_secrets_are_refused_unchanged(secret: dict[str, Any], field: str) -> None:
    before = copy.deepcopy(secret)
    with pytest.raises(SecretError) as caught:
        fold_string_data(secret)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert secret == before
