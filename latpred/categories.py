"""Operation categories of the paper's Table 3, and how framework op types map onto them."""
from __future__ import annotations

CONV2D = "Conv2D"
GROUPED_CONV2D = "GroupedConv2D"
DEPTHWISE_CONV2D = "DepthwiseConv2D"
FULLY_CONNECTED = "FullyConnected"
MEAN = "Mean"
CONCAT = "Concat"
SPLIT = "Split"
POOLING = "Pooling"
PADDING = "Padding"
ELEMENTWISE = "ElementWise"
OTHER = "Other"

CATEGORIES = (CONV2D, GROUPED_CONV2D, DEPTHWISE_CONV2D, FULLY_CONNECTED, MEAN, CONCAT, SPLIT,
              POOLING, PADDING, ELEMENTWISE, OTHER)
CONV_CATEGORIES = (CONV2D, GROUPED_CONV2D, DEPTHWISE_CONV2D)

# TFLite builtin op names (schema BuiltinOperator) -> category. Convolutions are refined by groups.
TFLITE_CATEGORY = {
    "CONV_2D": CONV2D,
    "DEPTHWISE_CONV_2D": DEPTHWISE_CONV2D,
    "FULLY_CONNECTED": FULLY_CONNECTED,
    "BATCH_MATMUL": FULLY_CONNECTED,
    "MEAN": MEAN,
    "CONCATENATION": CONCAT,
    "SPLIT": SPLIT,
    "SPLIT_V": SPLIT,
    "AVERAGE_POOL_2D": POOLING,
    "MAX_POOL_2D": POOLING,
    "L2_POOL_2D": POOLING,
    "PAD": PADDING,
    "PADV2": PADDING,
    "MIRROR_PAD": PADDING,
}
# Element-wise arithmetic and activations (one output element per input element).
TFLITE_ELEMENTWISE = {
    "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "POW",
    "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LEAKY_RELU", "PRELU", "LOGISTIC", "TANH",
    "HARD_SWISH", "ELU", "GELU", "EXP", "LOG", "SQRT", "RSQRT", "SQUARE", "ABS", "NEG", "SIN",
    "COS", "FLOOR", "CEIL", "ROUND", "SIGN", "ADD_N", "FLOOR_DIV", "FLOOR_MOD",
    "EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL",
}

ONNX_CATEGORY = {
    "Gemm": FULLY_CONNECTED,
    "MatMul": FULLY_CONNECTED,
    "GlobalAveragePool": MEAN,
    "ReduceMean": MEAN,
    "Concat": CONCAT,
    "Split": SPLIT,
    "AveragePool": POOLING,
    "MaxPool": POOLING,
    "GlobalMaxPool": POOLING,
    "Pad": PADDING,
}
ONNX_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Relu", "LeakyRelu", "PRelu", "Sigmoid",
    "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Gelu", "Exp", "Log", "Sqrt", "Abs", "Neg",
    "Clip", "Sum", "Mean", "Floor", "Ceil", "Round", "Sign", "Reciprocal", "Erf", "Softplus",
    "BatchNormalization", "Equal", "Greater", "Less", "Mish",
}


def conv_category(groups: int, in_channels: int, out_channels: int) -> str:
    """Depthwise when every group sees one input channel; grouped when 1 < groups; else plain."""
    if groups > 1 and groups == in_channels and out_channels % in_channels == 0:
        return DEPTHWISE_CONV2D
    if groups > 1:
        return GROUPED_CONV2D
    return CONV2D


def tflite_category(op_type: str) -> str:
    if op_type in TFLITE_CATEGORY:
        return TFLITE_CATEGORY[op_type]
    if op_type in TFLITE_ELEMENTWISE:
        return ELEMENTWISE
    return OTHER


def onnx_category(op_type: str) -> str:
    if op_type in ONNX_CATEGORY:
        return ONNX_CATEGORY[op_type]
    if op_type in ONNX_ELEMENTWISE:
        return ELEMENTWISE
    return OTHER


# Element-wise op types that read two tensors (TFLite and ONNX spellings); used by the CPU kernel
# features and the nn-Meter baseline.
BINARY_ELEMENTWISE_TYPES = frozenset({
    "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "POW", "ADD_N",
    "FLOOR_DIV", "FLOOR_MOD", "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Sum"})
