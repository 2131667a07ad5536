"""Helm v4 for the lab: install, upgrade, roll back and uninstall charts, render templates.

``make demo`` installs ``charts/ironlb`` into the lab API and the tests drive a small
chart through a whole release lifecycle, both without a ``helm`` binary: the
``helm-python-sdk`` package bundles Helm's Go SDK (v4) as a shared library. This
module is the thin typed layer over it that the rest of ironlb uses, so the SDK's
loose dicts and multi-line errors stop here:

- :class:`Helm` holds one SDK connection (a kubeconfig and a namespace) and answers
  :class:`Release` records; :func:`template` renders offline (``helm template``).
- Every refusal, ours or Helm's, is one :class:`HelmFailed` whose message is one line
  naming the action and the release; the SDK's exception is its ``__cause__``.

Helm's own defaults are kept, because they are what users get from ``helm install``:
release storage in Secrets (driver ``secret``: one Secret
``sh.helm.release.v1.<release>.v<revision>`` of type ``helm.sh/release.v1`` per
revision, labelled ``owner=helm``, ``name``, ``status``, ``version``), server-side
apply of the manifests with ``fieldValidation=Strict`` (Helm v4's default), and no
wait unless asked. Helm names its field manager after the running program (the base
name of ``argv[0]``, so ``python`` here); the SDK offers no way to change it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

import helm_python

__all__ = ["DEFAULT_TIMEOUT", "Helm", "HelmFailed", "Release", "WaitStrategy", "template"]

#: Helm's ``--timeout`` default (5 minutes), in seconds.
DEFAULT_TIMEOUT = 300

#: Helm v4's ``--wait`` strategies that wait for readiness (``hookOnly``, Helm's
#: default, is ``wait=None`` here).
WaitStrategy = Literal["watcher", "legacy"]


class HelmFailed(Exception):
    """A Helm action was refused or failed; the message is one line.

    ``not_found`` is true when Helm said the release (or revision) does not exist.
    """

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


@dataclass(frozen=True)
class Release:
    """One revision of a release, as Helm reports it.

    ``status`` is Helm's word (``deployed``, ``superseded``, ``uninstalled``,
    ``failed``, ``pending-install`` ...). ``manifest`` is the rendered YAML of every
    object (``---``-separated), empty where Helm's answer leaves it out (history).
    """

    name: str
    namespace: str
    revision: int
    status: str
    chart: str
    app_version: str
    manifest: str = field(repr=False)  # whole objects, Secrets included: not in repr

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> Release:
        """From the SDK's release summary dict (keys ``name``, ``revision``, ...).

        Raises ``HelmFailed`` when a key the record needs is missing.
        """
        try:
            return cls(
                name=str(summary["name"]),
                namespace=str(summary["namespace"]),
                revision=int(summary["revision"]),
                status=str(summary["status"]),
                chart=f"{summary['chart_name']}-{summary['chart_version']}",
                app_version=str(summary.get("app_version", "")),
                manifest=str(summary.get("manifest", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HelmFailed(f"unexpected release summary from Helm: {exc!r}") from exc


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "no detail given"


def _failed(action: str, release: str, exc: helm_python.HelmError) -> HelmFailed:
    return HelmFailed(
        f"helm {action} {release}: {_one_line(str(exc))}",
        not_found=isinstance(exc, helm_python.HelmNotFoundError),
    )


def _check_release_name(action: str, release: str) -> None:
    """Helm's rule: at most 53 characters of a DNS-1123 label (lower case, digits, ``-``)."""
    try:
        helm_python.validate_release_name(release)
    except helm_python.HelmError as exc:
        raise HelmFailed(
            f"helm {action} {release!r}: invalid release name: {_one_line(str(exc))}"
        ) from exc


def _check_values(action: str, release: str, values: dict[str, Any] | None) -> str | None:
    """The values as JSON (what the SDK sends), refusing what JSON cannot carry."""
    if values is None:
        return None
    if not isinstance(values, dict):
        raise HelmFailed(f"helm {action} {release}: values must be a mapping, not {values!r}")
    try:
        return json.dumps(values)
    except (TypeError, ValueError) as exc:
        raise HelmFailed(f"helm {action} {release}: values are not JSON data: {exc}") from exc


