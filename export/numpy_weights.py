"""The weights file read by the edge runtime's numpy reference cells (`edge_runtime/numpy_backend.py`)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from trainer.model import HEAD_NAME, rnn_layer_name


def save_numpy_weights(sequence_model: keras.Model, n_layers: int, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    for index in range(n_layers):
        kernel, recurrent_kernel, bias = sequence_model.get_layer(rnn_layer_name(index)).get_weights()
        arrays[f"rnn_{index}/kernel"] = kernel
        arrays[f"rnn_{index}/recurrent_kernel"] = recurrent_kernel
        arrays[f"rnn_{index}/bias"] = bias
    head_kernel, head_bias = sequence_model.get_layer(HEAD_NAME).get_weights()
    arrays["head/kernel"] = head_kernel
    arrays["head/bias"] = head_bias
    np.savez(path, **{name: value.astype(np.float32) for name, value in arrays.items()})
