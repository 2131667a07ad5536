"""Find the Kubernetes credentials a process runs with, or say in one line why not.

In-cluster service account first, then ``KUBECONFIG`` / ``~/.kube/config``
(kopf's own loaders). A missing or unreadable kubeconfig is a
:class:`LoginFailed` naming the file, never a traceback.
"""

from __future__ import annotations

import kopf


class LoginFailed(RuntimeError):
    """No usable credentials; ``str()`` is the one-line reason."""


def login() -> kopf.ConnectionInfo:
    """The connection to use. Raises :class:`LoginFailed`."""
    settings = kopf.OperatorSettings()
    try:
        connection = kopf.login_with_service_account(
            settings=settings
        ) or kopf.login_with_kubeconfig(settings=settings)
    except kopf.LoginError as exc:
        raise LoginFailed(str(exc)) from None
    except OSError as exc:
        raise LoginFailed(
            f"cannot read the kubeconfig {exc.filename or ''}: {exc.strerror}"
        ) from None
    if connection is None:
        raise LoginFailed("no credentials (not in a cluster, no KUBECONFIG or ~/.kube/config)")
    return connection
