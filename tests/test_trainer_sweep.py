"""`rnnedge sweep`: every candidate trained, exported and measured; the choice follows the stated rule."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from trainer_fixtures import write_sensor_csv

from edge_runtime.cli import main
from edge_runtime.errors import InputError
from trainer.options import parse_layers
from trainer.sweep import Budget, Candidate, Entry, select


def test_sweep_writes_leaderboard_and_links_the_chosen_run(tmp_path: Path, capsys) -> None:
    data = write_sensor_csv(tmp_path / "s.csv", rows=500)
    out = tmp_path / "sweep"
    argv = ["sweep", str(data), "--target", "temp", "--cells", "lstm", "--units", "4", "6-4", "--windows", "16"]
    assert main([*argv, "--epochs", "1", "--no-plots", "--tolerance", "0.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[1/2] lstm-4-w16: val " in printed and "[2/2] lstm-6-4-w16: val " in printed

    with (out / "leaderboard.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["rank"] for r in rows] == ["1", "2"]
    assert sorted(r["name"] for r in rows) == ["lstm-4-w16", "lstm-6-4-w16"]
    errors = [float(r["val_error"]) for r in rows]
    assert errors == sorted(errors)
    for row in rows:
        assert int(row["parameters"]) > 0 and int(row["onnx_bytes"]) > 1000
        assert 0 < float(row["step_latency_us"]) < 10_000
        assert float(row["parity_max_abs_error"]) < 1e-5
        assert float(row["test_mae"]) > 0 and float(row["test_persistence_mae"]) > 0
    # the stated rule, recomputed from the leaderboard: fewest parameters within 50% of the best
    close = [r for r in rows if float(r["val_error"]) <= errors[0] * 1.5]
    expected = min(close, key=lambda r: (int(r["parameters"]), float(r["val_error"])))
    assert [r["name"] for r in rows if r["chosen"] == "True"] == [expected["name"]]
    assert (out / "best").resolve() == (out / "runs" / expected["name"]).resolve()
    assert (out / "best" / "model.keras").is_file() and (out / "best-bundle" / "manifest.json").is_file()
    markdown = (out / "leaderboard.md").read_text()
    assert f"**Chosen: `{expected['name']}`**" in markdown and "within 50.0% of the best validation error" in markdown


def entry(name: str, error: float, params: int, latency: float, size: int) -> Entry:
    return Entry(
        Candidate("lstm", (params,), 16), Path(name), Path(name), error, params, size, latency, 0.0, {}, 1, 1.0
    )


CANDIDATES = [
    entry("big", 0.100, 9000, 20.0, 40_000),
    entry("mid", 0.101, 3000, 12.0, 15_000),
    entry("small", 0.150, 500, 6.0, 4_000),
]


@pytest.mark.parametrize(
    ("budget", "chosen"),
    [
        (Budget(), 9000),
        (Budget(tolerance=0.02), 3000),
        (Budget(tolerance=1.0), 500),
        (Budget(max_latency_us=15), 3000),
        (Budget(max_bytes=10_000), 500),
        (Budget(tolerance=0.02, max_params=2000), 500),
    ],
)
def test_selection_rule(budget: Budget, chosen: int) -> None:
    entries = [entry(f"{e.parameters}", e.val_error, e.parameters, e.latency_us, e.onnx_bytes) for e in CANDIDATES]
    assert select(entries, budget).parameters == chosen
    assert [e.parameters for e in entries if e.chosen] == [chosen]


def test_nothing_within_budget_is_an_error_naming_the_closest() -> None:
    with pytest.raises(InputError, match=r"no candidate fits the budget \(.*latency <= 1.0 us\); fastest 6.0 us"):
        select(list(CANDIDATES), Budget(max_latency_us=1.0))


def test_units_spelling() -> None:
    assert [parse_layers(t) for t in ("32", "32-16", "32x16x8", "64,32")] == [(32,), (32, 16), (32, 16, 8), (64, 32)]
    with pytest.raises(InputError, match="units 'big' is not a layer size"):
        parse_layers("big")
