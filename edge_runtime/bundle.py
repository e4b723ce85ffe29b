"""The bundle format: a directory with `manifest.json`, the model files and the golden vectors.

The runtime reads bundles, so their format is defined here; the exporter builds a `Manifest` and calls
`write_bundle`. The manifest is the one source of truth for every consumer (runtime, parity gate, deploy).
docs/bundle.md documents the schema.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.anomaly import AnomalyParams
from edge_runtime.drift import DriftReference
from edge_runtime.errors import BundleError, InputError

SCHEMA = "rnnedge.bundle"
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SCALER_KINDS = ("zscore", "minmax")
OPTIONAL_GOLDEN = ("task_levels", "window_levels")  # absent from bundles made before differenced features


@dataclass(frozen=True)
class ColumnScale:
    """z-score parameters of one column, fitted on the training split only."""

    mean: float
    std: float


@dataclass(frozen=True)
class StateSpec:
    """One recurrent state tensor: fed in as `input`, read back from `output`, shape (batch, size)."""

    input: str
    output: str
    size: int


FORMATS = ("onnx", "tflite", "numpy")
PRECISIONS = ("float32", "int8", "int8-static")


@dataclass(frozen=True)
class Artifact:
    """One model file. `kind` "step": a sample and the states in, forecast and new states out (streaming);
    "window": (1, window, F) in, the forecast after the last row out (recomputed per sample by those who want it).
    `precision` "int8": int8 weights, activations quantized on the fly or kept float; "int8-static": int8
    activations too, calibrated on states the float model visits. `quantization` names the exact scheme."""

    file: str
    kind: str
    format: str
    precision: str
    quantization: str = "none"


@dataclass(frozen=True)
class Unsupported:
    """A conversion the exporter was asked for and could not make, with the reason (kept for the record)."""

    kind: str
    format: str
    precision: str
    reason: str


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class GoldenSpec:
    """Reference data recorded from Keras at export, so any device can check its artifacts.

    The npz holds `inputs` (S, T, F) scaled, and for every step the step model's forecast output and every
    state output, each (S, T, width): the element-wise float32 check. For the task-level int8 check it holds
    one longer held-out sequence: `task_inputs` (1, N, F), `task_forecast` (1, N, H*T) from Keras, and
    `task_future` (1, N, H, T), the actual target values that followed each row in sensor units (NaN past the end).
    When the bundle has window models: `window_inputs` (K, window, F), `window_forecast` (K, H*T) from Keras and
    `window_future` (K, H, T).
    """

    file: str
    sequences: int
    steps: int
    task_steps: int
    windows: int = 0


@dataclass(frozen=True)
class Manifest:
    cell: str
    layers: tuple[int, ...]
    window: int
    horizon: int
    warmup_steps: int
    features: tuple[str, ...]
    targets: tuple[str, ...]
    time_column: str | None
    relative_to_last: bool
    scaler: dict[str, ColumnScale]
    step_input: str
    step_output: str
    states: tuple[StateSpec, ...]
    artifacts: tuple[Artifact, ...]
    golden: GoldenSpec
    provenance: dict[str, Any]
    unsupported: tuple[Unsupported, ...] = ()
    task: str = "forecast"  # or "classify": the output is class probabilities, `targets` is empty
    classes: tuple[str, ...] = ()  # classify: class names; two classes -> one sigmoid output, P(classes[1])
    head_activation: str = "linear"  # the head's activation, applied by the numpy reference (sigmoid, softmax)
    scaler_kind: str = "zscore"  # "zscore" (mean, std) or "minmax" (min, max - min): both apply (x - mean) / std
    differenced: tuple[str, ...] = ()  # features the model reads as the change of their scaled value
    anomaly: dict[str, AnomalyParams] = field(default_factory=dict)  # per target: prior and alarm policy
    drift: DriftReference | None = None  # training statistics the runtime's drift monitor compares with
    files: dict[str, FileEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "model": {
                "task": self.task,
                "classes": list(self.classes),
                "head_activation": self.head_activation,
                "cell": self.cell,
                "layers": list(self.layers),
                "window": self.window,
                "horizon": self.horizon,
                "warmup_steps": self.warmup_steps,
            },
            "data": {
                "features": list(self.features),
                "targets": list(self.targets),
                "time_column": self.time_column,
                "relative_to_last": self.relative_to_last,
                "differenced": list(self.differenced),
                "scaler": {
                    "kind": self.scaler_kind,
                    "columns": {name: {"mean": s.mean, "std": s.std} for name, s in self.scaler.items()},
                },
            },
            "step_model": {
                "input": self.step_input,
                "output": self.step_output,
                "states": [{"input": s.input, "output": s.output, "size": s.size} for s in self.states],
            },
            "artifacts": [vars(a) for a in self.artifacts],
            "unsupported": [vars(u) for u in self.unsupported],
            "golden": vars(self.golden),
            "anomaly": {name: params.to_json() for name, params in self.anomaly.items()},
            "drift": self.drift.to_json() if self.drift else None,
            "files": {name: vars(entry) for name, entry in sorted(self.files.items())},
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Manifest:
        """Every wrong type or missing field is refused naming its path (e.g. `data.scaler.columns.value.std`)."""
        doc = _object(doc, "the top level")
        if doc.get("schema") != SCHEMA:
            raise BundleError(f"not an rnnedge bundle manifest (schema {doc.get('schema')!r})")
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise BundleError(
                f"manifest schema_version {doc.get('schema_version')!r} is not supported "
                f"(this runtime reads version {SCHEMA_VERSION})"
            )
        model = _object(_field(doc, "model", ""), "model")
        data = _object(_field(doc, "data", ""), "data")
        step = _object(_field(doc, "step_model", ""), "step_model")
        scaler = _object(_field(data, "scaler", "data"), "data.scaler")
        scaler_kind = _str(_field(scaler, "kind", "data.scaler"), "data.scaler.kind")
        if scaler_kind not in SCALER_KINDS:
            raise BundleError(f"scaler kind {scaler_kind!r} is not supported (supported: {', '.join(SCALER_KINDS)})")
        columns = {}
        for name, column in _object(_field(scaler, "columns", "data.scaler"), "data.scaler.columns").items():
            where = f"data.scaler.columns.{name}"
            column = _object(column, where)
            mean = _number(_field(column, "mean", where), f"{where}.mean")
            std = _number(_field(column, "std", where), f"{where}.std")
            if not (math.isfinite(std) and std > 0 and math.isfinite(mean)):
                raise BundleError(f"scaler of {name!r}: mean and std must be finite and std above 0 (std {std})")
            columns[name] = ColumnScale(mean, std)
        states = tuple(
            StateSpec(**_record(item, f"step_model.states[{i}]", {"input": _str, "output": _str, "size": _positive}))
            for i, item in enumerate(_list(_field(step, "states", "step_model"), "step_model.states"))
        )
        time_column = _field(data, "time_column", "data")
        manifest = cls(
            task=_str(model.get("task", "forecast"), "model.task"),
            classes=_strings(model.get("classes", []), "model.classes"),
            head_activation=_str(model.get("head_activation", "linear"), "model.head_activation"),
            cell=_str(_field(model, "cell", "model"), "model.cell"),
            layers=tuple(
                _positive(u, f"model.layers[{i}]")
                for i, u in enumerate(_list(_field(model, "layers", "model"), "model.layers"))
            ),
            window=_positive(_field(model, "window", "model"), "model.window"),
            horizon=_positive(_field(model, "horizon", "model"), "model.horizon"),
            warmup_steps=_count(_field(model, "warmup_steps", "model"), "model.warmup_steps"),
            features=_strings(_field(data, "features", "data"), "data.features"),
            targets=_strings(_field(data, "targets", "data"), "data.targets"),
            time_column=None if time_column is None else _str(time_column, "data.time_column"),
            relative_to_last=_bool(_field(data, "relative_to_last", "data"), "data.relative_to_last"),
            scaler_kind=scaler_kind,
            differenced=_strings(data.get("differenced", []), "data.differenced"),
            scaler=columns,
            step_input=_str(_field(step, "input", "step_model"), "step_model.input"),
            step_output=_str(_field(step, "output", "step_model"), "step_model.output"),
            states=states,
            artifacts=tuple(
                Artifact(**_record(item, f"artifacts[{i}]", _ARTIFACT_FIELDS, {"quantization": _str}))
                for i, item in enumerate(_list(_field(doc, "artifacts", ""), "artifacts"))
            ),
            unsupported=tuple(
                Unsupported(**_record(item, f"unsupported[{i}]", _UNSUPPORTED_FIELDS))
                for i, item in enumerate(_list(doc.get("unsupported", []), "unsupported"))
            ),
            golden=GoldenSpec(**_record(_field(doc, "golden", ""), "golden", _GOLDEN_FIELDS, {"windows": _count})),
            anomaly={
                name: _nested(AnomalyParams.from_json, _object(params, f"anomaly.{name}"), f"anomaly.{name}")
                for name, params in _object(doc.get("anomaly", {}), "anomaly").items()
            },
            drift=_nested(DriftReference.from_json, doc["drift"], "") if doc.get("drift") is not None else None,
            provenance=_object(_field(doc, "provenance", ""), "provenance"),
            files={
                name: FileEntry(**_record(entry, f"files.{name}", {"sha256": _str, "bytes": _count}))
                for name, entry in _object(_field(doc, "files", ""), "files").items()
            },
        )
        _check_agreement(manifest)
        return manifest

    def artifact(self, format: str, precision: str = "float32", kind: str = "step") -> Artifact:
        for artifact in self.artifacts:
            if (artifact.format, artifact.precision, artifact.kind) == (format, precision, kind):
                return artifact
        have = ", ".join(f"{a.kind} {a.format}/{a.precision}" for a in self.artifacts) or "none"
        raise BundleError(f"the bundle has no {kind} model in {format}/{precision} (it has: {have})")


def _check_agreement(manifest: Manifest) -> None:
    """Refuse fields that are each well-typed but unusable or contradicting each other: the runtime would otherwise
    fail on them mid-stream (a missing scaler column, a differenced column that is no input, an artifact format no
    backend reads) or the parity gate would judge nothing. Every bundle the exporter writes satisfies these."""
    if not manifest.artifacts:
        raise BundleError("artifacts is empty: the bundle has no model to run or verify")
    for i, artifact in enumerate(manifest.artifacts):
        if artifact.format not in FORMATS:
            raise BundleError(
                f"artifacts[{i}].format: unknown artifact format {artifact.format!r} (supported: {', '.join(FORMATS)})"
            )
    if manifest.task not in ("forecast", "classify"):
        raise BundleError(f"model.task {manifest.task!r} is not a task rnnedge runs (forecast, classify)")
    features, targets = manifest.features, manifest.targets
    for role, names in (("feature", features), ("target", targets)):
        for name in names:
            if name not in manifest.scaler:
                raise BundleError(f"data.scaler.columns has no entry for the {role} {name!r}: it cannot be scaled")
    for name in manifest.differenced:
        if name not in features:
            raise BundleError(
                f"data.differenced names {name!r}, which is not in data.features ({', '.join(features) or 'none'})"
            )
    if manifest.relative_to_last:
        for name in targets:
            if name not in features:
                raise BundleError(
                    f"data.relative_to_last is true but the target {name!r} is not in data.features: a relative "
                    "forecast is an offset from the target's last observed value"
                )
    for name in manifest.anomaly:
        if name not in targets:
            raise BundleError(
                f"anomaly has parameters for {name!r}, which is not in data.targets ({', '.join(targets) or 'none'})"
            )
    warmup, task_steps = manifest.warmup_steps, manifest.golden.task_steps
    if manifest.task == "classify" and task_steps <= warmup:
        raise BundleError(
            f"golden.task_steps {task_steps} must exceed model.warmup_steps {warmup}: "
            "the task check judges the outputs after the warm-up"
        )
    if manifest.task != "classify" and task_steps <= warmup + manifest.horizon:
        raise BundleError(
            f"golden.task_steps {task_steps} must exceed model.warmup_steps {warmup} + model.horizon "
            f"{manifest.horizon}: the task check judges the forecasts after the warm-up whose future is recorded"
        )


def _shown(value: Any) -> str:
    """A wrong value as the error quotes it: short, on one line."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _field(parent: dict[str, Any], key: str, where: str) -> Any:
    if key not in parent:
        raise BundleError(f"missing field {(f'{where}.{key}' if where else key)!r}")
    return parent[key]


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleError(f"{where} must be an object, not {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise BundleError(f"{where} must be a list, not {type(value).__name__}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BundleError(f"{where} must be a string, not {_shown(value)}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BundleError(f"{where} must be a list of strings, not {_shown(value)}")
    repeated = [item for k, item in enumerate(value) if item in value[:k]]
    if repeated:  # names key the messages' objects: a repeated one would hide a column
        raise BundleError(f"{where} names {repeated[0]!r} twice")
    return tuple(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BundleError(f"{where} must be true or false, not {_shown(value)}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BundleError(f"{where} must be a number, not {_shown(value)}")
    return float(value)


def _whole(value: Any, where: str, minimum: int) -> int:
    """A whole number (JSON has no integer type: 3.0 is 3) of at least `minimum`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not float(value).is_integer()
        or value < minimum
    ):
        raise BundleError(f"{where} must be a whole number of at least {minimum}, not {_shown(value)}")
    return int(value)


def _count(value: Any, where: str) -> int:
    return _whole(value, where, 0)


def _positive(value: Any, where: str) -> int:
    return _whole(value, where, 1)


Reader = Callable[[Any, str], Any]  # one of the readers above: (value, where) -> the typed value

_ARTIFACT_FIELDS: dict[str, Reader] = {"file": _str, "kind": _str, "format": _str, "precision": _str}
_UNSUPPORTED_FIELDS: dict[str, Reader] = {"kind": _str, "format": _str, "precision": _str, "reason": _str}
_GOLDEN_FIELDS: dict[str, Reader] = {"file": _str, "sequences": _positive, "steps": _positive, "task_steps": _count}


def _record(
    value: Any, where: str, required: dict[str, Reader], optional: dict[str, Reader] | None = None
) -> dict[str, Any]:
    """The fields of one manifest object, each read by its reader; unknown fields are refused."""
    value, optional = _object(value, where), optional or {}
    for key in value:
        if key not in required and key not in optional:
            raise BundleError(f"{where}: unknown field {key!r} (known: {', '.join([*required, *optional])})")
    fields = {key: read(_field(value, key, where), f"{where}.{key}") for key, read in required.items()}
    fields.update({key: read(value[key], f"{where}.{key}") for key, read in optional.items() if key in value})
    return fields


def _nested(read: Callable[[Any], Any], value: Any, where: str) -> Any:
    """Read a part whose own reader raises InputError; name where in the manifest it is (drift names itself)."""
    try:
        return read(value)
    except (InputError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BundleError(f"{where}: {exc}" if where else str(exc)) from None


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest
    digest: str  # sha256 of manifest.json, which itself pins every file: identifies the whole bundle

    def file(self, name: str) -> Path:
        return self.path / name

    def golden(self) -> dict[str, np.ndarray]:
        """The golden vectors, refused in one line when the file is not an npz of the arrays and shapes the
        manifest implies (a re-hashed or hand-made bundle passes the sha256 check with any content)."""
        path = self.file(self.manifest.golden.file)
        if not zipfile.is_zipfile(path):
            raise BundleError(f"{path}: not a golden-vector file (not an npz archive)")
        try:
            with np.load(path, allow_pickle=False) as data:
                golden = {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{path}: not a readable golden-vector file ({exc})") from None
        for name, shape in _golden_shapes(self.manifest).items():
            if name not in golden:
                if name in OPTIONAL_GOLDEN:
                    continue
                raise BundleError(f"{path}: golden array {name!r} is missing")
            array = golden[name]
            if (
                array.dtype.kind != "f"
                or array.ndim != len(shape)
                or any(want is not None and have != want for have, want in zip(array.shape, shape, strict=True))
            ):
                expected = "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"
                raise BundleError(
                    f"{path}: golden array {name!r} has shape {array.shape} {array.dtype}, "
                    f"the manifest implies float {expected}"
                )
        return golden


def _golden_shapes(manifest: Manifest) -> dict[str, tuple[int | None, ...]]:
    """Shape of every golden array the parity gate and bench read (None: any length), from the manifest."""
    features, spec, width = len(manifest.features), manifest.golden, output_width(manifest)
    shapes: dict[str, tuple[int | None, ...]] = {
        "inputs": (spec.sequences, spec.steps, features),
        manifest.step_output: (spec.sequences, spec.steps, width),
        **{s.output: (spec.sequences, spec.steps, s.size) for s in manifest.states},
        "task_inputs": (1, spec.task_steps, features),
        "task_forecast": (1, spec.task_steps, width),
        "task_levels": (1, spec.task_steps, features),
    }
    if manifest.task != "classify":
        shapes["task_future"] = (1, spec.task_steps, manifest.horizon, len(manifest.targets))
    if any(a.kind == "window" for a in manifest.artifacts):
        shapes["window_inputs"] = (spec.windows, manifest.window, features)
        shapes["window_forecast"] = (spec.windows, width)
        shapes["window_levels"] = (spec.windows, features)
        if manifest.task != "classify":
            shapes["window_future"] = (spec.windows, manifest.horizon, len(manifest.targets))
    return shapes


def output_width(manifest: Manifest) -> int:
    """Values the step model outputs per sample: H x T forecasts, or one probability per class (two classes:
    one sigmoid output, P(classes[1]))."""
    if manifest.task == "classify":
        return 1 if len(manifest.classes) == 2 else len(manifest.classes)
    return manifest.horizon * len(manifest.targets)


def _output_width_source(manifest: Manifest) -> str:
    """Which manifest fields make the output width, for the error that refuses it."""
    if manifest.task == "classify":
        return f"{len(manifest.classes)} model.classes"
    return f"model.horizon {manifest.horizon} x {len(manifest.targets)} data.targets"


def check_widths(
    model: Path, manifest: Manifest, inputs: dict[str, int | None], outputs: dict[str, int | None]
) -> None:
    """Refuse a manifest whose sample width, state sizes or output width differ from what the model really
    takes and gives (None: not fixed by the model), at load: otherwise the first step, or the first forecast,
    fails deep inside the runtime."""
    declared = {manifest.step_input: len(manifest.features), **{s.input: s.size for s in manifest.states}}
    for name, size in declared.items():
        actual = inputs.get(name)
        if actual is not None and actual != size:
            what = "input" if name == manifest.step_input else "state"
            raise BundleError(
                f"{model}: {what} {name!r} is (batch, {actual}) in the model but (batch, {size}) in the manifest"
            )
    produced = {manifest.step_output: output_width(manifest), **{s.output: s.size for s in manifest.states}}
    for name, size in produced.items():
        actual = outputs.get(name)
        if actual is not None and actual != size:
            source = f" ({_output_width_source(manifest)})" if name == manifest.step_output else ""
            raise BundleError(
                f"{model}: output {name!r} is (batch, {actual}) in the model but (batch, {size}) in the manifest"
                f"{source}"
            )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_bundle(directory: str | os.PathLike[str], trusted_key: Path | None = None) -> Bundle:
    """Read and verify a bundle: signature (when a trusted public key is given), schema, and the presence
    and sha256 of every file it lists."""
    path = Path(directory)
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory")
    if not manifest_path.is_file():
        raise BundleError(f"{path}: no {MANIFEST_NAME} (is this a bundle made by 'rnnedge export'?)")
    raw = manifest_path.read_bytes()
    if trusted_key is not None:
        from edge_runtime.signing import load_public_key, verify_manifest

        verify_manifest(path, raw, load_public_key(trusted_key))
    try:
        manifest = Manifest.from_json(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise BundleError(f"{manifest_path}: not UTF-8 text") from None
    except BundleError as exc:
        raise BundleError(f"{manifest_path}: {exc}") from None
    if manifest.drift and (manifest.drift.feature_names, manifest.drift.target_names) != (
        manifest.features,
        manifest.targets,
    ):
        raise BundleError(f"{manifest_path}: the drift reference names other columns than the model's")
    listed = {a.file for a in manifest.artifacts} | {manifest.golden.file}
    for name in sorted(listed | set(manifest.files)):
        if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise BundleError(f"{manifest_path}: file name {name!r} is not a plain name inside the bundle directory")
    for name in sorted(listed - set(manifest.files)):
        raise BundleError(f"{manifest_path}: {name} has no sha256 entry under 'files'")
    for name, entry in sorted(manifest.files.items()):
        file_path = path / name
        if not file_path.is_file():
            raise BundleError(f"{path}: file {name} listed in the manifest is missing")
        actual = sha256_file(file_path)
        if actual != entry.sha256:
            raise BundleError(
                f"{path}: file {name} is corrupted (sha256 {actual[:12]}..., manifest says {entry.sha256[:12]}...)"
            )
    return Bundle(path, manifest, hashlib.sha256(raw).hexdigest())


def write_bundle(directory: Path, manifest: Manifest) -> Bundle:
    """Seal a bundle whose model and golden files are already in `directory`: hash them, write the manifest."""
    names = sorted({a.file for a in manifest.artifacts} | {manifest.golden.file})
    files = {}
    for name in names:
        file_path = directory / name
        files[name] = FileEntry(sha256_file(file_path), file_path.stat().st_size)
    sealed = replace(manifest, files=files)
    text = json.dumps(sealed.to_json(), indent=2) + "\n"
    (directory / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return load_bundle(directory)
