"""ONNX int8 step models with onnxruntime's quantization tools.

Dynamic (default): int8 weights, activations quantized per call; works for every cell because the step model
is plain MatMul/Add (ORT never quantizes GRU or Loop bodies, which the step model does not have).
Static QDQ (option): activations calibrated on the visited states of the training stream.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

from export.calibration import VisitedStatesReader


@contextlib.contextmanager
def advice_silenced() -> Iterator[None]:
    """The quantizer logs generic advice (pre-processing) on the root logger at every call."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def quantize_onnx_dynamic(float_path: Path, out_path: Path, op_types: tuple[str, ...] = ("MatMul",)) -> None:
    with advice_silenced():
        quantize_dynamic(
            str(float_path), str(out_path), weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types)
        )


def quantize_onnx_static(float_path: Path, out_path: Path, feeds: dict[str, np.ndarray]) -> None:
    with advice_silenced():
        _quantize_static(float_path, out_path, feeds)


def _quantize_static(float_path: Path, out_path: Path, feeds: dict[str, np.ndarray]) -> None:
    quantize_static(
        str(float_path),
        str(out_path),
        VisitedStatesReader(feeds),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=["MatMul"],
    )
