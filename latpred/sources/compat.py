"""Compatibility shims for building old model code under NumPy 2. All shims live here.

tf2cv 0.0.18 (imgclsmob) predates NumPy 2, which removed the deprecated scalar aliases
(``np.int`` etc., deprecated in NumPy 1.20, removed in 1.24). regnet.py calls ``.astype(np.int)``.
"""
from __future__ import annotations

# alias -> builtin it used to stand for (NumPy 1.20 release notes, "Using the aliases of builtin types")
_REMOVED_ALIASES = {"int": int, "float": float, "bool": bool, "object": object, "complex": complex,
                    "str": str}


def apply_numpy_shims() -> list[str]:
    """Restore removed NumPy aliases that are missing; returns the names restored. Idempotent."""
    import numpy as np
    restored = []
    for name, value in _REMOVED_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)
            restored.append(name)
    return restored


def patch_tf2cv_grouped_conv() -> None:
    """Make tf2cv's grouped convolutions one grouped conv op instead of split + g convs + concat.

    tf2cv 0.0.18 ``common.Conv2d`` (groups > 1, not depthwise) splits the input, runs one Conv2D per
    group and concatenates, because TF once lacked grouped convs on CPU. imgclsmob's PyTorch
    originals use a single ``nn.Conv2d(groups=g)``, and TF >= 2.9 converts one grouped conv op to a
    single TFLite CONV_2D (filter in-channels = in/groups). The per-group kernels are concatenated
    along the output axis, which is exactly the grouped filter, so outputs are unchanged. Idempotent.
    """
    from tf2cv.models import common
    if getattr(common.Conv2d, "_latpred_grouped", False):
        return
    import tensorflow as tf
    original_call = common.Conv2d.call

    def call(self, x):
        if self.use_conv or self.use_dw_conv:
            return original_call(self, x)
        if self.use_pad:
            x = self.pad(x)
        if self.data_format != "channels_last":
            raise ValueError("grouped conv patch supports channels_last only")
        part = x.shape[:-1] + (x.shape[-1] // self.groups,)
        for conv in self.convs:
            if not conv.built:
                conv.build(part)
        first = self.convs[0]
        kernel = tf.concat([c.kernel for c in self.convs], axis=-1)
        y = tf.nn.conv2d(x, kernel, strides=first.strides, padding="VALID",
                         dilations=first.dilation_rate)
        if first.use_bias:
            y = tf.nn.bias_add(y, tf.concat([c.bias for c in self.convs], axis=0))
        return y

    common.Conv2d.call = call
    common.Conv2d._latpred_grouped = True
