"""wandb's `Record` message class, without importing the `wandb` package.

`from wandb.proto import wandb_internal_pb2` first runs `wandb/__init__.py`, which imports the
whole client (settings, pydantic models, artifacts): about half a second per process, paid by
every build and by every worker process that decodes run files, for a class the reader builds
from one descriptor. Here the same descriptors are read from wandb's generated modules (the
serialized `.proto` files they register) and loaded into a pool of our own, so the messages
are wandb's own, parsed by the same protobuf runtime, and the client is never started.

Anything unexpected (another layout of wandb's files, a protobuf wandb does not ship code for)
falls back to the plain import, which is always right, only slower. A process that has already
imported wandb uses its classes as they are.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

# The generated modules of wandb_internal.proto and of the files it imports, in import order.
_GENERATED = ("wandb_base_pb2.py", "wandb_telemetry_pb2.py", "wandb_internal_pb2.py")
_SERIALIZED = re.compile(rb"AddSerializedFile\((b'.*?')\)\s*$", re.MULTILINE)


def record_class() -> Any:
    """The `wandb_internal.Record` message class."""
    if "wandb" not in sys.modules:
        try:
            return _record_class_from_descriptors()
        except Exception:  # any surprise: the plain import decides
            pass
    from wandb.proto import wandb_internal_pb2

    module: Any = wandb_internal_pb2  # generated code: no stubs
    return module.Record


def _record_class_from_descriptors() -> Any:
    import google.protobuf
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        empty_pb2,
        message_factory,
        struct_pb2,
        timestamp_pb2,
    )

    spec = importlib.util.find_spec("wandb")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("wandb is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)), "proto")
    folder = folder / f"v{google.protobuf.__version__.split('.')[0]}"
    pool = descriptor_pool.DescriptorPool()
    for module in (empty_pb2, struct_pb2, timestamp_pb2):
        file = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        pool.Add(file)
    for name in _GENERATED:
        found = _SERIALIZED.search((folder / name).read_bytes())
        if found is None:
            raise ImportError(f"no serialized descriptor in {folder / name}")
        pool.AddSerializedFile(ast.literal_eval(found.group(1).decode("ascii")))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("wandb_internal.Record"))


def record_list_class(record: Any) -> Any:
    """`record` (wandb's `Record` class) with every field repeated and no oneof: a message
    that, parsed from many records laid end to end, gives each record's fields as list items
    (its `stats`, say, one StatsRecord per record that holds one), each decoded exactly as the
    record's own parse decodes it. See `wandb_records.timed_records`."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: Any) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
        added.add(file.name)

    for dependency in record.DESCRIPTOR.file.dependencies:
        add(dependency)
    file = descriptor_pb2.FileDescriptorProto()
    record.DESCRIPTOR.file.CopyToProto(file)
    message = next(m for m in file.message_type if m.name == record.DESCRIPTOR.name)
    for field in message.field:
        field.label = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
        field.ClearField("oneof_index")
        field.ClearField("proto3_optional")
    del message.oneof_decl[:]
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(record.DESCRIPTOR.full_name))
