"""`make bench` in miniature: every benchmark script at tiny sizes through benchmarks/run_all.py --quick, into a
scratch directory, then the report. Checks that each script still runs and produces sane values, that the report
has every section, and that a quick run never touches the real results in benchmarks/results/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, data_dir, mosquitto_binary

pytestmark = pytest.mark.slow

BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from report import SECTIONS  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, subprocess.CompletedProcess]:
    if not (data_dir() / "nab" / "labels" / "combined_windows.json").is_file():
        pytest.skip(f"NAB corpus not found under {data_dir()} (set RNNEDGE_DATA to the shared data directory)")
    if not (data_dir() / "ett" / "ETTh1.csv").is_file():
        pytest.skip(f"ETTh1 not found under {data_dir()} (set RNNEDGE_DATA to the shared data directory)")
    mosquitto_binary()  # the end-to-end figures need a broker
    results = tmp_path_factory.mktemp("bench")
    real = {p.name: p.stat().st_mtime_ns for p in (BENCHMARKS / "results").glob("*")}
    report = results / "BENCHMARKS.md"
    command = [sys.executable, str(BENCHMARKS / "run_all.py"), "--quick", "--results", str(results)]
    done = subprocess.run([*command, "--report", str(report)], capture_output=True, text=True, timeout=600)
    assert {p.name: p.stat().st_mtime_ns for p in (BENCHMARKS / "results").glob("*")} == real
    return results, report.read_text(), done


def test_every_benchmark_script_is_a_step_of_make_bench() -> None:
    from run_all import STEPS

    helpers = {"common", "report", "run_all"}
    assert {s.name for s in STEPS} == {p.stem for p in BENCHMARKS.glob("*.py")} - helpers


def load(results: Path, name: str) -> dict:
    return json.loads((results / f"{name}.json").read_text())


def test_every_script_ran_and_the_report_has_every_section(quick_run) -> None:
    results, report, done = quick_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = load(results, "run_all")["steps"]
    assert [name for name, _, _ in SECTIONS] == list(steps) and all(step["ok"] for step in steps.values())
    for name, title, _ in SECTIONS:
        assert f"## {title}" in report
        assert f"by `benchmarks/{name}.py`" in report
    assert "Not measured" not in report and "The last run of" not in report
    assert "Machine: " in report and report.count("Machine: ") == 1


def test_runtime_figures_are_positive_and_every_forecast_arrived(quick_run) -> None:
    results, _, _ = quick_run
    data = load(results, "runtime_throughput")
    for key in ("batch_1", "streams"):
        for timing in ("raw_us", "engine_us", "engine_json_us"):
            assert data[key][timing]["median"] > 0
        assert data[key]["engine_json_us"]["median"] > data[key]["raw_us"]["median"]  # the loop adds to the call
    assert data["streams"]["streams"] == 1000
    e2e = data["end_to_end"]
    assert e2e["all_delivered"] and e2e["forecasts"] > 1000
    assert e2e["runtime_rate"]["median"] > 0 and e2e["bare_paho_rate"]["median"] > 0
    for process in data["processes"].values():
        assert 0 < process["first_output_s"]["median"] < 30 and 5 < process["peak_rss_mb"]["median"] < 2000
    assert {row["runtime"] for row in data["window_recompute"]} == {"onnxruntime", "litert"}


def test_evaluations_produce_their_scores(quick_run) -> None:
    results, report, _ = quick_run
    nab = load(results, "nab_eval")
    assert nab["summary"]["files"] == 2 and not nab["summary"]["complete_corpus"]
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert -100 <= nab["summary"]["scores"][profile]["normalised"] <= 100
        assert -100 <= nab["first_differences_baseline"][profile]["normalised"] <= 100
    assert "not comparable" in report
    baseline = load(results, "nab_baseline")
    assert baseline["files"] == 58 and len(baseline["variants"]) == 4
    for variant in baseline["variants"].values():
        assert all(-100 <= variant["scores"][p]["normalised"] <= 100 for p in nab["summary"]["scores"])
    assert baseline["update_cost"]["stream_anomaly_update_us"] > 0
    etth1 = load(results, "etth1")
    chosen = etth1["horizons"][0]["chosen_by_validation"]
    assert chosen["horizon"] == 24 and chosen["persistence"]["mse"] == pytest.approx(0.0343, abs=1e-4)
    export = load(results, "export_artifacts")["results"]
    assert {r["cell"] for r in export} == {"simplernn", "lstm", "gru"}
    assert all(r["step_us"]["median"] > 0 and r["bytes"] > 0 for r in export)
    assert load(results, "sources_throughput")["csv"]["source_us"] > 0
    assert "| 1 |" in (results / "spool_throughput.md").read_text()
