"""The parity gate: stream the bundle's golden inputs through every artifact and compare with Keras.

float32 artifacts are judged element-wise: every output (state outputs too), every step, within 1e-5.
int8 artifacts are judged on the task: forecast MAE on a held-out sequence within 2% of the float model's, and
anomaly decisions that agree with the float model's on at least 99% of the rows; their element-wise error is
reported. The reference outputs travel in the bundle, so this runs on a device with the base install.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from edge_runtime.anomaly import StreamAnomaly
from edge_runtime.backends import RUNTIME_OF_FORMAT, StepBackend, open_step_backend, runtime_missing
from edge_runtime.bundle import Artifact, Bundle, Manifest
from edge_runtime.scaling import Scaler

FLOAT_TOLERANCE = 1e-5
INT8_MAE_RATIO = 1.02
INT8_DECISION_AGREEMENT = 0.99


@dataclass(frozen=True)
class OutputParity:
    output: str
    max_abs_error: float
    worst_sequence: int
    worst_step: int
    first_failing_step: int | None  # first step (any sequence) whose error exceeds the tolerance


@dataclass(frozen=True)
class TaskParity:
    forecast_mae: float | None  # forecasters: MAE against what really followed (classifiers: None)
    float_mae: float | None
    mae_ratio: float | None
    decision_agreement: float  # anomaly decisions (forecasters) or predicted classes (classifiers) vs float
    rows: int


@dataclass(frozen=True)
class ArtifactParity:
    artifact: Artifact
    runtime: str
    check: str  # "elementwise" (float32) or "task" (int8)
    status: str  # "pass", "fail" or "skipped"
    outputs: tuple[OutputParity, ...] = ()
    task: TaskParity | None = None
    note: str = ""

    @property
    def worst(self) -> OutputParity | None:
        return max(self.outputs, key=lambda o: o.max_abs_error) if self.outputs else None

    @property
    def label(self) -> str:
        a = self.artifact
        return f"{a.file} ({a.kind} {a.format}/{a.precision}) on {self.runtime}"


@dataclass(frozen=True)
class ParityReport:
    bundle: str
    results: tuple[ArtifactParity, ...]

    @property
    def passed(self) -> bool:
        """No pair failed, and at least one was checked: a gate that verified nothing must not pass."""
        return all(r.status != "fail" for r in self.results) and any(r.status == "pass" for r in self.results)

    def summary(self) -> str:
        checked = [r for r in self.results if r.status != "skipped"]
        failed = [r for r in checked if r.status == "fail"]
        if not checked:
            return (
                "parity FAILED: nothing was checked, every artifact was skipped ("
                + "; ".join(f"{r.label}: {r.note}" for r in self.results)
                + ")"
            )
        if not failed:
            worst = max((r.worst.max_abs_error for r in checked if r.check == "elementwise" and r.worst), default=0)
            return f"parity passed: {len(checked)} artifact/runtime pairs, largest float32 error {worst:.3g}"
        return "parity FAILED: " + "; ".join(f"{r.label}: {r.note}" for r in failed)

    def markdown(self) -> str:
        lines = [
            "| artifact | runtime | check | max abs error (output, seq, step) | int8 MAE ratio | decisions agree "
            "| verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.results:
            a = r.artifact
            worst = r.worst
            error = (
                f"{worst.max_abs_error:.3g} ({worst.output}, {worst.worst_sequence}, {worst.worst_step})"
                if worst
                else "-"
            )
            ratio = f"{r.task.mae_ratio:.4f}" if r.task and r.task.mae_ratio is not None else "-"
            agree = f"{100 * r.task.decision_agreement:.2f}%" if r.task else "-"
            verdict = r.status if not r.note else f"{r.status}: {r.note}"
            lines.append(
                f"| {a.file} ({a.kind} {a.format}/{a.precision}) | {r.runtime} | {r.check} | {error} | {ratio} | "
                f"{agree} | {verdict} |"
            )
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "bundle": self.bundle,
            "passed": self.passed,
            "tolerances": {
                "float32_max_abs_error": FLOAT_TOLERANCE,
                "int8_mae_ratio": INT8_MAE_RATIO,
                "int8_decision_agreement": INT8_DECISION_AGREEMENT,
            },
            "results": [asdict(r) for r in self.results],
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    def write_junit(self, path: Path) -> None:
        """One test case per artifact and runtime, as CI systems (GitLab, Jenkins, GitHub reporters) read it."""
        suite = ElementTree.Element(
            "testsuite",
            name="rnnedge parity",
            tests=str(len(self.results)),
            failures=str(sum(r.status == "fail" for r in self.results)),
            skipped=str(sum(r.status == "skipped" for r in self.results)),
        )
        for r in self.results:
            case = ElementTree.SubElement(suite, "testcase", classname=f"parity.{self.bundle[:12]}", name=r.label)
            if r.status == "fail":
                ElementTree.SubElement(case, "failure", message=r.note).text = r.note
            elif r.status == "skipped":
                ElementTree.SubElement(case, "skipped", message=r.note)
        ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def stream(backend: StepBackend, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run all sequences as one batch, step by step from zero state; every output as (S, T, width)."""
    sequences, steps, _ = inputs.shape
    states = backend.zero_state(sequences)
    recorded: dict[str, list[np.ndarray]] = {name: [] for name in backend.output_names}
    for t in range(steps):
        forecast, states = backend.step(np.ascontiguousarray(inputs[:, t, :]), states)
        for name, value in zip(backend.output_names, [forecast, *states], strict=True):
            recorded[name].append(np.asarray(value))
    return {name: np.stack(values, axis=1) for name, values in recorded.items()}


