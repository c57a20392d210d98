"""Model file -> graph IR. ``read_model`` picks the reader from the file's content, not its name."""
from __future__ import annotations

import os

from ..errors import LatpredError
from ..ir import ModelGraph


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """'1,224,224,3' -> (1, 224, 224, 3); a clear error for anything else."""
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in str(text).replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise LatpredError(f"--input-shape {text!r}: expected comma-separated integers, e.g. 1,224,224,3") from None
    if not dims or any(d <= 0 for d in dims):
        raise LatpredError(f"--input-shape {text!r}: every dimension must be a positive integer")
    return dims


def read_model(path: str | os.PathLike, input_shape: tuple[int, ...] | str | None = None) -> ModelGraph:
    """Read a .tflite or ONNX model into a :class:`~latpred.ir.ModelGraph`.

    ``input_shape`` fixes symbolic input dimensions of an ONNX model (ignored for .tflite, whose
    shapes are static)."""
    path = os.fspath(path)
    if isinstance(input_shape, str):
        input_shape = parse_input_shape(input_shape)
    if not os.path.exists(path):
        raise LatpredError(f"{path}: no such file")
    if os.path.isdir(path):
        raise LatpredError(f"{path}: is a directory, not a model file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise LatpredError(f"{path}: cannot read ({exc.strerror})") from None
    if len(head) == 8 and head[4:8] == b"TFL3":
        from .tflite import read_tflite
        return read_tflite(path)
    if path.lower().endswith(".tflite"):
        raise LatpredError(f"{path}: not a .tflite model (no TFL3 flatbuffer identifier)")
    from .onnx import read_onnx
    with open(path, "rb") as fh:
        return read_onnx(path, fh.read(), input_shape=input_shape)


__all__ = ["read_model", "parse_input_shape"]
