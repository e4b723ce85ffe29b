"""Recurrent architectures that can always be streamed one sample at a time."""

from __future__ import annotations

import keras

from trainer.options import CELLS as CELL_NAMES

CELLS = dict(zip(CELL_NAMES, (keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU), strict=True))
HEAD_NAME = "head"


def rnn_layer_name(index: int) -> str:
    return f"rnn_{index}"


def dropout_layer_name(index: int) -> str:
    return f"dropout_{index}"


def build_sequence_model(
    cell: str,
    layers: tuple[int, ...],
    n_features: int,
    n_outputs: int,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    head_activation: str = "linear",
    bidirectional: bool = False,
) -> keras.Model:
    """Stacked recurrent layers returning every step, then a dense head applied at every step.

    Activations are spelled out so every converter maps the same functions (e.g. GRU reset_after=True).
    Dropout layers sit between recurrent layers and before the head: identity at inference, so the step
    model skips them. `bidirectional` exists only to be refused by `check_streamable` with the reason.
    """
    inputs = keras.Input((None, n_features), name="inputs")
    x = inputs
    for index, units in enumerate(layers):
        options: dict[str, object] = {"activation": "tanh", "return_sequences": True}
        if cell in ("lstm", "gru"):
            options["recurrent_activation"] = "sigmoid"
        if cell == "gru":
            options["reset_after"] = True
        if recurrent_dropout:
            options["recurrent_dropout"] = recurrent_dropout
        if bidirectional:
            x = keras.layers.Bidirectional(CELLS[cell](units, **options), name=rnn_layer_name(index))(x)
        else:
            x = CELLS[cell](units, name=rnn_layer_name(index), **options)(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=dropout_layer_name(index))(x)
    outputs = keras.layers.Dense(n_outputs, activation=head_activation, name=HEAD_NAME)(x)
    return keras.Model(inputs, outputs, name=f"{cell}_sequence_model")


def training_model(sequence_model: keras.Model, warmup_steps: int) -> keras.Model:
    """The same layers, with the first `warmup_steps` outputs of each window left out of the loss."""
    cropped = keras.layers.Cropping1D((warmup_steps, 0), name="skip_warmup")(sequence_model.output)
    return keras.Model(sequence_model.input, cropped, name="training")
