"""The reference implementation: SimpleRNN, LSTM and GRU step functions in plain numpy.

Written from the Keras cell equations, independent of every converter, so the parity gate has a third opinion
that no exporter bug can share. It reads the bundle's weights file (`numpy` format) and is also a usable backend
where neither ONNX Runtime nor LiteRT can be installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.bundle import BundleError, Manifest, check_widths


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def simplernn_step(x: np.ndarray, h: np.ndarray, w: dict[str, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    h = np.tanh(x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"])
    return h, [h]


def lstm_step(
    x: np.ndarray, h: np.ndarray, c: np.ndarray, w: dict[str, np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Keras gate order i, f, c, o; recurrent activation sigmoid, activation tanh."""
    z = x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"]
    i, f, g, o = np.split(z, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c)
    return h, [h, c]


def gru_step(x: np.ndarray, h: np.ndarray, w: dict[str, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Keras GRU with reset_after=True: gate order z, r, h; the reset gate applies after the recurrent matmul."""
    input_bias, recurrent_bias = w["bias"][0], w["bias"][1]
    xz, xr, xh = np.split(x @ w["kernel"] + input_bias, 3, axis=-1)
    hz, hr, hh = np.split(h @ w["recurrent_kernel"] + recurrent_bias, 3, axis=-1)
    z = _sigmoid(xz + hz)
    r = _sigmoid(xr + hr)
    candidate = np.tanh(xh + r * hh)
    h = z * h + (1.0 - z) * candidate
    return h, [h]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


HEAD_ACTIVATIONS = {"linear": lambda z: z, "sigmoid": _sigmoid, "softmax": _softmax}


class NumpyStepBackend:
    name = "numpy"

    def __init__(self, weights_path: Path, manifest: Manifest) -> None:
        if manifest.cell not in ("simplernn", "lstm", "gru"):
            raise BundleError(f"the numpy reference has no {manifest.cell!r} cell (it has: simplernn, lstm, gru)")
        try:
            with np.load(weights_path, allow_pickle=False) as data:
                weights = {name: data[name].astype(np.float32) for name in data.files}
        except (OSError, ValueError) as exc:
            raise BundleError(f"{weights_path}: cannot read the weights ({exc})") from None
        self.cell = manifest.cell
        try:
            self.layers = [
                {part: weights[f"rnn_{i}/{part}"] for part in ("kernel", "recurrent_kernel", "bias")}
                for i in range(len(manifest.layers))
            ]
            self.head_kernel = weights["head/kernel"]
            self.head_bias = weights["head/bias"]
        except KeyError as exc:
            raise BundleError(f"{weights_path}: no weights {exc} for the manifest's model") from None
        self.state_sizes = [s.size for s in manifest.states]
        self.output_names = [manifest.step_output] + [s.output for s in manifest.states]
        self.per_layer = 2 if manifest.cell == "lstm" else 1
        if len(manifest.states) != self.per_layer * len(self.layers):
            raise BundleError(
                f"{weights_path}: the manifest lists {len(manifest.states)} states, a {len(self.layers)}-layer "
                f"{manifest.cell} has {self.per_layer * len(self.layers)}"
            )
        widths = {manifest.step_input: self.layers[0]["kernel"].shape[0]} if self.layers else {}
        for index, state in enumerate(manifest.states):
            widths[state.input] = self.layers[index // self.per_layer]["recurrent_kernel"].shape[0]
        outputs = {manifest.step_output: self.head_kernel.shape[-1]} if self.head_kernel.ndim == 2 else {}
        check_widths(weights_path, manifest, widths, outputs)
        if manifest.head_activation not in HEAD_ACTIVATIONS:
            raise BundleError(
                f"the numpy reference has no head activation {manifest.head_activation!r} "
                f"(it has: {', '.join(HEAD_ACTIVATIONS)})"
            )
        self.head_activation = HEAD_ACTIVATIONS[manifest.head_activation]

    def zero_state(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, size), dtype=np.float32) for size in self.state_sizes]

    def step(self, x: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        hidden = x.astype(np.float32, copy=False)
        new_states: list[np.ndarray] = []
        for index, weights in enumerate(self.layers):
            own = states[index * self.per_layer : (index + 1) * self.per_layer]
            if self.cell == "lstm":
                hidden, produced = lstm_step(hidden, own[0], own[1], weights)
            elif self.cell == "gru":
                hidden, produced = gru_step(hidden, own[0], weights)
            else:
                hidden, produced = simplernn_step(hidden, own[0], weights)
            new_states.extend(produced)
        return self.head_activation(hidden @ self.head_kernel + self.head_bias), new_states
