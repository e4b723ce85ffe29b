"""LiteRT (`ai_edge_litert`) inference of a TFLite step model, through its signature runner.

Inputs and outputs are looked up by name: TFLite's tensor order is not the model's order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.bundle import BundleError, Manifest, check_widths


def litert_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ai_edge_litert") is not None


class LiteRtStepBackend:
    name = "litert"

    def __init__(self, model_path: Path, manifest: Manifest, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
            self.runner = self.interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{model_path}: LiteRT cannot load the model ({exc})") from None
        signature = next(iter(self.interpreter.get_signature_list().values()))
        wanted_in = {manifest.step_input} | {s.input for s in manifest.states}
        wanted_out = {manifest.step_output} | {s.output for s in manifest.states}
        if set(signature["inputs"]) != wanted_in or not wanted_out <= set(signature["outputs"]):
            raise BundleError(
                f"{model_path}: model signature {signature} does not match the manifest "
                f"{sorted(wanted_in)} -> {sorted(wanted_out)}"
            )
        check_widths(
            model_path,
            manifest,
            _last_dims(self.runner.get_input_details()),
            _last_dims(self.runner.get_output_details()),
        )
        self.input_name = manifest.step_input
        self.state_inputs = [s.input for s in manifest.states]
        self.state_sizes = [s.size for s in manifest.states]
        self.output_names = [manifest.step_output] + [s.output for s in manifest.states]

    def zero_state(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, size), dtype=np.float32) for size in self.state_sizes]

    def step(self, x: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        feeds = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        feeds.update(zip(self.state_inputs, states, strict=True))
        out = self.runner(**feeds)
        return out[self.output_names[0]], [out[name] for name in self.output_names[1:]]


def _last_dims(details: dict[str, dict]) -> dict[str, int | None]:
    """Per tensor, its last dimension when the model fixes it (LiteRT marks a free size -1), else None."""
    last = {name: int(d["shape_signature"][-1]) if len(d["shape_signature"]) else -1 for name, d in details.items()}
    return {name: size if size >= 0 else None for name, size in last.items()}
