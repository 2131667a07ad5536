"""Kubernetes protobuf message classes for the kinds the lab API can read and write as protobuf.

Where the definitions come from:

- ``core/v1`` and apimachinery (``meta/v1`` ``ObjectMeta``, ``Time``,
  ``runtime.Unknown``, ``IntOrString``, ``Quantity``): the descriptors of the
  PyPI package ``k8s-proto`` 0.0.3 (2019; its messages are Kubernetes
  1.14's), unchanged, in ``k8s_proto.binpb`` (made by
  ``scripts/extract_k8s_proto.py``; that package's own modules need
  protobuf < 4 and cannot be imported).
- ``apps/v1`` ``Deployment`` and ``authentication/v1`` ``TokenRequest``
  (``kubectl create token``): not in ``k8s-proto``; the few messages are
  declared below with the field numbers of Kubernetes'
  ``k8s.io/api/apps/v1/generated.proto`` and
  ``k8s.io/api/authentication/v1/generated.proto`` (field numbers never
  change).

Kubernetes field numbers are stable, so these old definitions read bodies
from kubectl 1.32 except for fields added since; what they cannot read shows
up as unknown fields, which :mod:`~ironlb.lab.apiserver.protobody` refuses.
Pure: builds classes from data, no I/O beyond reading the package file.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

META = "k8s.io.apimachinery.pkg.apis.meta.v1"
CORE = "k8s.io.api.core.v1"
APPS = "k8s.io.api.apps.v1"
AUTHN = "k8s.io.api.authentication.v1"
INTSTR = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _F.TYPE_STRING,
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "bool": _F.TYPE_BOOL,
}

# apps/v1 messages as (name, [(field, number, type, repeated)]); a type that is not a
# scalar is a fully qualified message name.
_APPS_V1: tuple[tuple[str, tuple[tuple[str, int, str, bool], ...]], ...] = (
    (
        "Deployment",
        (
            ("metadata", 1, f"{META}.ObjectMeta", False),
            ("spec", 2, f"{APPS}.DeploymentSpec", False),
            ("status", 3, f"{APPS}.DeploymentStatus", False),
        ),
    ),
    (
        "DeploymentList",
        (
            ("metadata", 1, f"{META}.ListMeta", False),
            ("items", 2, f"{APPS}.Deployment", True),
        ),
    ),
    (
        "DeploymentSpec",
        (
            ("replicas", 1, "int32", False),
            ("selector", 2, f"{META}.LabelSelector", False),
            ("template", 3, f"{CORE}.PodTemplateSpec", False),
            ("strategy", 4, f"{APPS}.DeploymentStrategy", False),
            ("minReadySeconds", 5, "int32", False),
            ("revisionHistoryLimit", 6, "int32", False),
            ("paused", 7, "bool", False),
            ("progressDeadlineSeconds", 9, "int32", False),
        ),
    ),
    (
        "DeploymentStrategy",
        (
            ("type", 1, "string", False),
            ("rollingUpdate", 2, f"{APPS}.RollingUpdateDeployment", False),
        ),
    ),
    (
        "RollingUpdateDeployment",
        (
            ("maxUnavailable", 1, INTSTR, False),
            ("maxSurge", 2, INTSTR, False),
        ),
    ),
    (
        "DeploymentStatus",
        (
            ("observedGeneration", 1, "int64", False),
            ("replicas", 2, "int32", False),
            ("updatedReplicas", 3, "int32", False),
            ("readyReplicas", 7, "int32", False),
            ("availableReplicas", 4, "int32", False),
            ("unavailableReplicas", 5, "int32", False),
            ("conditions", 6, f"{APPS}.DeploymentCondition", True),
            ("collisionCount", 8, "int32", False),
        ),
    ),
    (
        "DeploymentCondition",
        (
            ("type", 1, "string", False),
            ("status", 2, "string", False),
            ("lastUpdateTime", 6, f"{META}.Time", False),
            ("lastTransitionTime", 7, f"{META}.Time", False),
            ("reason", 4, "string", False),
            ("message", 5, "string", False),
        ),
    ),
)


# authentication/v1 TokenRequest (what `kubectl create token` sends and reads).
_AUTHENTICATION_V1: tuple[tuple[str, tuple[tuple[str, int, str, bool], ...]], ...] = (
    (
        "TokenRequest",
        (
            ("metadata", 1, f"{META}.ObjectMeta", False),
            ("spec", 2, f"{AUTHN}.TokenRequestSpec", False),
            ("status", 3, f"{AUTHN}.TokenRequestStatus", False),
        ),
    ),
    (
        "TokenRequestSpec",
        (
            ("audiences", 1, "string", True),
            ("expirationSeconds", 4, "int64", False),
            ("boundObjectRef", 3, f"{AUTHN}.BoundObjectReference", False),
        ),
    ),
    (
        "BoundObjectReference",
        (
            ("kind", 1, "string", False),
            ("apiVersion", 2, "string", False),
            ("name", 3, "string", False),
            ("uid", 4, "string", False),
        ),
    ),
    (
        "TokenRequestStatus",
        (
            ("token", 1, "string", False),
            ("expirationTimestamp", 2, f"{META}.Time", False),
        ),
    ),
)


def _declared_file(
    name: str,
    package: str,
    messages: tuple[tuple[str, tuple[tuple[str, int, str, bool], ...]], ...],
) -> descriptor_pb2.FileDescriptorProto:
    """A proto2 file of hand-declared messages over k8s-proto's core and meta files."""
    proto = descriptor_pb2.FileDescriptorProto(
        name=name,
        package=package,
        syntax="proto2",
        dependency=[
            "k8s.io/api/core/v1/generated.proto",
            "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
            "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
        ],
    )
    for message_name, fields in messages:
        message = proto.message_type.add(name=message_name)
        for field, number, kind, repeated in fields:
            entry = message.field.add(
                name=field,
                number=number,
                json_name=field,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if kind in _SCALARS:
                entry.type = _SCALARS[kind]
            else:
                entry.type = _F.TYPE_MESSAGE
                entry.type_name = f".{kind}"
    return proto


@cache
def pool() -> descriptor_pool.DescriptorPool:
    """A private descriptor pool with k8s-proto's files and the declared apps/v1 and
    authentication/v1 subsets."""
    found = descriptor_pool.DescriptorPool()
    data = resources.files("ironlb.lab.apiserver").joinpath("k8s_proto.binpb").read_bytes()
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(data)
    for proto in descriptor_set.file:  # stored dependencies first
        found.Add(proto)
    found.Add(_declared_file("ironlb/lab/apps_v1_deployment.proto", APPS, _APPS_V1))
    found.Add(_declared_file("ironlb/lab/authentication_v1_token.proto", AUTHN, _AUTHENTICATION_V1))
    return found


# (apiVersion, kind) -> protobuf package of the kinds served as protobuf.
_PACKAGES = {"v1": CORE, "apps/v1": APPS, "authentication.k8s.io/v1": AUTHN}


def message_class(api_version: str, kind: str) -> type[Message] | None:
    """The generated class for an object kind, or ``None`` when it has no definition here.

    ``api_version`` is the object's ``apiVersion`` (``"v1"``, ``"apps/v1"``);
    ``kind`` its kind, a list kind (``"SecretList"``) or ``DeleteOptions``."""
    if kind == "DeleteOptions":  # meta/v1, registered in every group version
        return message_factory.GetMessageClass(pool().FindMessageTypeByName(f"{META}.{kind}"))
    package = _PACKAGES.get(api_version)
    if package is None or not kind.isidentifier():
        return None
    try:
        descriptor = pool().FindMessageTypeByName(f"{package}.{kind}")
    except KeyError:
        return None
    if "metadata" not in descriptor.fields_by_name:  # a part (PodSpec), not an object kind
        return None
    return message_factory.GetMessageClass(descriptor)


def unknown_class() -> type[Message]:
    """``runtime.Unknown``: the envelope of every Kubernetes protobuf body."""
    return message_factory.GetMessageClass(pool().FindMessageTypeByName(UNKNOWN))
