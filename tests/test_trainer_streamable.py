"""check_streamable: models that cannot run one sample at a time are refused, and the message says why."""

from __future__ import annotations

import keras
import pytest

from edge_runtime.errors import RnnedgeError
from trainer.model import build_sequence_model
from trainer.streamable import check_streamable


@pytest.mark.parametrize("cell", ["simplernn", "lstm", "gru"])
def test_built_models_stream(cell: str) -> None:
    check_streamable(build_sequence_model(cell, (8, 6, 4), 3, 2, dropout=0.1, recurrent_dropout=0.1))
    check_streamable(build_sequence_model(cell, (4,), 1, 3, head_activation="softmax"))


def chain(*layers: keras.layers.Layer, features: int = 2) -> keras.Model:
    inputs = keras.Input((None, features))
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def head() -> keras.layers.Layer:
    return keras.layers.Dense(1, name="head")


def attention_model() -> keras.Model:
    inputs = keras.Input((None, 2))
    x = keras.layers.LSTM(4, return_sequences=True, name="rnn_0")(inputs)
    x = keras.layers.MultiHeadAttention(2, 4, name="attend")(x, x)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(x))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            lambda: build_sequence_model("lstm", (4,), 2, 1, bidirectional=True),
            "layer 'rnn_0' (Bidirectional) cannot stream: a bidirectional layer also reads the window backwards",
        ),
        (attention_model, "layer 'attend' (MultiHeadAttention) cannot stream: attention compares every step"),
        (
            lambda: chain(keras.layers.GRU(4, name="rnn_0"), keras.layers.Dense(1, name="head")),
            "layer 'rnn_0' (GRU) cannot stream: it returns only the last step",
        ),
        (
            lambda: chain(keras.layers.LSTM(4, return_sequences=True, go_backwards=True, name="rnn_0"), head()),
            "it reads the window backwards",
        ),
        (
            lambda: chain(
                keras.layers.LSTM(4, return_sequences=True, name="rnn_0"),
                keras.layers.GlobalAveragePooling1D(name="pool"),
                head(),
            ),
            "layer 'pool' (GlobalAveragePooling1D) cannot stream: it summarises or reshapes the time axis",
        ),
        (
            lambda: chain(keras.layers.Conv1D(4, 3, padding="same", name="conv"), head()),
            "layer 'conv' (Conv1D) cannot stream: a convolution or pooling over time",
        ),
        (
            lambda: chain(keras.layers.LSTM(4, return_sequences=True, name="encoder"), head()),
            "recurrent layers must be named rnn_0, rnn_1, ... in order (expected 'rnn_0')",
        ),
        (
            lambda: chain(keras.layers.LSTM(4, return_sequences=True, name="rnn_0"), keras.layers.Dense(1, name="out")),
            "layer 'out' (Dense) cannot stream: the dense output layer must be named 'head'",
        ),
        (lambda: chain(keras.layers.Dense(4, name="head")), "the model has no recurrent layer"),
        (
            lambda: chain(keras.layers.LSTM(4, return_sequences=True, name="rnn_0")),
            "the model has no Dense layer named 'head'",
        ),
    ],
    ids=[
        "bidirectional",
        "attention",
        "last-step-only",
        "backwards",
        "pooling",
        "conv",
        "misnamed",
        "unknown-output",
        "no-rnn",
        "no-head",
    ],
)
def test_unstreamable_models_are_refused_with_the_reason(model, expected: str) -> None:
    with pytest.raises(RnnedgeError) as raised:
        check_streamable(model())
    assert expected in str(raised.value)