def compare(name: str, actual: np.ndarray, expected: np.ndarray, tolerance: float) -> OutputParity:
    error = np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max(axis=-1)  # (S, T)
    sequence, step = np.unravel_index(int(np.argmax(error)), error.shape)
    over = np.flatnonzero((error > tolerance).any(axis=0))
    return OutputParity(name, float(error.max()), int(sequence), int(step), int(over[0]) if over.size else None)


def anomaly_decisions(manifest: Manifest, residuals: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row, is the stream anomalous (score at or above the alarm threshold on any target)? Residuals and
    values (N, T) are fed in order through the runtime's own scorer with the bundle's parameters."""
    flags = np.zeros(len(residuals), dtype=bool)
    for j, target in enumerate(manifest.targets):
        params = manifest.anomaly[target]
        scorer = StreamAnomaly(params)
        for i, (residual, value) in enumerate(zip(residuals[:, j], values[:, j], strict=True)):
            flags[i] |= scorer.update(float(residual), float(value)).score >= params.threshold
    return flags


def _one_step_residuals(
    manifest: Manifest, output: np.ndarray, last_levels: np.ndarray, future: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Residuals (rows, H, T) in sensor units, and the observed next values (rows, T), where the future is known."""
    forecast = Scaler.from_manifest(manifest).forecast_units(output, last_levels)
    residual = future - forecast
    usable = ~np.isnan(residual).any(axis=(1, 2))
    return residual[usable], future[usable, 0, :]


def _compare_on_task(
    manifest: Manifest, actual: np.ndarray, reference: np.ndarray, last_levels: np.ndarray, future: np.ndarray
) -> TaskParity:
    float_residual, observed = _one_step_residuals(manifest, reference, last_levels, future)
    residual, _ = _one_step_residuals(manifest, actual, last_levels, future)
    float_flags = anomaly_decisions(manifest, float_residual[:, 0, :], observed)
    flags = anomaly_decisions(manifest, residual[:, 0, :], observed)
    float_mae = float(np.mean(np.abs(float_residual)))
    mae = float(np.mean(np.abs(residual)))
    return TaskParity(mae, float_mae, mae / float_mae, float(np.mean(flags == float_flags)), len(residual))


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """(rows, outputs) -> class index: a single sigmoid output is P(class 1)."""
    if probabilities.shape[-1] == 1:
        return (probabilities[:, 0] >= 0.5).astype(int)
    return np.argmax(probabilities, axis=-1)


def _class_agreement(actual: np.ndarray, reference: np.ndarray) -> TaskParity:
    agreement = float(np.mean(predicted_classes(actual) == predicted_classes(reference)))
    return TaskParity(None, None, None, agreement, len(actual))


def _task_parity(bundle: Bundle, backend: StepBackend, golden: dict[str, np.ndarray]) -> TaskParity:
    manifest = bundle.manifest
    actual = stream(backend, golden["task_inputs"])[manifest.step_output][0]
    if manifest.task == "classify":
        rows = slice(manifest.warmup_steps, None)
        return _class_agreement(actual[rows], golden["task_forecast"][0][rows])
    rows = slice(manifest.warmup_steps, None)  # forecasts start after the warm-up, as on a device
    levels = golden.get("task_levels", golden["task_inputs"])[0]  # scaled sample values, before differencing
    return _compare_on_task(
        manifest, actual[rows], golden["task_forecast"][0][rows], levels[rows], golden["task_future"][0][rows]
    )


def check_artifact(bundle: Bundle, artifact: Artifact, golden: dict[str, np.ndarray]) -> ArtifactParity:
    runtime = RUNTIME_OF_FORMAT.get(artifact.format, artifact.format)
    check = "elementwise" if artifact.precision == "float32" else "task"
    missing = runtime_missing(artifact.format)
    if (
        check == "task"
        and bundle.manifest.task == "forecast"
        and set(bundle.manifest.anomaly) != set(bundle.manifest.targets)
    ):
        return ArtifactParity(
            artifact, runtime, check, "fail", note="the manifest has no anomaly parameters to judge int8 by"
        )
    if missing:
        return ArtifactParity(artifact, runtime, check, "skipped", note=missing)
    if artifact.kind == "window":
        return _check_window(bundle, artifact, golden, runtime)
    backend = open_step_backend(bundle, artifact)
    actual = stream(backend, golden["inputs"])
    outputs = tuple(compare(name, actual[name], golden[name], FLOAT_TOLERANCE) for name in backend.output_names)
    if check == "elementwise":
        failing = [o for o in outputs if o.first_failing_step is not None]
        if not failing:
            return ArtifactParity(artifact, runtime, check, "pass", outputs)
        first = min(failing, key=lambda o: o.first_failing_step)
        worst = max(failing, key=lambda o: o.max_abs_error)
        note = (
            f"output {first.output} first exceeds {FLOAT_TOLERANCE:g} at step {first.first_failing_step}; "
            f"largest error {worst.max_abs_error:.3g} on {worst.output} at sequence {worst.worst_sequence} "
            f"step {worst.worst_step}"
        )
        return ArtifactParity(artifact, runtime, check, "fail", outputs, note=note)
    return _judge_task(artifact, runtime, outputs, _task_parity(bundle, backend, golden))


def _run_window(bundle: Bundle, artifact: Artifact, windows: np.ndarray) -> np.ndarray:
    """Forecast after the last row of each (window, F) input, one window per call (batch 1)."""
    path = str(bundle.file(artifact.file))
    outputs = []
    if artifact.format == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for window in windows:
            outputs.append(session.run(None, {name: window[None]})[0][0])
    else:
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=path, num_threads=1).get_signature_runner()
        (input_name,) = runner.get_input_details()
        for window in windows:
            outputs.append(next(iter(runner(**{input_name: window[None]}).values()))[0])
    return np.stack(outputs)


