"""The lab API's audit log and ServiceAccount tokens, with real kubectl and the
``kubernetes`` client: who made which request is what the chart's RBAC is checked
against. Skipped where kubectl is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config, watch

from ironlb.lab.apiserver import ServerThread, run_in_thread
from ironlb.lab.apiserver.audit import AuditLog
from tests.cluster.apiserver_helpers import run_kubectl

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

SA_USER = "system:serviceaccount:default:bot"


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[tuple[ServerThread, Path]]:
    with run_in_thread() as api:
        api.server.audit = AuditLog(tmp_path / "audit.log")
        kubeconfig = tmp_path / "kubeconfig"
        api.write_kubeconfig(kubeconfig)
        yield api, kubeconfig


def events(api: ServerThread, user: str) -> list[tuple[str, str, str, str, int]]:
    assert api.server.audit is not None
    return [
        (
            e["verb"],
            e.get("objectRef", {}).get("resource", ""),
            e.get("objectRef", {}).get("namespace", ""),
            e.get("objectRef", {}).get("subresource", ""),
            e["responseStatus"]["code"],
        )
        for e in api.server.audit.events
        if e["user"]["username"] == user
    ]


def test_kubectl_create_token_names_the_service_account_in_the_audit_log(
    audited: tuple[ServerThread, Path],
) -> None:
    api, kubeconfig = audited
    missing = run_kubectl(kubeconfig, "create", "token", "bot")
    assert missing.returncode == 1 and 'serviceaccounts "bot" not found' in missing.stderr
    assert run_kubectl(kubeconfig, "create", "serviceaccount", "bot").returncode == 0
    made = run_kubectl(kubeconfig, "create", "token", "bot", "--duration=2h")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("ironlb-lab-sa.")

    # kubectl (client-go) sends no credentials to a plain-HTTP server, so the token is
    # used here through the kubernetes client, as the controller and the speakers use theirs.
    bot_client = client.ApiClient(
        client.Configuration(
            host=api.url,
            api_key={"authorization": token},
            api_key_prefix={"authorization": "Bearer"},
        )
    )
    try:
        client.CoreV1Api(bot_client).list_namespaced_config_map("default")
    finally:
        bot_client.close()
    bad = run_kubectl(kubeconfig, "create", "token", "bot", "--duration=1m")
    assert bad.returncode == 1 and "less than 10 minutes" in bad.stderr

    assert api.server.audit is not None
    mine = events(api, SA_USER)
    assert ("list", "configmaps", "default", "", 200) in mine
    assert all(resource != "serviceaccounts" for _, resource, *_ in mine)
    admin = events(api, "ironlb-lab")
    assert ("create", "serviceaccounts", "default", "token", 404) in admin
    assert ("create", "serviceaccounts", "default", "token", 201) in admin
    assert ("create", "serviceaccounts", "default", "token", 400) in admin
    assert ("create", "serviceaccounts", "default", "", 201) in admin
    # the same events, one JSON line each, in the file
    lines = [
        json.loads(line) for line in (kubeconfig.parent / "audit.log").read_text().splitlines()
    ]
    assert len(lines) == len(api.server.audit.events) and lines[0]["kind"] == "Event"


def test_a_client_library_watch_is_recorded_when_it_starts(
    audited: tuple[ServerThread, Path],
) -> None:
    api, kubeconfig = audited
    assert run_kubectl(kubeconfig, "create", "serviceaccount", "bot").returncode == 0
    token = run_kubectl(kubeconfig, "create", "token", "bot").stdout.strip()
    as_bot = yaml.safe_load(kubeconfig.read_text())
    as_bot["users"][0]["user"]["token"] = token
    bot_config = kubeconfig.parent / "bot.kubeconfig"
    bot_config.write_text(yaml.safe_dump(as_bot))
    api_client = config.new_client_from_config(str(bot_config))
    try:
        core = client.CoreV1Api(api_client)
        for _ in watch.Watch().stream(core.list_namespaced_secret, "default", timeout_seconds=1):
            pass
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": "m"}, "data": {"a": "1"}}
        )
        core.patch_namespaced_config_map("m", "default", {"data": {"a": "2"}})
        core.delete_namespaced_config_map("m", "default")
    finally:
        api_client.close()
    assert events(api, SA_USER) == [
        ("watch", "secrets", "default", "", 200),
        ("create", "configmaps", "default", "", 201),
        ("patch", "configmaps", "default", "", 200),
        ("delete", "configmaps", "default", "", 200),
    ]
    assert api.server.audit is not None
    stages = {e["stage"] for e in api.server.audit.events if e["verb"] == "watch"}
    assert stages == {"ResponseStarted"}


def test_ironlb_lab_apiserver_writes_the_audit_log_it_is_given(tmp_path: Path) -> None:
    log, kubeconfig = tmp_path / "audit.log", tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ironlb.cli",
            "lab",
            "apiserver",
            "--kubeconfig",
            str(kubeconfig),
            "--audit-log",
            str(log),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):
            if kubeconfig.exists():
                break
            if proc.poll() is not None:
                pytest.fail(f"apiserver exited: {proc.stderr.read() if proc.stderr else ''}")
            subprocess.run(["sleep", "0.05"], check=True)
        assert run_kubectl(kubeconfig, "get", "namespaces").returncode == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    verbs = [
        (e["verb"], e.get("objectRef", {}).get("resource"))
        for e in map(json.loads, log.read_text().splitlines())
    ]
    assert ("list", "namespaces") in verbs
