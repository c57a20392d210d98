"""NAS spec -> tf.keras (Keras 2, ``tf_keras``) model. TensorFlow is imported inside functions only.

Layers follow MobileNetV2: conv + ReLU6, linear projection in bottlenecks, residual add when stride 1
and channels match. BatchNorm is not built: in an inference graph the TFLite converter folds it into
the conv's bias, so conv-with-bias gives the same ops while building and converting ~2x faster.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Any

from .nas import SE_RATIO, split_sizes, validate_spec


def import_tf():
    """Import TensorFlow with Keras 2 (tf2cv and the converters need ``tf_keras``); quiet logs."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras
    tf.get_logger().setLevel("ERROR")
    logging.getLogger("absl").setLevel(logging.ERROR)     # the TFLite converter logs via absl
    return tf, tf_keras


def build_keras(spec: dict[str, Any]):
    """Build the model a spec describes; weights are seeded from the spec, so builds are repeatable."""
    validate_spec(spec)
    tf, keras = import_tf()
    layers = keras.layers
    split_layer, constant_layer, grouped_layer = _custom_layers()
    keras.utils.set_random_seed(_weight_seed(spec))

    def conv_bn(x, filters, kernel, stride=1, groups=1, act=True):
        if groups > 1:
            x = grouped_layer(filters, kernel, stride, groups)(x)
        else:
            x = layers.Conv2D(filters, kernel, strides=stride, padding="same")(x)
        return layers.ReLU(6.0)(x) if act else x

    def dw_bn(x, kernel, stride):
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same")(x)
        return layers.ReLU(6.0)(x)

    def squeeze_excite(x):
        channels = x.shape[-1]
        s = layers.GlobalAveragePooling2D()(x)                  # MEAN
        s = layers.Dense(max(1, channels // SE_RATIO), activation="relu")(s)   # FULLY_CONNECTED
        s = layers.Dense(channels, activation="sigmoid")(s)     # FULLY_CONNECTED + LOGISTIC
        s = layers.Reshape((1, 1, channels))(s)
        return layers.Multiply()([x, s])

    def elementwise(x, op):
        if op == "relu":
            return layers.ReLU()(x)
        if op == "relu6":
            return layers.ReLU(6.0)(x)
        if op in ("sigmoid", "tanh"):
            return layers.Activation(op)(x)
        return constant_layer(op)(x)                          # ADD / MUL with a constant vector

    inp = keras.Input(shape=tuple(spec["input_shape"]), name="input")
    stem = spec["stem"]
    x = conv_bn(inp, stem["out_channels"], stem["kernel"], stem["stride"])
    for b in spec["blocks"]:
        kind, out, stride = b["type"], b["out_channels"], b["stride"]
        if kind == "conv":
            x = conv_bn(x, out, b["kernel"], stride, groups=b["groups"])
        elif kind == "dwsep":
            x = dw_bn(x, b["kernel"], stride)
            x = conv_bn(x, out, 1)
        elif kind == "bottleneck":
            shortcut, cin = x, x.shape[-1]
            if b["expansion"] != 1:
                x = conv_bn(x, cin * b["expansion"], 1)
            x = dw_bn(x, b["kernel"], stride)
            if b["se"]:
                x = squeeze_excite(x)
            x = conv_bn(x, out, 1, act=False)
            if stride == 1 and cin == out:
                x = layers.Add()([shortcut, x])
        elif kind == "pool":
            pool = layers.AveragePooling2D if b["pool"] == "avg" else layers.MaxPooling2D
            x = pool(b["kernel"], strides=stride, padding="same")(x)
        else:
            parts = split_layer(split_sizes(x.shape[-1], b["splits"]))(x)
            x = layers.Concatenate()([elementwise(p, op) for p, op in zip(parts, b["ops"])])
    head = spec["head"]
    x = conv_bn(x, head["out_channels"], 1)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(head["classes"], name="logits")(x)
    return keras.Model(inp, out, name=spec["name"])


def _weight_seed(spec: dict[str, Any]) -> int:
    return (int(spec.get("seed", 0)) * 100_003 + int(spec.get("index", 0))) % (2 ** 31)


@functools.lru_cache(maxsize=None)
def _custom_layers():
    """Custom layers, defined on first use so that importing this module does not import TF."""
    tf, keras = import_tf()

    class Split(keras.layers.Layer):
        def __init__(self, sizes, **kw):
            super().__init__(**kw)
            self.sizes = list(sizes)

        def call(self, x):
            if len(set(self.sizes)) == 1:
                return tf.split(x, len(self.sizes), axis=-1)     # SPLIT
            return tf.split(x, self.sizes, axis=-1)              # SPLIT_V

    class ChannelConstant(keras.layers.Layer):
        """x + c or x * c with a per-channel constant c (an element-wise op with a weight)."""

        def __init__(self, op, **kw):
            super().__init__(**kw)
            self.op = op

        def build(self, shape):
            # Values away from 0 and 1, so the converter cannot drop x*1 or x+0.
            self.c = self.add_weight(name="c", shape=(shape[-1],),
                                     initializer=keras.initializers.RandomUniform(0.6, 0.9))

        def call(self, x):
            return x * self.c if self.op == "mul" else x + self.c

    class GroupedConv2D(keras.layers.Layer):
        """One Conv2D op whose filter has in_channels/groups channels (TF >= 2.9 grouped conv).

        keras' own ``Conv2D(groups=g)`` wraps the op in an XLA-compiled function that tf2onnx cannot
        export; the plain op converts to a grouped CONV_2D (TFLite) and Conv with group=g (ONNX)."""

        def __init__(self, filters, kernel, stride, groups, **kw):
            super().__init__(**kw)
            self.filters, self.kernel, self.stride, self.groups = filters, kernel, stride, groups

        def build(self, shape):
            self.w = self.add_weight(
                name="kernel", initializer="glorot_uniform",
                shape=(self.kernel, self.kernel, shape[-1] // self.groups, self.filters))
            self.b = self.add_weight(name="bias", initializer="zeros", shape=(self.filters,))

        def call(self, x):
            return tf.nn.bias_add(tf.nn.conv2d(x, self.w, strides=self.stride, padding="SAME"),
                                  self.b)

    return Split, ChannelConstant, GroupedConv2D
