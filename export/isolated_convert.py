"""Run a conversion that may crash the interpreter in a child process, and report what happened.

Usage (internal): python -m export.isolated_convert RUN_DIR WINDOW_CALIBRATION.npz PRECISION OUT.tflite
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np


def convert_window_tflite_isolated(run_dir: Path, calibration: Path, precision: str, out: Path) -> str | None:
    """Return None on success, else the reason the conversion is unsupported."""
    command = [sys.executable, "-m", "export.isolated_convert", str(run_dir), str(calibration), precision, str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode == 0 and out.is_file():
        return None
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        return f"the TFLite converter crashed ({name}) quantizing the recurrent WHILE loop (TensorFlow issue #75140)"
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return f"the TFLite converter failed: {last[:300]}"


def _main(run_dir: str, calibration: str, precision: str, out: str) -> None:
    import keras

    from export.tflite_convert import to_tflite
    from export.window_model import build_window_model
    from trainer.run_dir import MODEL_FILE, RunConfig

    config = RunConfig.load(Path(run_dir))
    sequence_model = keras.models.load_model(Path(run_dir) / MODEL_FILE, compile=False)
    model = build_window_model(sequence_model, config.window, len(config.features))
    with np.load(calibration) as data:
        windows = data["windows"]

    def representative():
        for window in windows:
            yield {"window": window[None].astype(np.float32)}

    Path(out).write_bytes(to_tflite(model, precision, representative))


if __name__ == "__main__":
    _main(*sys.argv[1:5])
