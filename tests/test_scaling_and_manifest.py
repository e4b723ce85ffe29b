"""The pieces the device and the trainer share: scaling both ways, and the manifest round trip."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TrainedBundle
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge_runtime.bundle import ColumnScale, Manifest, load_bundle
from edge_runtime.errors import BundleError
from edge_runtime.scaling import Scaler

finite = st.floats(-1e4, 1e4, allow_nan=False, width=64)


@settings(max_examples=60, deadline=None)
@given(
    horizon=st.integers(1, 4),
    relative=st.booleans(),
    mean=finite,
    std=st.floats(1e-2, 1e3),
    data=st.data(),
)
def test_forecast_units_inverts_model_targets(horizon: int, relative: bool, mean: float, std: float, data) -> None:
    """A model that output exactly its training target would forecast exactly the future values, in units."""
    scaler = Scaler(("a", "b"), ("b",), {"a": ColumnScale(0.0, 1.0), "b": ColumnScale(mean, std)}, relative, horizon)
    raw = data.draw(arrays(np.float64, (5, 2), elements=finite))
    future = data.draw(arrays(np.float64, (5, horizon, 1), elements=finite))
    scaled = scaler.scale_inputs(raw)
    targets = scaler.model_targets(scaled, future)
    assert targets.shape == (5, horizon)
    recovered = scaler.forecast_units(targets, scaled)
    # model inputs and outputs are float32: exact up to float32 rounding of values of this magnitude
    magnitude = abs(mean) + std + np.abs(raw).max() + np.abs(future).max()
    np.testing.assert_allclose(recovered, future, rtol=0, atol=1e-6 * magnitude)


def test_relative_forecast_of_zero_is_persistence() -> None:
    scaler = Scaler(("t",), ("t",), {"t": ColumnScale(20.0, 4.0)}, True, 3)
    scaled = scaler.scale_inputs(np.array([[26.0]]))
    forecast = scaler.forecast_units(np.zeros((1, 3), np.float32), scaled)
    np.testing.assert_allclose(forecast, [[[26.0], [26.0], [26.0]]])


def test_manifest_round_trips_through_json(tiny_bundle: TrainedBundle) -> None:
    manifest = load_bundle(tiny_bundle.bundle_dir).manifest
    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
    assert manifest.cell == "lstm" and manifest.layers == (8,) and manifest.horizon == 2
    assert [s.output for s in manifest.states] == ["state_out_0_h", "state_out_0_c"]


def test_unknown_schema_version_is_refused(tiny_bundle: TrainedBundle, tmp_path: Path) -> None:
    import shutil

    bundle = Path(shutil.copytree(tiny_bundle.bundle_dir, tmp_path / "b"))
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["schema_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="schema_version 99 is not supported"):
        load_bundle(bundle)


def test_golden_vectors_cover_every_output(tiny_bundle: TrainedBundle) -> None:
    bundle = load_bundle(tiny_bundle.bundle_dir)
    golden = bundle.golden()
    spec = bundle.manifest.golden
    assert golden["inputs"].shape == (spec.sequences, spec.steps, 1)
    assert golden["forecast"].shape == (spec.sequences, spec.steps, 2)
    for state in bundle.manifest.states:
        assert golden[state.output].shape == (spec.sequences, spec.steps, state.size)
    assert replace(bundle.manifest, files={}).files == {}