def _check_window(bundle: Bundle, artifact: Artifact, golden: dict[str, np.ndarray], runtime: str) -> ArtifactParity:
    """Window models recompute from zero state over each golden window; compare with Keras on every window."""
    actual = _run_window(bundle, artifact, golden["window_inputs"])
    expected = golden["window_forecast"]
    output = bundle.manifest.step_output
    error = np.abs(actual.astype(np.float64) - expected).max(axis=-1)
    worst = int(np.argmax(error))
    over = np.flatnonzero(error > FLOAT_TOLERANCE)
    result = OutputParity(
        output, float(error[worst]), worst, bundle.manifest.window - 1, int(over[0]) if over.size else None
    )
    if artifact.precision == "float32":
        if result.first_failing_step is None:
            return ArtifactParity(artifact, runtime, "elementwise", "pass", (result,))
        note = f"output {output} differs by {result.max_abs_error:.3g} on window {worst} (first: window {over[0]})"
        return ArtifactParity(artifact, runtime, "elementwise", "fail", (result,), note=note)
    if bundle.manifest.task == "classify":
        return _judge_task(artifact, runtime, (result,), _class_agreement(actual, expected))
    last_levels = golden.get("window_levels", golden["window_inputs"][:, -1, :])
    task = _compare_on_task(bundle.manifest, actual, expected, last_levels, golden["window_future"])
    return _judge_task(artifact, runtime, (result,), task)


def _judge_task(
    artifact: Artifact, runtime: str, outputs: tuple[OutputParity, ...], task: TaskParity
) -> ArtifactParity:
    problems = []
    if task.mae_ratio is not None and task.mae_ratio > INT8_MAE_RATIO:
        problems.append(f"forecast MAE {task.forecast_mae:.4g} is {100 * (task.mae_ratio - 1):.1f}% above float")
    if task.decision_agreement < INT8_DECISION_AGREEMENT:
        problems.append(f"decisions agree with float on only {100 * task.decision_agreement:.2f}% of rows")
    return ArtifactParity(artifact, runtime, "task", "fail" if problems else "pass", outputs, task, "; ".join(problems))


def check_bundle(bundle: Bundle) -> ParityReport:
    golden = bundle.golden()
    results = tuple(check_artifact(bundle, artifact, golden) for artifact in bundle.manifest.artifacts)
    return ParityReport(bundle.digest, results)
