"""Keras -> TFLite flatbuffers: float32, dynamic-range int8, and full int8 with float inputs and outputs."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

Representative = Callable[[], Iterator[dict[str, np.ndarray]]]


def to_tflite(model: keras.Model, precision: str, representative: Representative | None = None) -> bytes:
    """`int8`: int8 weights, float activations (dynamic range). `int8-static`: int8 weights and activations,
    calibrated on `representative` samples; inputs and outputs stay float32 so callers need no requantisation."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.exclude_conversion_metadata = True
    if precision in ("int8", "int8-static"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "int8-static":
        if representative is None:
            raise ValueError("full-int8 conversion needs representative samples")
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with native_output_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes from inside the converter, not actionable here
        return compact_tensor_names(converter.convert())


def compact_tensor_names(flatbuffer: bytes) -> bytes:
    """Tensor names are TensorFlow op paths, a large share of a small model's file. Runtimes find inputs and
    outputs through the signature (whose keys stay), so the tensors themselves can be called t0, t1, ..."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    model.description = None
    for subgraph in model.subgraphs:
        for index, tensor in enumerate(subgraph.tensors):
            tensor.name = f"t{index}"
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """The converter prints its SavedModel signature and calibration chatter from C++ straight to fds 1 and 2;
    errors still arrive as Python exceptions."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def representative_feeds(feeds: dict[str, np.ndarray], samples: int) -> Representative:
    """Evenly spaced visited (sample, state) feeds, one per call, keyed by signature input name."""
    rows = len(next(iter(feeds.values())))
    picks = np.unique(np.linspace(0, rows - 1, min(samples, rows)).astype(int))

    def generate() -> Iterator[dict[str, np.ndarray]]:
        for row in picks:
            yield {name: values[row : row + 1].astype(np.float32) for name, values in feeds.items()}

    return generate


def quantized_anything(float_flatbuffer: bytes, int8_flatbuffer: bytes) -> bool:
    """TFLite's dynamic-range quantizer leaves weight tensors under 1,024 elements in float: a small model can
    come out of an int8 conversion with nothing quantized, which must not ship under an int8 label. Quantized
    weights take a quarter of the bytes, so a file that did not shrink by a tenth quantized nothing that matters
    (sizes, unlike tensor listings, also see the weights inside a recurrent WHILE body)."""
    return len(int8_flatbuffer) < 0.9 * len(float_flatbuffer)
