"""The NAB scorer: each rule pinned on a small synthetic file, and the published HTM scores reproduced."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import data_dir

from edge_runtime.errors import InputError
from trainer.evaluation import nab_scorer
from trainer.evaluation.nab_scorer import CostProfile, file_layout, score_detections, score_file

STANDARD = CostProfile("standard", tp=1.0, fp=0.11, fn=1.0)
LOW_FN = CostProfile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0)
HTM_THRESHOLD = 0.542187690735
# the data README's per-file standard-profile scores of the published HTM rows at HTM_THRESHOLD
HTM_STANDARD = {
    "ambient_temperature_system_failure": -0.7586,
    "cpu_utilization_asg_misconfiguration": -0.2557,
    "ec2_request_latency_system_failure": 1.7059,
    "machine_temperature_system_failure": 1.3601,
    "nyc_taxi": 2.4357,
    "rogue_agent_key_hold": -1.1137,
    "rogue_agent_key_updown": -1.2958,
}
# HTM's published rows carry each row's contribution per profile (S(t)_*); reward_low_FP_rate was scored at a
# higher threshold than the other two: any value in (0.575959, 0.581169] reproduces all 7 files
HTM_PROFILE_THRESHOLDS = {"standard": HTM_THRESHOLD, "reward_low_FN_rate": HTM_THRESHOLD, "reward_low_FP_rate": 0.58}

# 1,000 rows: probation P = 150; one window of 100 rows
ROWS, WINDOW = 1000, (400, 499)


def sigma(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0 if y <= 3 else -1.0


def detect(*rows: int, total: int = ROWS) -> np.ndarray:
    flags = np.zeros(total, dtype=bool)
    flags[list(rows)] = True
    return flags


def one_window_score(*rows: int, profile: CostProfile = STANDARD) -> float:
    return score_detections(detect(*rows), file_layout(ROWS, [WINDOW]), profile).score


def nab_dir() -> Path:
    path = data_dir() / "nab"
    if not (path / "labels" / "combined_windows.json").is_file():
        pytest.skip(f"NAB corpus not found at {path} (set RNNEDGE_DATA to the shared data directory)")
    return path


def test_probationary_period_is_15_percent_capped_at_750_rows() -> None:
    assert [nab_scorer.probation_rows(n) for n in (1000, 1882, 4999, 5000, 22695)] == [150, 282, 749, 750, 750]


def test_scaled_sigmoid() -> None:
    y = np.array([-1.0, 0.0, 0.5, 3.0, 3.0001])
    np.testing.assert_allclose(nab_scorer.scaled_sigmoid(y), [sigma(v) for v in y], rtol=0, atol=1e-15)
    assert nab_scorer.scaled_sigmoid(np.array([1e6]))[0] == -1.0


def test_a_detection_on_the_window_start_scores_a_tp() -> None:
    assert one_window_score(400) == pytest.approx(1.0, abs=1e-12)
    assert one_window_score(400, profile=CostProfile("x", tp=2.5, fp=0.11, fn=1.0)) == pytest.approx(2.5)


def test_a_later_detection_in_the_window_scores_less() -> None:
    late = one_window_score(490)  # y = -(499 - 490 + 1)/100
    assert late == pytest.approx(sigma(-0.1) / sigma(-1.0), abs=1e-12)
    assert 0.24 < late < 0.25
    assert one_window_score(450) > late


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    assert one_window_score(420, 430, 440, 499) == pytest.approx(one_window_score(420), abs=1e-12)


def test_a_missed_window_costs_a_fn() -> None:
    assert one_window_score() == -1.0
    assert one_window_score(profile=LOW_FN) == -2.0


def test_a_false_positive_just_after_a_window_costs_little_far_after_costs_a_fp() -> None:
    missed = -1.0
    right_after = one_window_score(500) - missed  # y = 1/99
    far_after = one_window_score(900) - missed  # y = 401/99 > 3
    assert right_after == pytest.approx(0.11 * sigma(1 / 99), abs=1e-12)
    assert -0.003 < right_after < 0
    assert far_after == pytest.approx(-0.11)
    assert one_window_score(200) - missed == pytest.approx(-0.11)  # before any window has ended
    assert one_window_score(200, 300, 900) - missed == pytest.approx(-0.33)  # every false positive row adds


def test_false_positives_are_weighed_against_the_most_recent_window_that_ended() -> None:
    layout = file_layout(ROWS, [(300, 309), (600, 799)])
    near_wide = score_detections(detect(810), layout, STANDARD).score + 2  # 11 rows after a 200-row window
    near_narrow = score_detections(detect(320), layout, STANDARD).score + 2  # 11 rows after a 10-row window
    assert near_wide == pytest.approx(0.11 * sigma(11 / 199))
    assert near_narrow == pytest.approx(0.11 * sigma(11 / 9))
    assert near_narrow < near_wide


def test_probationary_rows_are_never_scored() -> None:
    assert one_window_score(0, 10, 149) == -1.0  # only the missed window
    # a window inside the probationary period does not count at all; one that ends after it does
    assert score_detections(detect(), file_layout(ROWS, [(50, 120)]), STANDARD).score == 0.0
    straddling = file_layout(ROWS, [(100, 199)])
    assert score_detections(detect(120), straddling, STANDARD).score == -1.0
    assert score_detections(detect(120, 160), straddling, STANDARD).score == pytest.approx(sigma(-0.4) / sigma(-1))


def test_score_file_detects_at_or_above_the_threshold() -> None:
    scores = np.zeros(ROWS)
    scores[[420, 800]] = [0.7, 0.6]
    layout = file_layout(ROWS, [WINDOW])
    at_07 = score_file(scores, layout, STANDARD, 0.7)
    at_06 = score_file(scores, layout, STANDARD, 0.6)
    assert (at_07.detected_windows, at_07.missed_windows, at_07.false_positives) == (1, 0, 0)
    assert at_06.false_positives == 1 and at_06.score == pytest.approx(at_07.score - 0.11)


def synthetic_corpus(seed: int) -> tuple[dict[str, np.ndarray], dict[str, nab_scorer.FileLayout]]:
    rng = np.random.default_rng(seed)
    scores, layouts = {}, {}
    for k in range(6):
        rows = int(rng.integers(300, 1200))
        starts = np.sort(rng.choice(np.arange(rows // 10, rows - 40, 40), size=int(rng.integers(0, 4)), replace=False))
        windows = [(int(s), int(s) + int(rng.integers(2, 38))) for s in starts]
        layouts[f"f{k}"] = file_layout(rows, windows)
        scores[f"f{k}"] = np.round(rng.random(rows) ** 6, 2)  # coarse values: many ties
    return scores, layouts


@pytest.mark.parametrize("seed", range(5))
def test_the_threshold_sweep_finds_the_brute_force_optimum(seed: int) -> None:
    scores, layouts = synthetic_corpus(seed)
    for profile in (STANDARD, LOW_FN, CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0)):
        candidates = [math.inf, *np.unique(np.concatenate(list(scores.values())))]
        brute = [sum(score_file(scores[n], layouts[n], profile, t).score for n in layouts) for t in candidates]
        threshold, raw = nab_scorer.best_threshold(list(scores.values()), list(layouts.values()), profile)
        assert raw == pytest.approx(max(brute), abs=1e-9)
        # among equally good thresholds the highest is chosen
        assert threshold == max(t for t, b in zip(candidates, brute, strict=True) if b >= max(brute) - 1e-9)
        result = nab_scorer.score_corpus(scores, layouts, profile)
        assert result.raw == pytest.approx(raw, abs=1e-9) and result.threshold == threshold


def test_null_detector_normalises_to_0_and_perfect_detector_to_100() -> None:
    _, layouts = synthetic_corpus(7)
    windows = sum(int(layout.counted.sum()) for layout in layouts.values())
    assert windows > 3
    null = {n: np.zeros(layout.rows) for n, layout in layouts.items()}
    perfect = {}
    for n, layout in layouts.items():
        perfect[n] = np.zeros(layout.rows)
        perfect[n][layout.windows[:, 0]] = 1.0
    for profile in (STANDARD, LOW_FN):
        assert nab_scorer.score_corpus(null, layouts, profile).normalised == 0.0
        best = nab_scorer.score_corpus(perfect, layouts, profile)
        assert best.normalised == pytest.approx(100.0) and best.threshold == 1.0
        assert (best.detected_windows, best.missed_windows, best.false_positives) == (windows, 0, 0)


def test_results_csv_round_trip(tmp_path: Path) -> None:
    stamps = ["2014-01-01 00:00:00", "2014-01-01 00:05:00", "2014-01-01 00:10:00"]
    values, scores = np.array([1.5, 2.0, 1e-7]), np.array([0.0, 0.123456789012345, 1.0])
    nab_scorer.write_results(tmp_path / "r.csv", stamps, values, scores, np.array([0, 1, 1]))
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == "timestamp,value,anomaly_score,label"
    table = nab_scorer.read_results(tmp_path / "r.csv")
    assert table.timestamps == stamps
    assert table.values.tolist() == values.tolist() and table.scores.tolist() == scores.tolist()
    assert table.labels.tolist() == [0, 1, 1]


def test_bad_input_names_the_problem(tmp_path: Path) -> None:
    layout = file_layout(ROWS, [WINDOW])
    with pytest.raises(InputError, match="999 scores for a file of 1000 rows"):
        score_file(np.zeros(999), layout, STANDARD, 0.5)
    with pytest.raises(InputError, match="1 anomaly scores are not finite"):
        score_file(np.r_[np.zeros(999), np.nan], layout, STANDARD, 0.5)
    with pytest.raises(InputError, match="not sorted, disjoint"):
        file_layout(ROWS, [(500, 600), (550, 700)])
    with pytest.raises(InputError, match="window edge '2014-01-02 00:00:00' is not a timestamp"):
        nab_scorer.window_rows(["2014-01-01 00:00:00"], [["2014-01-01 00:00:00", "2014-01-02 00:00:00"]], "f")
    (tmp_path / "r.csv").write_text("timestamp,value,anomaly_score,label\n2014-01-01,1.0,high,0\n")
    with pytest.raises(InputError, match="line 2: column 'anomaly_score' holds 'high'"):
        nab_scorer.read_results(tmp_path / "r.csv")


def test_window_edges_match_rows_as_times_first_match_wins() -> None:
    stamps = ["2014-03-09 01:00:00", "2014-03-09 02:00:00", "2014-03-09 02:00:00", "2014-03-09 03:00:00"]
    window = [["2014-03-09 02:00:00.000000", "2014-03-09 03:00:00.000000"]]
    assert nab_scorer.window_rows(stamps, window, "f") == ((1, 3),)


def htm_rows() -> dict[str, tuple[np.ndarray, dict[str, float]]]:
    """name -> (HTM anomaly scores, the per-profile sums of the published per-row score columns)."""
    rows = {}
    for path in sorted((nab_dir() / "results" / "numenta" / "realKnownCause").glob("numenta_*.csv")):
        with path.open(newline="") as handle:
            records = list(csv.DictReader(handle))
        sums = {p: math.fsum(float(r[f"S(t)_{p}"]) for r in records) for p in nab_scorer.PROFILE_NAMES}
        rows[path.stem.removeprefix("numenta_")] = (nab_scorer.read_results(path).scores, sums)
    return rows


@pytest.fixture(scope="module")
def corpus_layouts() -> dict[str, nab_scorer.FileLayout]:
    corpus = nab_scorer.load_corpus(nab_dir())
    return {f.name: file_layout(len(f.values), f.windows) for f in corpus}


def test_the_corpus_has_58_files_and_116_counted_windows(corpus_layouts) -> None:
    assert len(corpus_layouts) == 58
    assert sum(layout.rows for layout in corpus_layouts.values()) == 365_558
    assert sum(int(layout.counted.sum()) for layout in corpus_layouts.values()) == 116
    profiles = nab_scorer.load_profiles(nab_dir())
    assert profiles["reward_low_FN_rate"] == LOW_FN and profiles["standard"] == STANDARD


def test_htm_per_file_standard_scores_are_reproduced(corpus_layouts) -> None:
    rows = htm_rows()
    assert sorted(rows) == sorted(HTM_STANDARD)
    for name, expected in HTM_STANDARD.items():
        scores, _ = rows[name]
        got = score_file(scores, corpus_layouts[f"realKnownCause/{name}.csv"], STANDARD, HTM_THRESHOLD).score
        assert got == pytest.approx(expected, abs=1e-4), name


def test_htm_per_row_contributions_of_every_profile_are_reproduced(corpus_layouts) -> None:
    profiles = nab_scorer.load_profiles(nab_dir())
    for name, (scores, published) in htm_rows().items():
        layout = corpus_layouts[f"realKnownCause/{name}.csv"]
        for profile, threshold in HTM_PROFILE_THRESHOLDS.items():
            got = score_file(scores, layout, profiles[profile], threshold).score
            assert got == pytest.approx(published[profile], abs=1e-9), (name, profile)


def test_htm_labels_match_the_windows(corpus_layouts) -> None:
    for path in (nab_dir() / "results" / "numenta" / "realKnownCause").glob("numenta_*.csv"):
        layout = corpus_layouts["realKnownCause/" + path.name.removeprefix("numenta_")]
        assert nab_scorer.read_results(path).labels.tolist() == nab_scorer.window_labels(layout).tolist()
