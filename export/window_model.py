"""The window model: a whole window in, the forecast after its last row out.

For users who recompute over a window per sample instead of streaming. Batch is fixed to 1 so TFLite can
convert the recurrent loop. The TFLite full-int8 conversion of a recurrent WHILE loop can crash the whole
process (TensorFlow issue #75140), so int8 window conversions run in a child process (`isolated_convert`).
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tf2onnx

from edge_runtime.errors import RnnedgeError
from export.step_model import STEP_OUTPUT

WINDOW_INPUT = "window"


def build_window_model(sequence_model: keras.Model, window: int, n_features: int) -> keras.Model:
    inputs = keras.Input((window, n_features), batch_size=1, name=WINDOW_INPUT)
    every_step = sequence_model(inputs)
    last = keras.layers.Cropping1D((window - 1, 0))(every_step)
    flat = keras.layers.Reshape((every_step.shape[-1],))(last)
    return keras.Model(inputs, keras.layers.Identity(name=STEP_OUTPUT)(flat), name="window")


def window_to_onnx(model: keras.Model, opset: int) -> bytes:
    window, n_features = model.input_shape[1:]
    signature = [tf.TensorSpec((1, window, n_features), tf.float32, name=WINDOW_INPUT)]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    foreign = sorted({f"{n.domain}:{n.op_type}" for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise RnnedgeError(f"the window model did not convert to standard ONNX operators: {', '.join(foreign)}")
    return proto.SerializeToString()
