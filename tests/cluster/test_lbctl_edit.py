"""``lbctl pool edit`` against the local Kubernetes API over real HTTP, with real editors.

The editor is a small Python script (``$EDITOR``/``$KUBE_EDITOR``) that records the file it
was given and rewrites it; the conflict case has it change the pool on the server with the
real kubectl while "the user" is still editing. The interactive re-open runs ``lbctl`` as a
subprocess whose stdin is a pseudo-terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from ironlb.lbctl.cli import main
from ironlb.lbctl.edit import CANCELLED, editor_command
from ironlb.operator.allocator import PoolUsage
from ironlb.operator.pool_status import pool_status

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "charts/ironlb/crds/ipaddresspools.ironlb.io.yaml"
LBCTL = Path(sys.executable).parent / "lbctl"
GVP = ("ironlb.io", "v1alpha1", "ipaddresspools")
KUBECTL = "/usr/bin/kubectl"


@pytest.fixture
def api(kube_client: client.ApiClient) -> client.ApiClient:
    client.ApiextensionsV1Api(kube_client).create_custom_resource_definition(
        yaml.safe_load(CRD.read_text())
    )
    return kube_client


@pytest.fixture
def kc(api_thread_kubeconfig: Path, api: client.ApiClient) -> Path:
    return api_thread_kubeconfig


@pytest.fixture
def tmpdir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary files (lbctl's edit file) go to a directory of this test only."""
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(work))
    monkeypatch.delenv("KUBE_EDITOR", raising=False)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    return work


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create_pool(api: client.ApiClient, name: str, addresses: list[str]) -> dict[str, Any]:
    body = {
        "apiVersion": "ironlb.io/v1alpha1",
        "kind": "IPAddressPool",
        "metadata": {"name": name},
        "spec": {"addresses": addresses},
    }
    custom(api).create_cluster_custom_object(*GVP, body)
    status = pool_status(
        PoolUsage(1, 0, 255, 0), None, previous=None, generation=1, now=datetime.now(UTC)
    )
    return dict(custom(api).patch_cluster_custom_object_status(*GVP, name, {"status": status}))


def get_pool(api: client.ApiClient, name: str) -> dict[str, Any]:
    return dict(custom(api).get_cluster_custom_object(*GVP, name))


def editor(tmp_path: Path, body: str, name: str = "editor") -> Path:
    """An executable Python editor script; ``path`` is the file to edit, ``seen`` records every
    version it was given (``seen-1.yaml``, ``seen-2.yaml``, ...)."""
    script = tmp_path / f"{name}.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, re, sys, pathlib, subprocess\n"
        "path = pathlib.Path(sys.argv[-1])\n"
        f"seen_dir = pathlib.Path({str(tmp_path)!r})\n"
        "n = len(list(seen_dir.glob('seen-*.yaml'))) + 1\n"
        "(seen_dir / f'seen-{n}.yaml').write_text(path.read_text())\n"
        "text = path.read_text()\n" + textwrap.dedent(body) + "path.write_text(text)\n"
    )
    script.chmod(0o755)
    return script


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_editor_order_is_kubectls() -> None:
    assert editor_command({"KUBE_EDITOR": "nano -w", "EDITOR": "ed"}) == ["nano", "-w"]
    assert editor_command({"KUBE_EDITOR": " ", "EDITOR": "code --wait"}) == ["code", "--wait"]
    assert editor_command({}) == ["vi"]


def test_valid_edit_is_saved_and_status_kept(
    kc: Path,
    api: client.ApiClient,
    tmp_path: Path,
    tmpdir_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = create_pool(api, "web", ["198.18.10.0/24"])
    script = editor(
        tmp_path,
        """
        text = text.replace("198.18.10.0/24", "198.18.10.0/25")
        text = text.replace("avoidBuggyIPs: false", "avoidBuggyIPs: true")
        """,
    )
    monkeypatch.setenv("EDITOR", str(script))
    code, out, err = run(capsys, "--kubeconfig", str(kc), "pool", "edit", "web")
    assert (code, err) == (0, "")
    assert out == "ipaddresspool.ironlb.io/web edited\n"
    after = get_pool(api, "web")
    assert after["spec"]["addresses"] == ["198.18.10.0/25"]
    assert after["spec"]["avoidBuggyIPs"] is True
    assert after["status"] == before["status"]  # the update did not touch status
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    shown = (tmp_path / "seen-1.yaml").read_text()
    assert shown.startswith("# ")
    assert "status:" not in shown and "managedFields" not in shown
    assert f"resourceVersion: '{before['metadata']['resourceVersion']}'" in shown
    assert list(tmpdir_env.iterdir()) == []  # the temporary file is gone


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ('text = text.replace("198.18.10.0/24", "198.18.10.1/24")', "host bits"),
        ('text = text.replace("198.18.10.0/24", "198.18.20.0/24")', "overlap"),
        ('text = text.replace("name: web", "name: web2")', "metadata.name cannot be changed"),
        ('text = text.replace("kind: IPAddressPool", "kind: Service")', "kind cannot be changed"),
        ('text = text.replace("spec:", "spec: [")', "not valid YAML"),
        ('text = text.replace("  addresses:", "  colour: blue\\n  addresses:")', "colour"),
        ('text = "- just\\n- a list\\n"', "one YAML mapping"),
    ],
)
def test_invalid_edit_refused_server_unchanged(
    kc: Path,
    api: client.ApiClient,
    tmp_path: Path,
    tmpdir_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    edit: str,
    reason: str,
) -> None:
    before = create_pool(api, "web", ["198.18.10.0/24"])
    create_pool(api, "other", ["198.18.20.0/28"])
    monkeypatch.setenv("EDITOR", str(editor(tmp_path, edit + "\n")))
    code, out, err = run(capsys, "--kubeconfig", str(kc), "pool", "edit", "web")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("lbctl: ")
    assert reason.lower() in err.lower()
    assert get_pool(api, "web") == before
    kept = list(tmpdir_env.iterdir())
    assert len(kept) == 1 and str(kept[0]) in err  # the edit is not lost
    assert kept[0].read_text() != (tmp_path / "seen-1.yaml").read_text()


