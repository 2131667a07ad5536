"""``lbctl pool edit NAME``: change a pool in an editor, checked before it is saved.

It works the way ``kubectl edit`` does: the pool is written as YAML (without
``status`` and ``metadata.managedFields``, which the user cannot change) to a
temporary file under a ``#`` comment header, the editor runs on it
(``$KUBE_EDITOR``, then ``$EDITOR``, then ``vi``, kubectl's order), and the
saved file is checked with the admission webhook's rules
(:func:`ironlb.operator.webhook.pool_admission_problem`) before one update
is sent carrying the ``resourceVersion`` that was read, so a pool changed by
someone else in the meantime is refused by the server (409) and not
overwritten.

A refused file is reopened with the reason in its header when a person is at
the terminal (stdin is a TTY); otherwise, or when the reopened file comes back
unchanged, the command exits 1 with one line. Whenever the command fails
after the editor ran, the edited file is kept and its path named, so no edit
is lost. The checks (:func:`check_edit`) are pure; :func:`edit_cmd` does the
I/O.
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ironlb.lbctl.client import GROUP, VERSION, Cluster, LbctlError

__all__ = [
    "CANCELLED",
    "check_edit",
    "edit_cmd",
    "editable",
    "editor_command",
    "file_text",
    "strip_comments",
    "to_yaml",
]

#: What is printed (exit 0) when the saved file says what the server already has.
CANCELLED = "Edit cancelled, no changes made."

_HEADER = (
    "# Edit the IPAddressPool below and save to apply; lines starting with '#' are ignored.\n"
    "# Save it unchanged (or empty) to cancel. The spec is checked with the admission\n"
    "# webhook's rules before anything is sent; a refused file comes back with the reason.\n"
    "#\n"
)


def editable(pool: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``pool`` as the user edits it: no ``status``, no ``metadata.managedFields``."""
    obj = copy.deepcopy(dict(pool))
    obj.pop("status", None)
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def file_text(name: str, yaml_text: str, problem: str | None = None) -> str:
    """The temporary file's content: the header, ``problem`` (if any, for pool ``name``) as
    comments, then ``yaml_text`` (the pool, or the user's refused text kept as it was)."""
    header = _HEADER
    if problem is not None:
        header += f"# ipaddresspools.{GROUP} {name!r} was not saved:\n"
        header += "".join(f"# * {line}\n" for line in problem.splitlines() or [""])
        header += "#\n"
    return header + yaml_text


def to_yaml(obj: Mapping[str, Any]) -> str:
    """``obj`` as block-style YAML, keys in the server's order."""
    return yaml.safe_dump(dict(obj), sort_keys=False, default_flow_style=False)


def strip_comments(text: str) -> str:
    """``text`` without its whole-line ``#`` comments (as kubectl ignores them)."""
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#")
    )


def check_edit(
    original: Mapping[str, Any],
    text: str,
    others: Iterable[tuple[str, Mapping[str, Any]]],
) -> tuple[dict[str, Any] | None, str | None]:
    """Parse and check the saved file against the ``original`` editable object.

    Returns ``(None, None)`` when it says the same as ``original`` (or is
    empty: nothing to do), ``(obj, None)`` for an object to send, and
    ``(None, problem)`` with a one-line reason otherwise: YAML that does not
    parse or is not a mapping, a changed ``apiVersion``/``kind``/
    ``metadata.name``, or a spec the webhook would refuse (``others``: the
    other pools' ``(name, spec)``, the pool's own entry is skipped).
    """
    body = strip_comments(text)
    if not body.strip():
        return None, None
    try:
        edited = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, f"the file is not valid YAML{at}: {what}"
    if not isinstance(edited, dict):
        return None, f"the file must hold one YAML mapping, got {type(edited).__name__}"
    if edited == dict(original):
        return None, None
    name = str((original.get("metadata") or {}).get("name"))
    for field in ("apiVersion", "kind"):
        if edited.get(field) != original.get(field):
            return None, f"{field} cannot be changed (it must stay {original.get(field)!r})"
    meta = edited.get("metadata")
    if not isinstance(meta, dict):
        return None, "metadata must be a mapping"
    if meta.get("name") != name:
        return None, f"metadata.name cannot be changed (it must stay {name!r})"
    from ironlb.operator.webhook import pool_admission_problem

    spec = edited.get("spec")
    if not isinstance(spec, dict):
        return None, f"invalid IPAddressPool {name!r}: spec must be a mapping"
    problem = pool_admission_problem(name, spec, others)
    if problem is not None:
        return None, problem
    return edited, None


def editor_command(env: Mapping[str, str]) -> list[str]:
    """The editor to run, as argv: ``$KUBE_EDITOR``, else ``$EDITOR``, else ``vi`` (kubectl's
    order), split like a shell would so ``EDITOR="code --wait"`` works."""
    for var in ("KUBE_EDITOR", "EDITOR"):
        value = env.get(var, "").strip()
        if value:
            try:
                argv = shlex.split(value)
            except ValueError as exc:
                message = f"${var} {value!r} cannot be split into a command: {exc}"
                raise LbctlError(message) from None
            if argv:
                return argv
    return ["vi"]


def _run_editor(argv: list[str], path: Path) -> None:
    try:
        result = subprocess.run([*argv, str(path)], check=False)
    except OSError as exc:
        raise LbctlError(
            f"cannot run the editor {argv[0]!r}: {exc.strerror or exc}; set KUBE_EDITOR or EDITOR"
        ) from None
    if result.returncode != 0:
        raise LbctlError(
            f"the editor {shlex.join(argv)} exited with status {result.returncode}; "
            f"nothing was saved (the file is kept at {path})"
        )


def edit_cmd(cluster: Cluster, args: argparse.Namespace) -> int:
    """Run the edit loop for ``args.name``; exit 0 when saved or cancelled, 1 otherwise."""
    pool = cluster.get_pool(args.name)
    original = editable(pool)
    original.setdefault("apiVersion", f"{GROUP}/{VERSION}")
    original.setdefault("kind", "IPAddressPool")
    argv = editor_command(os.environ)
    interactive = sys.stdin.isatty()
    fd, name = tempfile.mkstemp(prefix=f"lbctl-edit-{args.name}-", suffix=".yaml")
    path = Path(name)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(file_text(args.name, to_yaml(original)))
    refused: str | None = None  # the body last refused, to notice it coming back unchanged
    while True:
        _run_editor(argv, path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LbctlError(f"cannot read the edited file {path}: {exc}") from None
        body = strip_comments(text)
        others = [
            (str(p["metadata"]["name"]), p.get("spec") or {})
            for p in cluster.list_pools()
            if p["metadata"]["name"] != args.name
        ]
        edited, problem = check_edit(original, text, others)
        if problem is None and edited is None:
            path.unlink(missing_ok=True)
            print(CANCELLED)
            return 0
        if problem is not None:
            if not interactive or body == refused:
                raise LbctlError(f"{problem}; nothing was saved (your edit is kept at {path})")
            refused = body
            path.write_text(file_text(args.name, body, problem), encoding="utf-8")
            continue
        assert edited is not None
        try:
            cluster.replace_pool(args.name, edited)
        except LbctlError as exc:
            raise LbctlError(
                f"{exc.message}; your edit is kept at {path}", exc.code, status=exc.status
            ) from None
        path.unlink(missing_ok=True)
        print(f"ipaddresspool.{GROUP}/{args.name} edited")
        return 0
