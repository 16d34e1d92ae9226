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


def moments_class() -> Any:
    """A message of one field, `repeated google.protobuf.Timestamp timestamp = 2`.

    System-stats and console records (StatsRecord, OutputRecord, OutputRawRecord) keep their
    moment in field 2. Parsed as this message, the bodies of many such records laid end to end
    give one Timestamp per field 2 met, in order, each read by protobuf itself; the other
    fields (stats items, console text) are skipped. See `wandb_records.newest_moment`."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    pool = descriptor_pool.DescriptorPool()
    timestamp = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(timestamp)
    pool.Add(timestamp)
    file = descriptor_pb2.FileDescriptorProto(
        name="reportgen/moments.proto",
        package="reportgen",
        syntax="proto3",
        dependency=[timestamp.name],
    )
    message = file.message_type.add(name="Moments")
    message.field.add(
        name="timestamp",
        number=2,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
        type_name=".google.protobuf.Timestamp",
    )
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("reportgen.Moments"))
