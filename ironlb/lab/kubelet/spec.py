"""What a lab Pod's containers run: argv, environment and files, decided from the Pod alone.

Pure functions over Pod, Secret and ConfigMap objects (plain dicts as the API
serves them), so the rules are unit-tested without processes or namespaces;
:mod:`ironlb.lab.kubelet.agent` does the I/O. The rules:

- **Image.** A container whose image's repository ends in ``ironlb``
  (``ironlb:dev``, ``ghcr.io/acme/ironlb:0.1``, ``ironlb@sha256:...``; see
  :func:`is_project_image`) runs its ``command`` + ``args`` as a process;
  ``ironlb``/``lbctl``/``kubectl-lb`` as the first word run this tree's entry
  points with the interpreter of the kubelet (:func:`container_argv`), and an
  empty ``command`` means the image's entry point ``ironlb``. Any other image
  runs :mod:`ironlb.lab.podserver` named after the Pod, on every
  ``containerPort`` over both TCP and UDP (8080/tcp + 8053/udp without ports).
- **Environment.** ``env`` in order, as the kubelet does: ``value`` with
  ``$(VAR)`` expanded from variables defined earlier (``$$`` escapes, unknown
  references stay as written); ``valueFrom.fieldRef`` (``metadata.name``,
  ``.namespace``, ``.uid``, ``.labels['k']``, ``.annotations['k']``,
  ``spec.nodeName``, ``spec.serviceAccountName``, ``status.podIP(s)``,
  ``status.hostIP(s)``); ``secretKeyRef`` and ``configMapKeyRef`` (``optional``
  honoured). ``command``/``args`` get ``$(VAR)`` expanded from the whole
  environment. A reference that cannot be resolved is a :class:`ConfigError`,
  which the kubelet reports as ``CreateContainerConfigError``, as the
  Kubernetes kubelet does.
- **Files.** Secret and ConfigMap volumes and the service-account token cannot
  be mounted at their ``mountPath`` without changing the root file system, so
  they are written under the pod's directory and every ``mountPath`` that
  appears as a path in ``command``, ``args`` or an env value is rewritten to
  that directory (:func:`rewrite_paths`); ``IRONLB_LAB_MOUNTS`` lists the
  mapping (``mountPath=dir`` joined by ``:``) for programs that build paths
  themselves. The API is reached with a per-pod kubeconfig (``KUBECONFIG``),
  since kopf's in-cluster login reads the fixed path
  ``/var/run/secrets/kubernetes.io/serviceaccount``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

PROJECT_REPOSITORY = "ironlb"
PROJECT_IMAGE = "ironlb:dev"
PODSERVER_MODULE = "ironlb.lab.podserver"
SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
MOUNTS_ENV = "IRONLB_LAB_MOUNTS"
_ENTRY_POINTS = {
    "ironlb": ("-m", "ironlb.cli"),
    "lbctl": ("-c", "import sys; from ironlb.lbctl.cli import main; sys.exit(main())"),
    "kubectl-lb": ("-c", "import sys; from ironlb.lbctl.cli import main; sys.exit(main())"),
}
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")

Obj = Mapping[str, Any]


class ConfigError(ValueError):
    """A container's configuration cannot be resolved; ``str()`` is the one-line reason."""


def is_project_image(image: str) -> bool:
    """Whether ``image`` is this project's image: its repository's last path part is ``ironlb``.

    The tag (``:dev``) and digest (``@sha256:...``) are ignored, and so is a
    registry host with a port (``localhost:5000/ironlb``).
    """
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0] == PROJECT_REPOSITORY


