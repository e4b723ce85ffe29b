"""`rnnedge eval nab` on a few small NAB files with tiny models: the results format, the summary, and proof that the
detector never reads a label (it runs the same on a copy of the corpus without its labels folder)."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import data_dir

from edge_runtime.errors import InputError
from trainer.evaluation import nab_scorer
from trainer.evaluation.cli import add_eval_commands
from trainer.evaluation.nab_eval import DetectorSettings, detect_corpus, results_path, run_nab, training_window

FILES = ("realTraffic/speed_7578.csv", "realAdExchange/exchange-3_cpc_results.csv")
TINY = DetectorSettings(units=4, window=16, epochs=1)

pytestmark = pytest.mark.slow


def corpus() -> Path:
    path = data_dir() / "nab"
    if not (path / "labels" / "combined_windows.json").is_file():
        pytest.skip(f"NAB corpus not found at {path} (set RNNEDGE_DATA to the shared data directory)")
    return path


def small_corpus(root: Path, labels: bool) -> Path:
    """A corpus directory with FILES only; with or without its labels."""
    source = corpus()
    for name in FILES:
        (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "data" / name, root / "data" / name)
    (root / "config").mkdir()
    shutil.copy(source / "config" / "profiles.json", root / "config" / "profiles.json")
    if labels:
        windows = json.loads((source / "labels" / "combined_windows.json").read_text())
        (root / "labels").mkdir()
        (root / "labels" / "combined_windows.json").write_text(json.dumps({n: windows[n] for n in FILES}))
    return root


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="rnnedge")
    add_eval_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.handler(args)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """The command on the labelled copy (one process), and the detector alone on a copy without labels."""
    root = tmp_path_factory.mktemp("nab")
    labelled = small_corpus(root / "labelled", labels=True)
    out = root / "out"
    argv = ["eval", "nab", "--data", str(labelled), "--out", str(out), "--jobs", "1", "--quiet"]
    assert cli(*argv, "--units", "4", "--window", "16", "--epochs", "1") == 0
    blind = small_corpus(root / "blind", labels=False)
    return labelled, out, detect_corpus(blind, FILES, TINY, jobs=1)


def test_results_files_are_in_nab_format_with_a_score_for_every_row(evaluated) -> None:
    labelled, out, _ = evaluated
    windows = json.loads((labelled / "labels" / "combined_windows.json").read_text())
    for name in FILES:
        path = results_path(out, name)
        assert path.parent.name == name.split("/")[0] and path.name.startswith("rnnedge_")
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows[0] == ["timestamp", "value", "anomaly_score", "label"]
        timestamps, values = nab_scorer.read_data_file(labelled / "data" / name)
        table = nab_scorer.read_results(path)
        assert table.timestamps == timestamps
        np.testing.assert_array_equal(table.values, values)
        # every row has a score, the probationary ones too (NAB never scores them, but they exist)
        assert len(table.scores) == len(values) and np.all((table.scores >= 0) & (table.scores <= 1))
        layout = nab_scorer.file_layout(len(values), nab_scorer.window_rows(timestamps, windows[name], name))
        np.testing.assert_array_equal(table.labels, nab_scorer.window_labels(layout))
        assert table.labels.sum() > 0


def test_the_detector_reads_no_label(evaluated) -> None:
    _, out, blind = evaluated
    assert set(blind) == set(FILES)
    alarms = 0
    for name in FILES:
        scores = nab_scorer.read_results(results_path(out, name)).scores
        np.testing.assert_array_equal(blind[name].scores, scores)
        alarms += int(np.count_nonzero(scores))
        # a row's score is the engine's alarm score, at or above the runtime's alarm threshold, or 0
        assert np.all((scores == 0) | (scores >= 0.5))
        assert blind[name].forecasts > 0 and not blind[name].untrained
    assert alarms > 0


def test_summary_scores_three_profiles_and_says_a_subset_is_not_comparable(evaluated) -> None:
    _, out, blind = evaluated
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 2 and summary["complete_corpus"] is False and summary["published"] == {}
    assert set(summary["scores"]) == set(nab_scorer.PROFILE_NAMES)
    standard = summary["scores"]["standard"]
    assert standard["detected_windows"] + standard["missed_windows"] == summary["windows_scored"] > 0
    assert -100 <= standard["normalised"] <= 100
    assert summary["per_file"][FILES[0]]["alarms"] == blind[FILES[0]].alarms
    markdown = (out / "summary.md").read_text()
    assert "not comparable" in markdown and "rnnedge (this run)" in markdown


def test_short_probationary_periods_get_shorter_windows() -> None:
    assert training_window(750, 32) == 32
    assert training_window(168, 32) == 15  # 10% validation split: 16 rows hold a 15-row window and its target
    assert training_window(40, 32) == 4


def test_unusable_input_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no data files"):
        run_nab(tmp_path, tmp_path / "out", TINY)
    with pytest.raises(InputError, match="--jobs 0"):
        cli("eval", "nab", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--jobs", "0")
    blind = small_corpus(tmp_path / "blind", labels=False)
    with pytest.raises(InputError, match="labels are needed to score"):
        run_nab(blind, tmp_path / "out", TINY, files=1, jobs=1)
    broken = tmp_path / "broken"
    (broken / "data" / "real").mkdir(parents=True)
    (broken / "labels").mkdir()
    (broken / "labels" / "combined_windows.json").write_text('{"real/f.csv": []}')
    rows = [f"2014-04-01 00:{m:02d}:00,{m}.5" for m in range(50)]
    rows[7] = "2014-04-01 00:07:00,n/a"
    (broken / "data" / "real" / "f.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"f.csv: line 9: column 'value' holds 'n/a'"):
        run_nab(broken, tmp_path / "out", TINY, jobs=1)


def test_command_defaults_are_the_evaluation_defaults(tmp_path: Path) -> None:
    """The parser states its defaults (it stays light for every `rnnedge` command): they must be the settings'."""
    from trainer.evaluation.etth1 import Etth1Settings

    parser = argparse.ArgumentParser(prog="rnnedge")
    add_eval_commands(parser.add_subparsers(dest="command", required=True))
    nab = parser.parse_args(["eval", "nab", "--data", "d", "--out", "o"])
    assert DetectorSettings(nab.cell, nab.units, nab.window, nab.epochs, nab.seed) == DetectorSettings()
    etth1 = parser.parse_args(["eval", "etth1", "--data", "d", "--out", "o"])
    given = (etth1.cell, etth1.units, etth1.window, etth1.stride, etth1.epochs, etth1.patience)
    assert Etth1Settings(tuple(etth1.horizons), *given, tuple(etth1.seeds)) == Etth1Settings()
