"""Dev-time tool: turn the ``k8s-proto`` sdist into the descriptor set the lab API loads.

``k8s-proto`` 0.0.3 (PyPI, 2019, Apache-2.0) ships protoc output for
Kubernetes 1.14's ``core/v1`` and the apimachinery packages it imports. Its
``generated_pb2.py`` files are old-style (they build descriptors by hand) and
cannot be imported with protobuf >= 4, and it pins ``protobuf<4``, so it cannot
be a runtime dependency next to protobuf 7. Each file does embed its
``FileDescriptorProto`` as the ``serialized_pb`` literal, though: this script
reads those literals with :mod:`ast` (no code from the package is run) and
writes them, unchanged, as one ``FileDescriptorSet``.

Usage::

    pip download --no-deps k8s-proto==0.0.3 -d /tmp/k8s-proto
    python scripts/extract_k8s_proto.py /tmp/k8s-proto/k8s-proto-0.0.3.tar.gz \
        ironlb/lab/apiserver/k8s_proto.binpb
"""

from __future__ import annotations

import ast
import sys
import tarfile
from pathlib import Path

from google.protobuf import descriptor_pb2


def serialized_file(source: str) -> bytes:
    """The ``serialized_pb`` bytes of one generated module's source text.

    Raises :class:`ValueError` if the module holds no such literal.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "serialized_pb":
            value = node.value
            if isinstance(value, ast.Call) and value.args:  # _b('...'): latin-1 text
                value = value.args[0]
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value.encode("latin1")
            if isinstance(value, ast.Constant) and isinstance(value.value, bytes):
                return value.value
    raise ValueError("no serialized_pb literal")


def extract(sdist: Path) -> descriptor_pb2.FileDescriptorSet:
    """Every ``generated_pb2.py`` descriptor of the sdist, dependencies first."""
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if not member.name.endswith("generated_pb2.py"):
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            proto = descriptor_pb2.FileDescriptorProto()
            proto.ParseFromString(serialized_file(handle.read().decode()))
            files[proto.name] = proto
    ordered: list[descriptor_pb2.FileDescriptorProto] = []

    def visit(name: str) -> None:
        if name in files and files[name] not in ordered:
            for dependency in files[name].dependency:
                visit(dependency)
            ordered.append(files[name])

    for name in sorted(files):
        visit(name)
    result = descriptor_pb2.FileDescriptorSet()
    result.file.extend(ordered)
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} K8S_PROTO_SDIST OUTPUT.binpb", file=sys.stderr)
        return 2
    descriptor_set = extract(Path(argv[1]))
    Path(argv[2]).write_bytes(descriptor_set.SerializeToString(deterministic=True))
    for proto in descriptor_set.file:
        print(f"{proto.name}: {len(proto.message_type)} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
