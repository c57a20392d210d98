"""The synthetic NAS space of the paper (§4.3.2, Fig. 12): a fixed stem, 9 sampled blocks, a head.

A sample is a JSON-able *spec* dict; the spec alone rebuilds the model (see ``keras_build``).
No TensorFlow here: sampling and validation are pure Python.

Choices the paper leaves open follow MobileNetV2 (Sandler et al. 2018) and are documented in
``datasets/synthetic/CARD.md``:
  * stem: 3x3 conv, stride 2, 32 channels, BN + ReLU6;
  * downsampling: four stride-2 blocks at MobileNetV2-like positions (blocks 2, 3, 5, 7); a block
    that cannot downsample (split) passes its stride on to the next block that can;
  * blocks that cannot change channels (pooling, split) keep their input channel count;
  * a grouped conv's groups divide its input channels (>= 2 channels per group, else it would be a
    depthwise conv) and its output channels are a multiple of the groups (channels are sampled uniformly among the multiples of what the next grouped conv needs);
  * head: 1x1 conv to C10 + BN + ReLU6, global average pool, fully connected to 1000 classes.
"""
from __future__ import annotations

import json
import math
import random
from typing import Any

from ..errors import LatpredError

SPEC_VERSION = 1
NUM_BLOCKS = 9
DEFAULT_INPUT_SIZE = 224
STEM_CHANNELS = 32
NUM_CLASSES = 1000

BLOCK_TYPES = ("conv", "dwsep", "bottleneck", "pool", "split")
CHANNEL_CHANGING = ("conv", "dwsep", "bottleneck")
KERNELS = (3, 5, 7)
GROUP_CHOICES = tuple(4 * k for k in range(1, 17))      # "group size 4k, 1 <= k <= 16"
EXPANSIONS = (1, 3, 6)
POOL_TYPES = ("avg", "max")
POOL_WINDOWS = (1, 3)
SPLITS = (2, 3, 4)
# Element-wise op applied to each part of a split block (paper: "element-wise operations").
ELEMENTWISE_OPS = ("relu", "relu6", "sigmoid", "tanh", "add", "mul")
# Stride-2 positions (0-based block index), MobileNetV2-like: 112 -> 56 -> 28 -> 14 -> 7 at 224.
DOWNSAMPLE_BLOCKS = (1, 2, 4, 6)
SE_RATIO = 4                    # squeeze channels = expanded channels / 4 (MnasNet, MobileNetV3)

# Output channel ranges of blocks 1..9 (C1..C9) and the head conv (C10).
CHANNEL_RANGES = [(8, 80)] * 5 + [(80, 400)] * 4
HEAD_RANGE = (1200, 1800)


