"""The edge runtime must never pull in TensorFlow, Keras or tf2onnx, even where they are installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import TrainedBundle, write_rows

FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "tf_keras", "onnx")


def test_streaming_a_bundle_imports_no_training_stack(tiny_bundle: TrainedBundle, tmp_path) -> None:
    csv = write_rows(tmp_path / "rows.csv", 1200, 60)
    script = textwrap.dedent(
        f"""
        import io, json, sys
        from edge_runtime.bundle import load_bundle
        from edge_runtime.cli import main
        from edge_runtime.backends import open_step_backend
        from edge_runtime.engine import StreamEngine
        from edge_runtime.parity import check_bundle
        from edge_runtime.samples import Sample
        bundle = load_bundle({str(tiny_bundle.bundle_dir)!r})
        engine = StreamEngine(bundle, open_step_backend(bundle, bundle.manifest.artifact("onnx")))
        forecasts = [engine.process([Sample("s", float(i), str(i), (70.0 + i * 0.1,))])[0] for i in range(40)]
        passed = check_bundle(bundle).passed
        status = main(["run", {str(tiny_bundle.bundle_dir)!r}, "--source", "csv:{csv}"])
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
        print(json.dumps({{"forecasts": sum(len(f) for f in forecasts), "parity": passed,
                          "status": status, "loaded": loaded}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert report["forecasts"] == 40 - 4  # warm-up of the tiny model: window 16 // 4
    assert report["parity"] is True
    assert report["status"] == 0


def test_a_run_without_mqtt_imports_no_mqtt_client(tiny_bundle: TrainedBundle, tmp_path) -> None:
    """paho (and ssl with it) cost a CSV or stdin run without a broker about 3 MB of its memory: not loaded."""
    csv = write_rows(tmp_path / "rows.csv", 1200, 30)
    script = textwrap.dedent(
        f"""
        import json, sys
        from edge_runtime.cli import main
        status = main(["run", {str(tiny_bundle.bundle_dir)!r}, "--source", "csv:{csv}"])
        print(json.dumps({{"status": status, "loaded": sorted({{m.split(".")[0] for m in sys.modules}})}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 0
    assert "onnxruntime" in report["loaded"]  # it did run the model
    assert "paho" not in report["loaded"] and "ssl" not in report["loaded"]