@pytest.mark.parametrize(
    "edit",
    ["pass", 'text = "# only a comment now\\n" + text', 'text = "# all gone\\n"', 'text = ""'],
)
def test_no_change_cancels(
    kc: Path,
    api: client.ApiClient,
    tmp_path: Path,
    tmpdir_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    edit: str,
) -> None:
    before = create_pool(api, "web", ["198.18.10.0/24"])
    monkeypatch.setenv("EDITOR", str(editor(tmp_path, edit + "\n")))
    code, out, err = run(capsys, "--kubeconfig", str(kc), "pool", "edit", "web")
    assert (code, out, err) == (0, CANCELLED + "\n", "")
    assert get_pool(api, "web") == before
    assert list(tmpdir_env.iterdir()) == []


def test_conflict_is_one_line_and_keeps_the_other_change(
    kc: Path,
    api: client.ApiClient,
    tmp_path: Path,
    tmpdir_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_pool(api, "web", ["198.18.10.0/24"])
    patch = '{"spec":{"autoAssign":false}}'
    script = editor(
        tmp_path,
        f"""
        subprocess.run([{KUBECTL!r}, "--kubeconfig", {str(kc)!r}, "patch", "ipaddresspool",
                        "web", "--type", "merge", "-p", {patch!r}], check=True,
                       stdout=subprocess.DEVNULL)
        text = text.replace("198.18.10.0/24", "198.18.10.0/25")
        """,
    )
    monkeypatch.setenv("EDITOR", str(script))
    code, out, err = run(capsys, "--kubeconfig", str(kc), "pool", "edit", "web")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "changed on the server" in err and "edit it again" in err
    after = get_pool(api, "web")
    assert after["spec"]["autoAssign"] is False  # the other writer's change stands
    assert after["spec"]["addresses"] == ["198.18.10.0/24"]  # ours was not forced over it
    kept = list(tmpdir_env.iterdir())
    assert len(kept) == 1 and "198.18.10.0/25" in kept[0].read_text()


def test_editor_failures_are_one_line(
    kc: Path,
    api: client.ApiClient,
    tmp_path: Path,
    tmpdir_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = create_pool(api, "web", ["198.18.10.0/24"])
    monkeypatch.setenv("EDITOR", str(tmp_path / "no-such-editor"))
    code, out, err = run(capsys, "--kubeconfig", str(kc), "pool", "edit", "web")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "cannot run the editor" in err
    monkeypatch.setenv("KUBE_EDITOR", "false")  # wins over EDITOR, and fails
    code, out, err = run(capsys, "--kubeconfig", str(kc), "pool", "edit", "web")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "exited with status 1" in err
    code, out, err = run(capsys, "--kubeconfig", str(kc), "pool", "edit", "nope")
    assert (code, err) == (1, "lbctl: IPAddressPool 'nope' not found\n")
    assert get_pool(api, "web") == before


def test_interactive_refusal_reopens_with_the_reason(
    kc: Path, api: client.ApiClient, tmp_path: Path, tmpdir_env: Path
) -> None:
    """On a terminal a refused file comes back with the reason in its header; saving it
    fixed goes through, saving it unchanged again gives up with one line."""
    create_pool(api, "web", ["198.18.10.0/24"])
    script = editor(
        tmp_path,
        """
        if n == 1:
            text = re.sub(r"198[.]18[.]10[.]0/[0-9]+", "198.18.10.0/33", text)
        elif os.environ.get("FIX") == "1":
            text = text.replace("198.18.10.0/33", "198.18.10.0/26")
        """,
    )

    def lbctl_on_a_tty(fix: str) -> subprocess.CompletedProcess[str]:
        leader, follower = os.openpty()
        try:
            env = {**os.environ, "EDITOR": str(script), "FIX": fix, "TMPDIR": str(tmpdir_env)}
            return subprocess.run(
                [str(LBCTL), "--kubeconfig", str(kc), "pool", "edit", "web"],
                stdin=follower,
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=False,
            )
        finally:
            os.close(leader)
            os.close(follower)

    done = lbctl_on_a_tty("1")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "ipaddresspool.ironlb.io/web edited\n"
    reopened = (tmp_path / "seen-2.yaml").read_text()
    assert "# ipaddresspools.ironlb.io 'web' was not saved:" in reopened
    assert "198.18.10.0/33" in reopened  # the user's text, kept as typed
    assert get_pool(api, "web")["spec"]["addresses"] == ["198.18.10.0/26"]

    for seen in tmp_path.glob("seen-*.yaml"):
        seen.unlink()
    gave_up = lbctl_on_a_tty("0")
    assert (gave_up.returncode, gave_up.stdout) == (1, "")
    assert gave_up.stderr.count("\n") == 1 and "/33" in gave_up.stderr
    assert len(list(tmp_path.glob("seen-*.yaml"))) == 2  # opened twice, then gave up
    assert get_pool(api, "web")["spec"]["addresses"] == ["198.18.10.0/26"]