def decode_data(obj: Obj | None) -> dict[str, str]:
    """A Secret's ``data`` (base64) merged with its ``stringData``, or a ConfigMap's ``data``.

    Raises :class:`ConfigError` for a value that is not base64 or not UTF-8.
    """
    if obj is None:
        return {}
    kind = obj.get("kind")
    result: dict[str, str] = {}
    for key, value in (obj.get("data") or {}).items():
        if kind == "Secret":
            try:
                result[key] = base64.b64decode(str(value), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                name = (obj.get("metadata") or {}).get("name")
                raise ConfigError(f"secret {name!r} key {key!r} is not base64 UTF-8") from None
        else:
            result[key] = str(value)
    for key, value in (obj.get("stringData") or {}).items():
        result[key] = str(value)
    return result


def referenced_objects(pod: Obj) -> tuple[set[str], set[str]]:
    """Names of the Secrets and ConfigMaps a Pod's env and volumes refer to (secrets, maps)."""
    secrets: set[str] = set()
    maps: set[str] = set()
    spec = pod.get("spec") or {}
    for container in spec.get("containers") or []:
        for var in container.get("env") or []:
            source = var.get("valueFrom") or {}
            if "secretKeyRef" in source:
                secrets.add(str(source["secretKeyRef"].get("name", "")))
            if "configMapKeyRef" in source:
                maps.add(str(source["configMapKeyRef"].get("name", "")))
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            secrets.add(str(volume["secret"].get("secretName", "")))
        if "configMap" in volume:
            maps.add(str(volume["configMap"].get("name", "")))
    return secrets, maps


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names replaced, ``$$`` -> ``$``, others kept."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _VAR_REF.sub(one, text)


def field_value(pod: Obj, path: str) -> str:
    """The value a ``fieldRef.fieldPath`` selects (Kubernetes' downward API paths).

    Raises :class:`ConfigError` for a path the downward API does not offer.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace", "default"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(a["ip"] for a in status.get("podIPs") or []),
        "status.hostIPs": ",".join(a["ip"] for a in status.get("hostIPs") or []),
    }
    if path in simple:
        return str(simple[path] or "")
    keyed = _FIELD_KEY.match(path)
    if keyed:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    raise ConfigError(f"unsupported fieldRef.fieldPath {path!r}")


def _key_ref(
    kind: str,
    ref: Obj,
    objects: Mapping[str, Mapping[str, str] | None],
) -> str | None:
    """A ``secretKeyRef``/``configMapKeyRef`` value; None if optional and missing."""
    name = str(ref.get("name", ""))
    key = str(ref.get("key", ""))
    optional = bool(ref.get("optional", False))
    data = objects.get(name)
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {name}")
    return data[key]


def resolve_env(
    container: Obj,
    pod: Obj,
    secrets: Mapping[str, Mapping[str, str] | None],
    config_maps: Mapping[str, Mapping[str, str] | None],
) -> dict[str, str]:
    """A container's ``env`` as name -> value, in the kubelet's order and rules.

    ``secrets``/``config_maps`` map names to their decoded data (None: absent).
    ``pod`` must carry the status fields (podIP, hostIP) the env refers to.
    Raises :class:`ConfigError` naming the first reference that fails.
    """
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        name = str(var.get("name", ""))
        source = var.get("valueFrom")
        if source is None:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        value: str | None
        if "fieldRef" in source:
            value = field_value(pod, str(source["fieldRef"].get("fieldPath", "")))
        elif "secretKeyRef" in source:
            value = _key_ref("secret", source["secretKeyRef"], secrets)
        elif "configMapKeyRef" in source:
            value = _key_ref("configmap", source["configMapKeyRef"], config_maps)
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


@dataclass(frozen=True)
class Mount:
    """A ``volumeMount``: where the container expects it, and the directory the lab wrote."""

    mount_path: str  # /etc/ironlb/heartbeat
    host_dir: str  # <pod dir>/volumes/heartbeat


def mounts(container: Obj, pod_dir: str, service_account: bool) -> list[Mount]:
    """The container's volume mounts mapped into ``pod_dir`` (longest mountPath first).

    With ``service_account`` the token directory is mapped too, as the
    kubelet mounts it at :data:`SERVICE_ACCOUNT_PATH`.
    """
    found = [
        Mount(str(m["mountPath"]).rstrip("/") or "/", f"{pod_dir}/volumes/{m['name']}")
        for m in container.get("volumeMounts") or []
        if m.get("mountPath") and m.get("name")
    ]
    if service_account and not any(m.mount_path == SERVICE_ACCOUNT_PATH for m in found):
        found.append(Mount(SERVICE_ACCOUNT_PATH, f"{pod_dir}/serviceaccount"))
    return sorted(found, key=lambda m: len(m.mount_path), reverse=True)


def rewrite_paths(text: str, where: Sequence[Mount]) -> str:
    """``text`` with each mountPath that stands as a path (``/etc/x``, ``/etc/x/key``,
    ``--file=/etc/x/key``, inside a shell line) replaced by its directory.

    A mountPath only matches whole path components: ``/etc/xy`` is not under ``/etc/x``.
    """
    for mount in where:
        pattern = re.compile(r"(?<![\w./-])" + re.escape(mount.mount_path) + r"(?=$|[/\s\"';:|&)])")
        text = pattern.sub(mount.host_dir.replace("\\", "\\\\"), text)
    return text


def volume_files(
    pod: Obj,
    secrets: Mapping[str, Mapping[str, str] | None],
    config_maps: Mapping[str, Mapping[str, str] | None],
) -> dict[str, dict[str, str]]:
    """Secret and ConfigMap volumes as volume name -> relative path -> content.

    ``items`` (key -> path) select and rename keys as in Kubernetes; other
    volume kinds (``emptyDir``, ...) are empty directories. Raises
    :class:`ConfigError` for a missing, non-optional source or key, or a
    path that leaves the volume.
    """
    result: dict[str, dict[str, str]] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = str(volume.get("name", ""))
        source: Obj | None = None
        data: Mapping[str, str] | None = None
        if "secret" in volume:
            source = volume["secret"]
            ref = str(source.get("secretName", ""))
            data = secrets.get(ref)
            what = f'secret "{ref}"'
        elif "configMap" in volume:
            source = volume["configMap"]
            ref = str(source.get("name", ""))
            data = config_maps.get(ref)
            what = f'configmap "{ref}"'
        files: dict[str, str] = {}
        if source is not None:
            if data is None:
                if not source.get("optional", False):
                    raise ConfigError(f"volume {name}: {what} not found")
                data = {}
            items = source.get("items")
            chosen = (
                [(str(i["key"]), str(i.get("path") or i["key"])) for i in items]
                if items
                else [(k, k) for k in data]
            )
            for key, rel in chosen:
                if key not in data:
                    if source.get("optional", False):
                        continue
                    raise ConfigError(f"volume {name}: couldn't find key {key} in {what}")
                parts = PurePosixPath(rel).parts
                if not parts or rel.startswith("/") or ".." in parts:
                    raise ConfigError(f"volume {name}: bad item path {rel!r}")
                files[rel] = data[key]
        result[name] = files
    return result


def container_argv(container: Obj, pod_name: str, env: Mapping[str, str], python: str) -> list[str]:
    """The argv a container runs in the lab (see the module rules); ``python`` runs entry points.

    ``env`` is the resolved environment used for ``$(VAR)`` in command and args.
    """
    if not is_project_image(str(container.get("image", ""))):
        ports = [int(p["containerPort"]) for p in container.get("ports") or []]
        argv = [python, "-m", PODSERVER_MODULE, "--name", pod_name]
        for port in dict.fromkeys(ports):
            argv += [f"--tcp={port}", f"--udp={port}"]
        return argv
    command = [expand(str(a), env) for a in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    words = (command or ["ironlb"]) + args
    first = PurePosixPath(words[0]).name
    if first in _ENTRY_POINTS:
        return [python, *_ENTRY_POINTS[first], *words[1:]]
    return words
