"""`rnnedge bench`: load time, latency per batch size and peak RSS per artifact, each in its own process.
Assertions are on structure and consistency, never on speed (this machine is shared and noisy)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import TrainedBundle, copy_bundle
from test_devices_common import rnnedge

from edge_runtime.backends import runtime_missing
from edge_runtime.bundle import load_bundle


@pytest.fixture(scope="module")
def report(tiny_bundle: TrainedBundle, tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("bench")
    result = rnnedge(directory, "bench", str(tiny_bundle.bundle_dir), "--json", "--seconds", "0.05")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_artifact_is_measured_at_every_batch_size(report: dict, tiny_bundle: TrainedBundle) -> None:
    manifest = load_bundle(tiny_bundle.bundle_dir).manifest
    assert report["bundle"] == load_bundle(tiny_bundle.bundle_dir).digest
    assert [r["file"] for r in report["results"]] == [a.file for a in manifest.artifacts]
    for result in report["results"]:
        missing = runtime_missing(result["format"])
        if missing:
            assert (result["status"], result["note"]) == ("skipped", missing)
            continue
        assert result["status"] == "ok", result
        assert result["load_ms"] > 0
        assert 0 < result["rss_after_imports_mb"] <= result["peak_rss_mb"]
        assert [b["batch"] for b in result["batches"]] == [1, 16, 256]
        for timing in result["batches"]:
            assert timing["calls"] >= 100
            assert 0 < timing["p50_us"] <= timing["p99_us"]
            assert timing["p50_us_per_sample"] == pytest.approx(timing["p50_us"] / timing["batch"], rel=0.01, abs=0.01)
            assert timing["samples_per_s"] > 0
    assert report["host"]["profile"] and report["threads"] == 1


def test_each_artifact_is_measured_in_its_own_process(report: dict) -> None:
    by_format = {r["format"]: r for r in report["results"] if r["status"] == "ok" and r["precision"] == "float32"}
    if "tflite" not in by_format:
        pytest.skip(f"LiteRT is not installed: {runtime_missing('tflite')}")
    # measured after ONNX Runtime: in a shared process LiteRT's baseline would include ORT's peak
    assert by_format["tflite"]["rss_after_imports_mb"] < by_format["onnx"]["peak_rss_mb"]
    assert by_format["numpy"]["peak_rss_mb"] < by_format["onnx"]["rss_after_imports_mb"]


def test_the_table_and_bad_options(tiny_bundle: TrainedBundle, tmp_path: Path) -> None:
    table = rnnedge(tmp_path, "bench", str(tiny_bundle.bundle_dir), "--seconds", "0.02", "--batches", "1,4")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"bundle {load_bundle(tiny_bundle.bundle_dir).digest[:12]} (lstm 8, horizon 2")
    assert sum(line.startswith("| step.onnx (float32) | onnxruntime |") for line in lines) == 1
    assert sum(" | 4 | " in line for line in lines) == sum(
        not runtime_missing(f) for f in ("numpy", "onnx", "onnx", "tflite")
    )

    bad = rnnedge(tmp_path, "bench", str(tiny_bundle.bundle_dir), "--batches", "1,x")
    assert (
        bad.returncode == 2
        and bad.stderr == "rnnedge: error: --batches '1,x' is not a comma-separated list of integers\n"
    )
    zero = rnnedge(tmp_path, "bench", str(tiny_bundle.bundle_dir), "--batches", "0")
    assert zero.returncode == 2 and "batch sizes must be positive" in zero.stderr
    missing = rnnedge(tmp_path, "bench", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "not a bundle directory" in missing.stderr


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (("--threads", "0"), "--threads must be from 1 to 64, got 0"),
        (("--threads", "1000"), "--threads must be from 1 to 64, got 1000"),
        (("--batches", "1,1000000"), "batch sizes must be positive integers up to 65536, at most 16 of them"),
        (("--batches", ",".join(["1"] * 17)), "at most 16 of them"),
        (("--seconds", "0"), "--seconds must be above 0 and at most 60, got 0"),
        (("--seconds", "nan"), "--seconds must be above 0 and at most 60, got nan"),
        (("--seconds", "3600"), "--seconds must be above 0 and at most 60, got 3600"),
    ],
    ids=["no-threads", "many-threads", "huge-batch", "many-batches", "no-seconds", "nan-seconds", "an-hour"],
)
def test_sizes_out_of_range_are_one_line_errors(
    tiny_bundle: TrainedBundle, tmp_path: Path, option: tuple[str, str], expected: str
) -> None:
    result = rnnedge(tmp_path, "bench", str(tiny_bundle.bundle_dir), *option)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("rnnedge: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr


def test_a_corrupt_artifact_with_a_matching_sha256_is_a_one_line_error(
    tiny_bundle: TrainedBundle, tmp_path: Path
) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    (bundle / "step.onnx").write_bytes(b"not a model")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["step.onnx"] = {"sha256": hashlib.sha256(b"not a model").hexdigest(), "bytes": 11}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = rnnedge(tmp_path, "bench", str(bundle), "--seconds", "0.02", "--batches", "1")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"rnnedge: error: {bundle / 'step.onnx'}: ONNX Runtime cannot load the model")


def test_an_artifact_of_an_unknown_format_is_refused_like_parity_refuses_it(
    tiny_bundle: TrainedBundle, tmp_path: Path
) -> None:
    bundle = copy_bundle(tiny_bundle, tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["artifacts"][0]["format"] = "pytorch"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = rnnedge(tmp_path, "bench", str(bundle), "--seconds", "0.02", "--batches", "1")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("rnnedge: error: ")
    assert "unknown artifact format 'pytorch' (supported: onnx, tflite, numpy)" in result.stderr


def test_a_child_that_python_could_not_start_is_an_error_row_not_a_bad_bundle(
    tiny_bundle: TrainedBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python exits 2 when it cannot open what it should run: that is this machine's problem, not the bundle's."""
    import sys

    from edge_runtime.bench import bench_bundle

    # the real interpreter, asked to run a file that is not there: it says so and exits 2
    real, missing = sys.executable, tmp_path / "missing" / "bench.py"
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nexec {real} {missing}\n")
    python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    report = bench_bundle(load_bundle(tiny_bundle.bundle_dir), (1,), 0.02)
    measured = [r for r in report.results if r.status != "skipped"]
    assert measured and all(r.status == "error" for r in measured)
    assert {r.note for r in measured} == {f"{real}: can't open file '{missing}': [Errno 2] No such file or directory"}
