"""The streaming step model: one sample and the recurrent states in, forecast and new states out.

It calls the trained layers' own cells and the same head layer, so it holds the very same variables as the
trained sequence model (no weight copying that could drift). State tensors follow the darts convention,
`state_in_<layer>_<h|c>` / `state_out_<layer>_<h|c>`, and every output is named so runtimes look them up by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from edge_runtime.bundle import StateSpec
from trainer.model import HEAD_NAME, rnn_layer_name
from trainer.streamable import check_streamable

STEP_INPUT = "x"
STEP_OUTPUT = "forecast"


@dataclass(frozen=True)
class StepModel:
    model: keras.Model
    states: tuple[StateSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [STEP_INPUT] + [s.input for s in self.states]

    @property
    def output_names(self) -> list[str]:
        return [STEP_OUTPUT] + [s.output for s in self.states]


class CellStep(keras.layers.Layer):
    """One step of a trained recurrent layer's own cell, under a unique name (stacked layers' cells share
    Keras's default cell name, which a functional model refuses). It holds the cell, so the variables stay shared."""

    def __init__(self, cell: keras.layers.Layer, name: str) -> None:
        super().__init__(name=name)
        self.cell = cell

    def call(self, inputs: keras.KerasTensor, states: list[keras.KerasTensor]):
        return self.cell(inputs, states, training=False)


def _state_kinds(layer: keras.layers.Layer) -> tuple[str, ...]:
    return ("h", "c") if isinstance(layer, keras.layers.LSTM) else ("h",)


def build_step_model(sequence_model: keras.Model, n_layers: int) -> StepModel:
    check_streamable(sequence_model)
    n_features = sequence_model.input_shape[-1]
    x = keras.Input((n_features,), name=STEP_INPUT)
    state_inputs: list[keras.KerasTensor] = []
    outputs: dict[str, keras.KerasTensor] = {}
    specs: list[StateSpec] = []
    hidden = x
    for index in range(n_layers):
        layer = sequence_model.get_layer(rnn_layer_name(index))
        kinds = _state_kinds(layer)
        ins = [keras.Input((layer.units,), name=f"state_in_{index}_{kind}") for kind in kinds]
        hidden, new_states = CellStep(layer.cell, f"step_{index}")(hidden, ins)
        new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
        for kind, tensor in zip(kinds, new_states, strict=True):
            name = f"state_out_{index}_{kind}"
            outputs[name] = keras.layers.Identity(name=name)(tensor)
            specs.append(StateSpec(f"state_in_{index}_{kind}", name, layer.units))
        state_inputs.extend(ins)
    outputs[STEP_OUTPUT] = keras.layers.Identity(name=STEP_OUTPUT)(sequence_model.get_layer(HEAD_NAME)(hidden))
    model = keras.Model([x, *state_inputs], outputs, name="step")
    return StepModel(model, tuple(specs))
