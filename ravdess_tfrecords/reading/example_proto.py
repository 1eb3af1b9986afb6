"""``tf.train.Example`` without TensorFlow: the protobuf runtime with the message declared here.

The declarations mirror TensorFlow's ``tensorflow/core/example/feature.proto`` and
``example.proto`` (package ``tensorflow``, the same field numbers, so the wire format is
the same): ``Example`` -> ``Features`` -> ``map<string, Feature>``, a ``Feature`` one of
``BytesList`` / ``FloatList`` / ``Int64List``. They live in a pool of their own, so they
never clash with TensorFlow's in a process that also imports it.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _message(name: str, *fields: tuple[str, int, int, int, str]) -> descriptor_pb2.DescriptorProto:
    """``fields``: ``(name, number, type, label, type_name)``."""
    out = descriptor_pb2.DescriptorProto(name=name)
    for field, number, type_, label, type_name in fields:
        added = out.field.add(name=field, number=number, type=type_, label=label)
        if type_name:
            added.type_name = type_name
    return out


def _file() -> descriptor_pb2.FileDescriptorProto:
    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    msg = _F.TYPE_MESSAGE
    proto = descriptor_pb2.FileDescriptorProto(name="ravdess_tfrecords/example.proto", package="tensorflow",
                                               syntax="proto3")
    proto.message_type.extend([
        _message("BytesList", ("value", 1, _F.TYPE_BYTES, rep, "")),
        # proto3 packs repeated scalars (``[packed = true]`` in TensorFlow's file); unpacked ones parse too.
        _message("FloatList", ("value", 1, _F.TYPE_FLOAT, rep, "")),
        _message("Int64List", ("value", 1, _F.TYPE_INT64, rep, "")),
    ])
    feature = _message("Feature", ("bytes_list", 1, msg, opt, ".tensorflow.BytesList"),
                       ("float_list", 2, msg, opt, ".tensorflow.FloatList"),
                       ("int64_list", 3, msg, opt, ".tensorflow.Int64List"))
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = _message("Features", ("feature", 1, msg, rep, ".tensorflow.Features.FeatureEntry"))
    entry = features.nested_type.add(name="FeatureEntry")  # what protoc makes of map<string, Feature>
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=msg, label=opt, type_name=".tensorflow.Feature")
    entry.options.map_entry = True
    proto.message_type.extend([feature, features,
                               _message("Example", ("features", 1, msg, opt, ".tensorflow.Features"))])
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Example"))
