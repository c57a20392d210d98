"""Model sources: the synthetic NAS space (``nas``) and the paper's real-world CNNs (``zoo``), built
into real .tflite (TFLite converter) and ONNX (tf2onnx) files by ``export``.

Only ``nas`` is TensorFlow-free; the builders import TensorFlow lazily inside functions."""
