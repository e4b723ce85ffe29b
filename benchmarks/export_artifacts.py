"""Per cell and artifact: file size, parity error, per-step latency (batch 1, one thread) in each runtime,
side by side with Keras (tf.function) measured in the same run.

    python benchmarks/export_artifacts.py [--units 32] [--calls 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, fmt, per_call_us, write_result  # noqa: E402

from edge_runtime.backends import open_step_backend  # noqa: E402
from edge_runtime.bundle import load_bundle  # noqa: E402
from export.bundle_export import ExportOptions, export_bundle  # noqa: E402
from trainer.train import TrainOptions, train  # noqa: E402

SAMPLE = REPO / "trainer" / "samples" / "machine_temperature_system_failure.csv"


def keras_step_us(run_dir: Path, layers: int, calls: int, repeats: int) -> dict[str, float]:
    import keras
    import tensorflow as tf

    from export.step_model import build_step_model

    step = build_step_model(keras.models.load_model(run_dir / "model.keras", compile=False), layers)
    feeds = {name: tf.zeros((1, int(step.model.get_layer(name).output.shape[-1]))) for name in step.input_names}
    call = tf.function(lambda f: step.model(f, training=False))
    return per_call_us(lambda: call(feeds), calls, repeats)


def backend_step_us(bundle, artifact, calls: int, repeats: int) -> dict[str, float]:
    backend = open_step_backend(bundle, artifact)
    x = np.zeros((1, len(bundle.manifest.features)), np.float32)
    states = backend.zero_state(1)

    def call() -> None:
        nonlocal states
        _, states = backend.step(x, states)

    return per_call_us(call, calls, repeats)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows, results = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for cell in ("simplernn", "lstm", "gru"):
            run_dir = Path(scratch) / cell / "run"
            options = TrainOptions(SAMPLE, ("value",), (), None, cell=cell, layers=(args.units,), epochs=3, quiet=True)
            train(options, run_dir)
            bundle, report = export_bundle(
                run_dir, Path(scratch) / cell / "bundle", ExportOptions(precisions=("float32", "int8", "int8-static"))
            )
            bundle = load_bundle(bundle.path)
            keras_us = keras_step_us(run_dir, 1, args.calls // 4, args.repeats)
            float_sizes = {
                a.format: bundle.manifest.files[a.file].bytes
                for a in bundle.manifest.artifacts
                if a.precision == "float32"
            }
            for result in report.results:
                artifact = result.artifact
                size = bundle.manifest.files[artifact.file].bytes
                timing = backend_step_us(bundle, artifact, args.calls, args.repeats)
                error = result.worst.max_abs_error if result.worst else None
                entry = {
                    "cell": cell,
                    "units": args.units,
                    "artifact": artifact.file,
                    "format": artifact.format,
                    "precision": artifact.precision,
                    "runtime": result.runtime,
                    "bytes": size,
                    "size_vs_float": size / float_sizes[artifact.format],
                    "max_abs_error": error,
                    "mae_ratio": result.task.mae_ratio if result.task else None,
                    "status": result.status,
                    "step_us": timing,
                    "keras_step_us": keras_us,
                    "speedup_vs_keras": keras_us["median"] / timing["median"],
                }
                results.append(entry)
                ratio = f"{entry['mae_ratio']:.4f}" if entry["mae_ratio"] else "-"
                rows.append(
                    f"| {cell} | {artifact.file} | {result.runtime} | {size:,} ({100 * entry['size_vs_float']:.0f}%) | "
                    f"{error:.2g} | {ratio} | {fmt(timing)} | {entry['speedup_vs_keras']:.0f}x |"
                )
            rows.append(f"| {cell} | Keras step model (tf.function) | tensorflow | - | - | - | {fmt(keras_us)} | 1x |")
    markdown = "\n".join(
        [
            f"### Export artifacts: size, parity and per-step latency ({args.units} units, batch 1, one thread)",
            "",
            "Latency: median over repeats of the mean per step, microseconds (min-max across repeats); the state",
            "is fed back every step. Speed-up is against the Keras step model under tf.function, in the same run.",
            "",
            "| cell | artifact | runtime | bytes (vs float) | max abs error | int8 MAE ratio | us per step "
            "| vs Keras |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    write_result("export_artifacts", {"results": results}, markdown)


if __name__ == "__main__":
    main()
