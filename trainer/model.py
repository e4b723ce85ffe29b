"""Recurrent forecaster architectures that can always be streamed one sample at a time."""

from __future__ import annotations

import keras

CELLS = {"simplernn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def rnn_layer_name(index: int) -> str:
    return f"rnn_{index}"


HEAD_NAME = "head"


def build_sequence_model(cell: str, layers: tuple[int, ...], n_features: int, n_outputs: int) -> keras.Model:
    """Stacked recurrent layers returning every step, then a dense head giving horizon x targets values.

    Activations are spelled out so every converter maps the same functions (e.g. GRU reset_after=True).
    """
    inputs = keras.Input((None, n_features), name="inputs")
    x = inputs
    for index, units in enumerate(layers):
        options: dict[str, object] = {
            "activation": "tanh",
            "return_sequences": True,
            "name": rnn_layer_name(index),
        }
        if cell in ("lstm", "gru"):
            options["recurrent_activation"] = "sigmoid"
        if cell == "gru":
            options["reset_after"] = True
        x = CELLS[cell](units, **options)(x)
    outputs = keras.layers.Dense(n_outputs, name=HEAD_NAME)(x)
    return keras.Model(inputs, outputs, name=f"{cell}_forecaster")


def training_model(sequence_model: keras.Model, warmup_steps: int) -> keras.Model:
    """The same layers, with the first `warmup_steps` outputs of each window left out of the loss."""
    cropped = keras.layers.Cropping1D((warmup_steps, 0), name="skip_warmup")(sequence_model.output)
    return keras.Model(sequence_model.input, cropped, name="training")