def _check_chart(action: str, release: str, chart: str | os.PathLike[str]) -> str:
    """A chart directory (with ``Chart.yaml``) or a packaged ``.tgz`` on disk."""
    path = Path(chart)
    if path.is_dir() and (path / "Chart.yaml").is_file():
        return os.fspath(path)
    if path.is_file() and path.name.endswith((".tgz", ".tar.gz")):
        return os.fspath(path)
    raise HelmFailed(
        f"helm {action} {release}: {os.fspath(path)!r} is not a chart "
        "(a directory with Chart.yaml, or a .tgz)"
    )


def _check_wait(action: str, release: str, wait: str | None) -> None:
    if wait is not None and wait not in get_args(WaitStrategy):
        raise HelmFailed(
            f"helm {action} {release}: wait must be one of "
            f"{', '.join(get_args(WaitStrategy))} or None, not {wait!r}"
        )


def _check_timeout(action: str, release: str, timeout: int) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise HelmFailed(
            f"helm {action} {release}: timeout must be a positive number of seconds, "
            f"not {timeout!r}"
        )


class Helm:
    """Helm actions on one cluster and namespace, like the ``helm`` CLI with
    ``--kubeconfig`` and ``--namespace``.

    Nothing is contacted until the first action. Use as a context manager (or call
    :meth:`close`) to free the SDK's handle. Actions on different releases may run in
    parallel threads; actions on one release must not (Helm's own rule).

    ``wait`` makes install and upgrade wait, up to ``timeout`` seconds, until every
    object is ready, as ``helm install --wait=<strategy>``: ``"watcher"`` (Helm v4's
    ``--wait`` default: kstatus over list + watch; a Deployment needs its replicas
    available, a LoadBalancer Service only its clusterIP) or ``"legacy"`` (Helm 3's
    polling waiter, where a LoadBalancer Service also needs an ingress address, which
    ironlb's controller writes). A bare lab API (``ironlb lab apiserver``) runs no
    Deployment controller, so waiting on a Deployment there ends in the timeout;
    ``ironlb lab cluster up`` runs the controllers and the kubelets, and it works.
    """

    def __init__(self, kubeconfig: str | os.PathLike[str], namespace: str = "default") -> None:
        """Raises ``HelmFailed`` when ``kubeconfig`` is not a file."""
        if not Path(kubeconfig).is_file():
            raise HelmFailed(f"helm: kubeconfig {os.fspath(kubeconfig)!r} is not a file")
        self.namespace = namespace
        try:
            self._config = helm_python.Config(
                kubeconfig_path=os.fspath(kubeconfig), namespace=namespace
            )
        except helm_python.HelmError as exc:
            raise HelmFailed(f"helm: {_one_line(str(exc))}") from exc

    def close(self) -> None:
        """Free the SDK's connection handle (idempotent)."""
        self._config.close()

    def __enter__(self) -> Helm:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def install(
        self,
        chart: str | os.PathLike[str],
        release: str,
        values: dict[str, Any] | None = None,
        *,
        wait: WaitStrategy | None = None,
        timeout: int = DEFAULT_TIMEOUT,
        create_namespace: bool = False,
    ) -> Release:
        """``helm install <release> <chart>``: revision 1, status ``deployed``. The
        chart's ``crds/`` are applied first (and, as Helm does, never deleted later);
        ``create_namespace`` is ``--create-namespace``.

        Raises ``HelmFailed`` for a bad name, chart, values, wait or timeout (nothing is
        sent), when the release exists, or when Helm fails (then Helm has recorded
        the revision as ``failed``, as the CLI does).
        """
        path = self._checked("install", release, chart, values, timeout, wait)
        try:
            summary = self._config.install(
                path,
                release,
                values,
                timeout=timeout,
                wait=wait,
                create_namespace=create_namespace,
            )
        except helm_python.HelmError as exc:
            raise _failed("install", release, exc) from exc
        return Release.from_summary(summary)

    def upgrade(
        self,
        chart: str | os.PathLike[str],
        release: str,
        values: dict[str, Any] | None = None,
        *,
        wait: WaitStrategy | None = None,
        timeout: int = DEFAULT_TIMEOUT,
    ) -> Release:
        """``helm upgrade <release> <chart>``: the next revision. Given values replace
        the previous revision's (over the chart's defaults); with none given Helm
        reuses the previous ones. Objects no longer rendered are deleted.

        Raises ``HelmFailed``; Helm's word for a release without a deployed revision
        (none, or only failed ones) is ``"<release>" has no deployed releases``.
        """
        path = self._checked("upgrade", release, chart, values, timeout, wait)
        try:
            summary = self._config.upgrade(path, release, values, timeout=timeout, wait=wait)
        except helm_python.HelmError as exc:
            raise _failed("upgrade", release, exc) from exc
        return Release.from_summary(summary)

    def rollback(self, release: str, revision: int | None = None) -> Release:
        """``helm rollback <release> [revision]`` (default: the previous one); answers
        the new revision that the rollback wrote.

        Raises ``HelmFailed`` (``not_found`` set for an unknown release or revision).
        """
        _check_release_name("rollback", release)
        if revision is not None and (isinstance(revision, bool) or revision < 1):
            raise HelmFailed(f"helm rollback {release}: revision must be >= 1, not {revision!r}")
        try:
            self._config.rollback(release, version=revision)
        except helm_python.HelmError as exc:
            raise _failed("rollback", release, exc) from exc
        return self.status(release)

    def uninstall(self, release: str, *, timeout: int = DEFAULT_TIMEOUT) -> Release:
        """``helm uninstall <release>``: deletes its objects and every revision's Secret;
        answers the last revision, status ``uninstalled``.

        Raises ``HelmFailed`` (``not_found`` set when there is no such release).
        """
        _check_release_name("uninstall", release)
        _check_timeout("uninstall", release, timeout)
        try:
            answer = self._config.uninstall(release, timeout=timeout)
        except helm_python.HelmError as exc:
            raise _failed("uninstall", release, exc) from exc
        return Release.from_summary(answer["release"])

    def status(self, release: str) -> Release:
        """``helm status <release>``: the latest revision, with its manifest."""
        _check_release_name("status", release)
        try:
            return Release.from_summary(self._config.status(release))
        except helm_python.HelmError as exc:
            raise _failed("status", release, exc) from exc

    def history(self, release: str) -> list[Release]:
        """``helm history <release>``: every stored revision, oldest first (no manifests)."""
        _check_release_name("history", release)
        try:
            summaries = self._config.history(release)
        except helm_python.HelmError as exc:
            raise _failed("history", release, exc) from exc
        return sorted((Release.from_summary(s) for s in summaries), key=lambda r: r.revision)

    def _checked(
        self,
        action: str,
        release: str,
        chart: str | os.PathLike[str],
        values: dict[str, Any] | None,
        timeout: int,
        wait: str | None,
    ) -> str:
        _check_release_name(action, release)
        _check_wait(action, release, wait)
        _check_values(action, release, values)
        _check_timeout(action, release, timeout)
        return _check_chart(action, release, chart)


def template(
    chart: str | os.PathLike[str],
    values: dict[str, Any] | None = None,
    *,
    release: str = "release-name",
    namespace: str = "default",
) -> dict[str, str]:
    """``helm template``: render offline, no cluster involved (``lookup`` finds nothing).

    Returns template path (``<chart>/templates/<file>``) -> rendered YAML, leaving
    out ``NOTES.txt`` and templates that render to nothing, as ``helm template``
    prints them. Raises ``HelmFailed`` for a bad chart, values or template.
    """
    _check_release_name("template", release)
    _check_values("template", release, values)
    path = _check_chart("template", release, chart)
    try:
        with helm_python.Chart.load(path) as loaded:
            rendered = loaded.render(values, name=release, namespace=namespace)
    except helm_python.HelmError as exc:
        raise _failed("template", release, exc) from exc
    return {
        name: text
        for name, text in sorted(rendered.items())
        if text.strip() and not name.endswith("NOTES.txt")
    }
