"""Whether a Keras model can run on a device one sample at a time, and if not, why.

The exporter rebuilds the model as a step function from each recurrent layer's cell and the head, so only a
plain chain can stream: recurrent layers named rnn_0, rnn_1, ... returning every step, inference-identity
dropout between them, and a dense `head` applied at every step. Everything else is refused with the reason.
"""

from __future__ import annotations

import keras

from edge_runtime.errors import RnnedgeError
from trainer.model import CELLS, HEAD_NAME, rnn_layer_name

_WHOLE_WINDOW = "it needs the whole window at once, but a device sees one sample at a time and keeps only a state"
_REASONS: tuple[tuple[tuple[type, ...], str], ...] = (
    (
        (keras.layers.Bidirectional,),
        "a bidirectional layer also reads the window backwards, so each output depends on samples that have not "
        "arrived yet",
    ),
    (
        (keras.layers.MultiHeadAttention, keras.layers.Attention, keras.layers.AdditiveAttention),
        f"attention compares every step with every other step of the window: {_WHOLE_WINDOW}",
    ),
    (
        (
            keras.layers.GlobalAveragePooling1D,
            keras.layers.GlobalMaxPooling1D,
            keras.layers.Flatten,
            keras.layers.Reshape,
        ),
        f"it summarises or reshapes the time axis: {_WHOLE_WINDOW}",
    ),
    (
        (keras.layers.Conv1D, keras.layers.MaxPooling1D, keras.layers.AveragePooling1D),
        "a convolution or pooling over time mixes neighbouring samples (later ones too, unless causal) and the "
        "step model carries no buffer for it",
    ),
)
_IDENTITY_AT_INFERENCE = (keras.layers.Dropout,)


def _refuse(layer: keras.layers.Layer, reason: str) -> RnnedgeError:
    return RnnedgeError(f"layer {layer.name!r} ({type(layer).__name__}) cannot stream: {reason}")


def check_streamable(model: keras.Model) -> None:
    """Raise RnnedgeError naming the first layer that cannot run one sample at a time, and why."""
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 3:
        raise RnnedgeError("the model must take one (batch, time, features) input to stream")
    recurrent = 0
    head_seen = False
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or isinstance(layer, _IDENTITY_AT_INFERENCE):
            continue
        for kinds, reason in _REASONS:
            if isinstance(layer, kinds):
                raise _refuse(layer, reason)
        if head_seen:
            raise _refuse(layer, f"it comes after the head {HEAD_NAME!r}; the step model ends at the head")
        if type(layer) in CELLS.values():
            if not layer.return_sequences:
                raise _refuse(layer, "it returns only the last step; the step model needs an output at every step")
            if layer.go_backwards:
                raise _refuse(layer, "it reads the window backwards, i.e. from samples that have not arrived yet")
            if layer.stateful:
                raise _refuse(layer, "a stateful layer keeps state between batches; the runtime owns the state")
            if layer.name != rnn_layer_name(recurrent):
                raise _refuse(
                    layer,
                    f"recurrent layers must be named {rnn_layer_name(0)}, {rnn_layer_name(1)}, ... in order "
                    f"(expected {rnn_layer_name(recurrent)!r}): the exporter finds them by name",
                )
            recurrent += 1
        elif isinstance(layer, keras.layers.Dense):
            if layer.name != HEAD_NAME:
                raise _refuse(
                    layer, f"the dense output layer must be named {HEAD_NAME!r}: the exporter finds it by name"
                )
            head_seen = True
        elif isinstance(layer, keras.layers.RNN):
            raise _refuse(layer, f"only the built-in cells ({', '.join(CELLS)}) have a step model in rnnedge")
        else:
            raise _refuse(
                layer,
                "rnnedge streams chains of SimpleRNN/LSTM/GRU layers, Dropout, and a Dense head named "
                f"{HEAD_NAME!r}; this layer type has no step equivalent",
            )
    if recurrent == 0:
        raise RnnedgeError("the model has no recurrent layer: there is no state to carry between samples")
    if not head_seen:
        raise RnnedgeError(f"the model has no Dense layer named {HEAD_NAME!r}: the exporter needs it")