def _randint(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi]; built on random() whose output Python guarantees across versions."""
    return lo + int(rng.random() * (hi - lo + 1))


def _choice(rng: random.Random, options):
    options = list(options)
    return options[_randint(rng, 0, len(options) - 1)]


def arch_seed(seed: int, index: int) -> str:
    """Per-architecture seed: sample ``index`` of ``seed`` does not depend on how many are drawn."""
    return f"latpred-nas-v{SPEC_VERSION}:{int(seed)}:{int(index)}"


def arch_name(seed: int, index: int) -> str:
    return f"nas_s{int(seed)}_{int(index):04d}"


def _multiples_in(lo: int, hi: int, step: int) -> list[int]:
    first = -(-lo // step) * step
    return list(range(first, hi + 1, step))


def sample_spec(seed: int, index: int, input_size: int = DEFAULT_INPUT_SIZE) -> dict[str, Any]:
    """Sample architecture ``index`` of the stream ``seed``; deterministic."""
    rng = random.Random(arch_seed(seed, index))
    blocks: list[dict[str, Any]] = []
    for _ in range(NUM_BLOCKS):
        kind = _choice(rng, BLOCK_TYPES)
        block: dict[str, Any] = {"type": kind}
        if kind == "conv":
            block["kernel"] = _choice(rng, KERNELS)
            block["grouped"] = rng.random() < 0.5   # "optional" groups: half of the conv blocks
        elif kind == "dwsep":
            block["kernel"] = _choice(rng, KERNELS)
        elif kind == "bottleneck":
            block["kernel"] = _choice(rng, KERNELS)
            block["expansion"] = _choice(rng, EXPANSIONS)
            block["se"] = rng.random() < 0.5
        elif kind == "pool":
            block["pool"] = _choice(rng, POOL_TYPES)
            block["kernel"] = _choice(rng, POOL_WINDOWS)
        else:
            block["splits"] = _choice(rng, SPLITS)
            block["ops"] = [_choice(rng, ELEMENTWISE_OPS) for _ in range(block["splits"])]
        blocks.append(block)

    # Strides: a split block cannot downsample, so its stride moves on to the next block that can.
    pending = 0
    for i, block in enumerate(blocks):
        pending += i in DOWNSAMPLE_BLOCKS
        if block["type"] != "split" and pending:
            block["stride"], pending = 2, pending - 1
        else:
            block["stride"] = 1
    # Strides still pending after the last block go to the latest blocks that can take one, so
    # every architecture ends at input/32 (7x7 at 224) unless fewer than 4 blocks can downsample.
    for block in reversed(blocks):
        if pending and block["type"] != "split" and block["stride"] == 1:
            block["stride"], pending = 2, pending - 1

    # Groups and channels. Walk "channel slots" (stem, then each channel-changing block). Before a
    # slot's channel count is drawn, the next channel-changing block's groups are drawn, so the slot
    # can be a multiple of both its own groups and the next conv's groups.
    changing = [i for i, b in enumerate(blocks) if b["type"] in CHANNEL_CHANGING]

    def next_changing(after: int) -> int | None:
        return next((j for j in changing if j > after), None)

    def draw_groups(j: int | None, own: int, lo: int, hi: int, fixed: int | None) -> int:
        """Groups for block j given the slot feeding it (own divisor, range or fixed channels)."""
        if j is None or blocks[j]["type"] != "conv" or not blocks[j].pop("grouped"):
            if j is not None and blocks[j]["type"] == "conv":
                blocks[j]["groups"] = 1
            return 1
        # At least 2 input channels per group, else the conv would be depthwise, not grouped.
        if fixed is not None:
            options = [g for g in GROUP_CHOICES if fixed % g == 0 and fixed >= 2 * g]
        else:
            options = [g for g in GROUP_CHOICES
                       if _multiples_in(max(lo, 2 * g), hi, math.lcm(own, g))]
        blocks[j]["groups"] = _choice(rng, options)
        return blocks[j]["groups"]

    channels = STEM_CHANNELS
    draw_groups(next_changing(-1), 1, 0, 0, STEM_CHANNELS)
    for i, block in enumerate(blocks):
        if block["type"] not in CHANNEL_CHANGING:
            block["out_channels"] = channels
            continue
        lo, hi = CHANNEL_RANGES[i]
        own = block.get("groups", 1)
        j = next_changing(i)
        nxt = draw_groups(j, own, lo, hi, None)
        low = max(lo, 2 * nxt) if nxt > 1 else lo
        channels = _choice(rng, _multiples_in(low, hi, math.lcm(own, nxt)))
        block["out_channels"] = channels
    head_channels = _randint(rng, *HEAD_RANGE)
    return {
        "version": SPEC_VERSION,
        "name": arch_name(seed, index),
        "seed": int(seed),
        "index": int(index),
        "input_shape": [int(input_size), int(input_size), 3],
        "stem": {"kernel": 3, "stride": 2, "out_channels": STEM_CHANNELS},
        "blocks": blocks,
        "head": {"out_channels": head_channels, "classes": NUM_CLASSES},
    }


def sample_specs(count: int, seed: int, input_size: int = DEFAULT_INPUT_SIZE,
                 start: int = 0) -> list[dict[str, Any]]:
    """Architectures ``start .. start+count-1`` of the stream ``seed`` (validated specs)."""
    if count < 0:
        raise LatpredError(f"count must be >= 0, got {count}")
    if input_size < 16:
        raise LatpredError(f"input size must be >= 16, got {input_size}")
    specs = [sample_spec(seed, i, input_size) for i in range(start, start + count)]
    for spec in specs:
        validate_spec(spec)
    return specs


def _check(cond: bool, spec_name: str, msg: str) -> None:
    if not cond:
        raise LatpredError(f"invalid NAS spec {spec_name}: {msg}")


def validate_spec(spec: Any) -> None:
    """Raise LatpredError (one line) unless ``spec`` is a well-formed architecture of this space."""
    if not isinstance(spec, dict):
        raise LatpredError("invalid NAS spec: not a JSON object")
    name = str(spec.get("name", "?"))
    _check(spec.get("version") == SPEC_VERSION, name, f"version must be {SPEC_VERSION}")
    shape = spec.get("input_shape")
    _check(isinstance(shape, list) and len(shape) == 3 and shape[2] == 3
           and all(isinstance(v, int) and v >= 16 for v in shape[:2]), name,
           "input_shape must be [H, W, 3] with H, W >= 16")
    stem, head, blocks = spec.get("stem"), spec.get("head"), spec.get("blocks")
    _check(isinstance(stem, dict) and stem.get("out_channels") == STEM_CHANNELS, name, "bad stem")
    _check(isinstance(blocks, list) and len(blocks) == NUM_BLOCKS, name,
           f"needs {NUM_BLOCKS} blocks")
    _check(isinstance(head, dict) and isinstance(head.get("out_channels"), int)
           and HEAD_RANGE[0] <= head["out_channels"] <= HEAD_RANGE[1], name,
           f"head channels must be in {list(HEAD_RANGE)}")
    channels = STEM_CHANNELS
    for i, b in enumerate(blocks):
        where = f"block {i + 1}"
        _check(isinstance(b, dict) and b.get("type") in BLOCK_TYPES, name, f"{where}: bad type")
        kind, out = b["type"], b.get("out_channels")
        _check(b.get("stride") in (1, 2) and not (kind == "split" and b["stride"] == 2), name,
               f"{where}: bad stride")
        _check(isinstance(out, int) and out > 0, name, f"{where}: bad out_channels")
        if kind in CHANNEL_CHANGING:
            lo, hi = CHANNEL_RANGES[i]
            _check(lo <= out <= hi, name, f"{where}: out_channels {out} not in [{lo}, {hi}]")
        else:
            _check(out == channels, name, f"{where}: {kind} block must keep {channels} channels")
        if kind in ("conv", "dwsep", "bottleneck"):
            _check(b.get("kernel") in KERNELS, name, f"{where}: kernel must be one of {KERNELS}")
        if kind == "conv":
            g = b.get("groups")
            _check(g == 1 or g in GROUP_CHOICES, name, f"{where}: groups must be 1 or 4k, k<=16")
            _check(channels % g == 0 and out % g == 0, name,
                   f"{where}: channels {channels}->{out} not divisible by groups {g}")
            _check(g == 1 or channels >= 2 * g, name,
                   f"{where}: groups {g} leave < 2 input channels per group")
        elif kind == "bottleneck":
            _check(b.get("expansion") in EXPANSIONS and isinstance(b.get("se"), bool), name,
                   f"{where}: bad expansion/se")
        elif kind == "pool":
            _check(b.get("pool") in POOL_TYPES and b.get("kernel") in POOL_WINDOWS, name,
                   f"{where}: bad pooling")
        elif kind == "split":
            n, ops = b.get("splits"), b.get("ops")
            _check(n in SPLITS and isinstance(ops, list) and len(ops) == n
                   and all(o in ELEMENTWISE_OPS for o in ops), name, f"{where}: bad split")
            _check(channels >= n, name, f"{where}: {channels} channels cannot split {n} ways")
        channels = out


def load_spec(path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, ValueError) as exc:
        raise LatpredError(f"cannot read NAS spec {path}: {exc}") from None
    validate_spec(spec)
    return spec


def split_sizes(channels: int, splits: int) -> list[int]:
    """Part sizes of a split block: equal when divisible, else the first parts take one more."""
    base, extra = divmod(channels, splits)
    return [base + (1 if k < extra else 0) for k in range(splits)]
