"""ETTh1 univariate (target OT) for docs/BENCHMARKS.md: `rnnedge eval etth1` (trainer/evaluation/etth1.py, the one
implementation of the protocol) at its defaults, plus an ablation that feeds OT's level instead of its changes.

Protocol (../shared/data/README.md): train rows [0, 8640), validation [8640, 11520), test [11520, 14400); z-score
fitted on the training rows; MSE and MAE on standardised values over all stride-1 test windows. Each horizon
trains one model per seed and keeps the one with the lowest validation error, as a user would; the spread over
seeds is reported too. Persistence and a least-squares linear model on the same windows are the baselines.

    .venv/bin/python benchmarks/etth1.py [--data DIR] [--horizons 24 96] [--units 16] [--seeds 0 1 2] [--no-ablation]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, data_dir, machine  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainer.evaluation.etth1 import Etth1Settings, run_etth1, summary_markdown  # noqa: E402


def ablation_markdown(run: dict) -> str:
    pair = "{mse:.4f} / {mae:.4f}"
    return (
        f"\nAblation, the same model and seed {run['seed']} reading OT's *level* instead of its changes "
        f"(H={run['horizon']}): protocol {pair.format(**run['protocol'])}, device {pair.format(**run['device'])}.\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=data_dir(), help="shared data directory (holds ett/)")
    parser.add_argument("--horizons", type=int, nargs="+", default=[24, 96])
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-ablation", action="store_true", help="skip the level-input run at the last horizon")
    parser.add_argument("--out", type=Path, default=RESULTS / "etth1.json")
    args = parser.parse_args()
    source = args.data / "ett" / "ETTh1.csv"
    if not source.is_file():
        print(f"etth1: no ETTh1 under {source.parent} (set RNNEDGE_DATA or --data)", file=sys.stderr)
        return 2
    settings = replace(
        Etth1Settings(), horizons=tuple(args.horizons), units=args.units, epochs=args.epochs, seeds=tuple(args.seeds)
    )
    with tempfile.TemporaryDirectory(prefix="rnnedge-bench-etth1-") as scratch:
        summary = run_etth1(source, Path(scratch) / "product", settings, progress=True)
        ablation = None
        if not args.no_ablation:
            levels = replace(settings, horizons=settings.horizons[-1:], seeds=settings.seeds[:1], difference=False)
            ablation = run_etth1(source, Path(scratch) / "levels", levels)["horizons"][0]["chosen_by_validation"]
    report = {**summary, "ablation_level_input": ablation, "machine": machine()}
    markdown = summary_markdown(summary) + (ablation_markdown(ablation) if ablation else "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
