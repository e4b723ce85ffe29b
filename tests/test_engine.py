"""The multi-stream engine: batching changes nothing, time order is enforced, gaps reset, residuals are right."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TrainedBundle

from edge_runtime.backends import open_step_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.engine import EngineSettings, StreamEngine
from edge_runtime.parity import stream
from edge_runtime.samples import Sample
from edge_runtime.scaling import Scaler


def engine_for(tiny_bundle: TrainedBundle, **settings) -> StreamEngine:
    bundle = load_bundle(tiny_bundle.bundle_dir)
    return StreamEngine(bundle, open_step_backend(bundle, bundle.manifest.artifact("onnx")), EngineSettings(**settings))


def series(seed: int, rows: int) -> np.ndarray:
    return 80 + np.cumsum(np.random.default_rng(seed).normal(0, 0.5, rows))


def reference_forecasts(tiny_bundle: TrainedBundle, values: np.ndarray) -> np.ndarray:
    """One stream alone, through the same backend, outside the engine: (rows, H, T) in sensor units."""
    bundle = load_bundle(tiny_bundle.bundle_dir)
    backend = open_step_backend(bundle, bundle.manifest.artifact("onnx"))
    scaler = Scaler.from_manifest(bundle.manifest)
    scaled = scaler.scale_inputs(values[:, None])
    output = stream(backend, scaled[None])[bundle.manifest.step_output][0]
    return scaler.forecast_units(output, scaled)


def test_interleaved_streams_in_batches_equal_each_stream_alone(tiny_bundle: TrainedBundle) -> None:
    engine = engine_for(tiny_bundle)
    rows, names = 60, ["a", "b", "c"]
    data = {name: series(i, rows) for i, name in enumerate(names)}
    received: dict[str, list[dict]] = {name: [] for name in names}
    for t in range(rows):
        # stream "c" arrives twice per batch every other step (two of its samples in one batch)
        batch = [Sample(name, float(t), str(t), (float(data[name][t]),)) for name in names if name != "c"]
        if t % 2 == 0:
            batch += [Sample("c", float(t), str(t), (float(data["c"][t]),))]
            if t + 1 < rows:
                batch += [Sample("c", float(t + 1), str(t + 1), (float(data["c"][t + 1]),))]
        forecasts, refused = engine.process(batch)
        assert refused == []
        for message in forecasts.messages():
            received[message["stream"]].append(message)
    warmup = engine.warmup
    for name in names:
        messages = received[name]
        assert [m["seq"] for m in messages] == list(range(rows - warmup))
        got = np.array([m["forecast"]["value"] for m in messages])
        np.testing.assert_allclose(got, reference_forecasts(tiny_bundle, data[name])[warmup:, :, 0], atol=1e-5)
    assert engine.counters.forecasts == 3 * (rows - warmup)
    assert engine.counters.batches > rows  # "c" needed a second call in the batches where it appeared twice


def test_residual_is_the_observation_minus_the_previous_one_step_forecast(tiny_bundle: TrainedBundle) -> None:
    engine = engine_for(tiny_bundle)
    values = series(7, 30)
    messages = []
    for t, value in enumerate(values):
        forecasts, _ = engine.process([Sample("s", float(t), str(t), (float(value),))])
        messages += forecasts.messages()
    assert messages[0]["residual"] == {"value": None} and messages[0]["score"] is None
    for previous, current in zip(messages, messages[1:], strict=False):
        expected = current["observed"]["value"] - previous["forecast"]["value"][0]
        assert current["residual"]["value"] == pytest.approx(expected, abs=1e-9)
        assert 0.0 <= current["score"] <= 1.0 and current["score"] == round(current["score"], 4)


def test_out_of_order_and_duplicate_samples_are_refused_without_touching_state(tiny_bundle: TrainedBundle) -> None:
    engine = engine_for(tiny_bundle)
    values = series(3, 20)
    baseline = engine_for(tiny_bundle)
    clean, noisy = [], []
    for t, value in enumerate(values):
        clean += [m["forecast"] for m in baseline.process([Sample("s", float(t), str(t), (value,))])[0].messages()]
        batch = [Sample("s", float(t), str(t), (value,))]
        if t == 10:
            batch += [Sample("s", 10.0, "10", (999.0,)), Sample("s", 4.0, "4", (-999.0,))]
        forecasts, refused = engine.process(batch)
        noisy += [m["forecast"] for m in forecasts.messages()]
        if t == 10:
            assert [r.reason.split()[0] for r in refused] == ["duplicate", "out-of-order"]
    assert noisy == clean
    assert engine.counters.rejected == 2


def test_a_long_gap_resets_the_stream_and_it_warms_up_again(tiny_bundle: TrainedBundle) -> None:
    engine = engine_for(tiny_bundle, gap_factor=3.0)
    values = series(5, 40)
    seqs = []
    for t, value in enumerate(values):
        ts = float(t * 60 if t < 20 else t * 60 + 600)  # one-minute samples, then a ten-minute hole
        seqs += engine.process([Sample("s", ts, str(ts), (value,))])[0].seq
    warmup = engine.warmup
    assert engine.counters.gap_resets == 1
    assert engine.streams["s"].resets == 1
    # 20 - warmup forecasts before the gap, then warm-up again: 20 - warmup after, numbering continues
    assert seqs == list(range(2 * (20 - warmup)))


def test_streams_beyond_the_limit_are_refused(tiny_bundle: TrainedBundle) -> None:
    engine = engine_for(tiny_bundle, max_streams=2)
    _, refused = engine.process([Sample(n, 0.0, "0", (80.0,)) for n in ("a", "b", "c")])
    assert [r.stream for r in refused] == ["c"]
    assert "max_streams=2" in refused[0].reason
    assert set(engine.streams) == {"a", "b"}


def test_wrong_feature_count_and_nan_are_refused(tiny_bundle: TrainedBundle) -> None:
    engine = engine_for(tiny_bundle)
    _, refused = engine.process([Sample("s", 0.0, "0", (1.0, 2.0)), Sample("s", 1.0, "1", (float("nan"),))])
    assert [r.reason for r in refused] == ["2 values, the model needs 1", "a value is NaN or infinite"]
    assert engine.streams == {}


def test_one_sample_per_call_and_whole_batches_give_the_same_messages_and_state(tiny_bundle: TrainedBundle) -> None:
    """The batch-of-one path (Python floats) and the batched path (arrays) are two implementations of one
    computation: messages, anomaly scores, alarms, drift figures and numbering agree whatever the batching.
    20 streams (the arrays grow past their first 16 rows), one with its own short window, spikes that alarm,
    and one stream with a gap that resets it."""
    overrides = {"*": {"threshold": 0.3, "rearm_below": 0.1}, "s3": {"short_window": 3}}
    settings = {"anomaly_overrides": overrides, "drift_window": 20}
    alone, batched = engine_for(tiny_bundle, **settings), engine_for(tiny_bundle, **settings)
    names = [f"s{k}" for k in range(20)]
    data = {name: series(100 + k, 90) for k, name in enumerate(names)}
    for k, name in enumerate(names):
        data[name][40 + k : 43 + k] += 25.0  # a spike per stream, at different times
    by_one, by_batch = [], []
    for t in range(90):
        ts = float(t * 60 + (900 if t >= 60 else 0))
        batch = [Sample(n, ts + (600 if n == "s5" and t >= 30 else 0), str(t), (float(data[n][t]),)) for n in names]
        for sample in batch:
            by_one += alone.process([sample])[0].texts()
        by_batch += batched.process(batch)[0].texts()
    assert by_batch == by_one
    assert batched.stream_summary() == alone.stream_summary()
    counters = vars(batched.counters) | {"batches": 0}
    assert counters == vars(alone.counters) | {"batches": 0}
    assert alone.counters.alarms >= 20 and alone.counters.gap_resets == 1 + 20  # s5's gap, then everyone's at 60
    assert alone.stream_summary()["s0"]["drift"]["features"]["value"]["psi"] is not None


def test_a_gap_inside_one_call_resets_the_stream_where_it_happens(tiny_bundle: TrainedBundle) -> None:
    """12 samples of one stream with a gap before the 9th, one per call or in two calls of 6: the stream's samples
    before the gap still run from its state, and the reset comes with the sample after the gap."""
    values = series(7, 12)
    samples = [Sample("a", 60.0 * t + (10_000 if t >= 8 else 0), str(t), (float(values[t]),)) for t in range(12)]
    alone, batched = engine_for(tiny_bundle), engine_for(tiny_bundle)
    by_one = [text for s in samples for text in alone.process([s])[0].texts()]
    by_call = batched.process(samples[:6])[0].texts() + batched.process(samples[6:])[0].texts()
    assert [json.loads(t)["ts"] for t in by_one] == ["4", "5", "6", "7"]  # warm-up 4, then again after the gap
    assert by_call == by_one
    assert batched.counters.gap_resets == alone.counters.gap_resets == 1


def test_int_and_numpy_sample_values_are_written_as_json_floats(tiny_bundle: TrainedBundle) -> None:
    plain, numeric = engine_for(tiny_bundle), engine_for(tiny_bundle)
    texts, expected = [], []
    for t in range(30):
        value = 80 + t % 3
        texts += numeric.process([Sample("a", 60.0 * t, str(t), (np.float64(value) if t % 2 else value,))])[0].texts()
        expected += plain.process([Sample("a", 60.0 * t, str(t), (float(value),))])[0].texts()
    assert texts == expected and json.loads(texts[-1])["observed"] == {"value": 82.0}  # 80 + 29 % 3
