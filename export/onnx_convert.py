"""Keras step model -> ONNX float32 with tf2onnx, refusing graphs that only half converted."""

from __future__ import annotations

from pathlib import Path

import onnx
import tensorflow as tf
import tf2onnx

from edge_runtime.errors import RnnedgeError
from export.options import DEFAULT_OPSET, SUPPORTED_OPSETS
from export.step_model import STEP_INPUT, StepModel


def convert_step_model(step: StepModel, n_features: int, path: Path, opset: int = DEFAULT_OPSET) -> list[str]:
    """Write the ONNX file; return its sorted operator types (batch dimension left dynamic for many streams)."""
    if opset not in SUPPORTED_OPSETS:
        raise RnnedgeError(
            f"ONNX opset {opset} is not supported (supported: {SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1})"
        )
    signature = [tf.TensorSpec((None, n_features), tf.float32, name=STEP_INPUT)]
    signature += [tf.TensorSpec((None, s.size), tf.float32, name=s.input) for s in step.states]
    model_proto, _ = tf2onnx.convert.from_keras(step.model, input_signature=signature, opset=opset)
    # tf2onnx logs ops it could not convert and carries on: anything outside the standard domain is one.
    foreign = sorted({f"{n.domain}:{n.op_type}" for n in model_proto.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise RnnedgeError(f"the step model did not convert to standard ONNX operators: {', '.join(foreign)}")
    names = [o.name for o in model_proto.graph.output]
    if sorted(names) != sorted(step.output_names):
        raise RnnedgeError(f"ONNX outputs {names} do not match the step model's {step.output_names}")
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, str(path))
    return sorted({n.op_type for n in model_proto.graph.node})
