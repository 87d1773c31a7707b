"""What ``evaluation.select_start`` would have changed on finished benchmark suites, without retraining.

``select_start`` makes an adaptation run's warm start (its weights at step 0) one more checkpoint
candidate, so that a run whose adaptation lowers its validator's score falls back to the parent. Whether
that helps is a measurement: the validator may prefer the warm start where adaptation did help. For every
trained, warm-started run of the given suite folders whose checkpoint a label-free validator chose, this
scores the run's ``init.pt`` (the method's weights at step 0) with the run's own validator on the run's own
(aligned) data, as the trainer would have at step 0, and compares it with the best score the run logged
(``metrics.jsonl`` validation events). Where the warm start would have won, it evaluates ``init.pt`` on the
test split (reported network, identity input) exactly as the benchmark evaluates a checkpoint. Per row it
prints how many runs would fall back and the change in test Dice (0 for a run that would not), with a paired
95 % t interval over seeds; and, as a check that the offline scores are the trainer's, the largest
difference between the offline score of ``best.pt`` and the score the run logged for it.

    python scripts/select_start_regret.py --from ../results/long [--from ...] [--label L ...]

Reads target test labels only to report what the fallback would have scored, as the benchmark does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's voxuda

from voxuda.bench.executor import BenchEngine  # noqa: E402
from voxuda.bench.report import load_results  # noqa: E402
from voxuda.bench.results import EvalRecord  # noqa: E402
from voxuda.bench.stats import paired_t_interval  # noqa: E402
from voxuda.config import ComponentRef  # noqa: E402
from voxuda.engine.run_config import run_config_from_dict  # noqa: E402
from voxuda.jsonio import read_json  # noqa: E402


def data_key(config: Mapping[str, Any]) -> str:
    """Runs are visited grouped by their ``[data]`` section, so the engine loads each data set once."""
    return json.dumps(attrs.asdict(run_config_from_dict(dict(config)).data), sort_keys=True, default=str)


def logged_best(run_dir: Path) -> tuple[float, int]:
    """The best validator score the run logged and its step."""
    best: tuple[float, int] | None = None
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("event") == "validation" and (best is None or row["score"] > best[0]):
            best = (float(row["score"]), int(row["step"]))
    if best is None:
        raise SystemExit(f"{run_dir}: no validation events in metrics.jsonl")
    return best


def candidate_runs(folders: list[Path], labels: set[str]) -> list[tuple[Path, EvalRecord, Mapping[str, Any]]]:
    """Trained, warm-started runs chosen by a label-free validator (their selected, reported record and
    config), once per run id (suites share runs by copying them), grouped by their data."""
    found: dict[str, tuple[Path, EvalRecord, Mapping[str, Any]]] = {}
    for folder in folders:
        for r in load_results(folder).records:
            if (r.checkpoint == "selected" and r.reported and r.mode == "train" and r.init_from is not None
                    and not r.leaky_selection and r.selection != "last" and r.input_denoiser == "identity"
                    and (not labels or r.label in labels) and r.run_id not in found):
                run_dir = folder / "runs" / r.target / r.label / f"seed{r.seed}"
                found[r.run_id] = (run_dir, r, read_json(run_dir / "bench.json")["config"])
    return sorted(found.values(), key=lambda item: (data_key(item[2]), item[1].run_id))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="folders", action="append", type=Path, required=True,
                        help="a finished suite output folder (repeatable)")
    parser.add_argument("--label", action="append", default=[], help="only these run labels (repeatable)")
    parser.add_argument("--check", type=int, default=5,
                        help="re-score best.pt of this many runs to check the offline scores (default 5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    engine = BenchEngine()
    rows: dict[tuple[str, str], dict[int, tuple[float, float, bool]]] = {}
    check = 0.0
    checked = 0
    for run_dir, record, config in candidate_runs(args.folders, set(args.label)):
        if not (run_dir / "init.pt").is_file():
            print(f"skipped {run_dir}: no init.pt (a run of older voxuda)", file=sys.stderr)
            continue
        best_score, best_step = logged_best(run_dir)
        if checked < args.check:
            check = max(check, abs(engine.validator_score(config, run_dir / "best.pt") - best_score))
            checked += 1
        start = engine.validator_score(config, run_dir / "init.pt")
        falls_back = start > best_score
        dice = (engine.evaluate(config, run_dir, run_dir / "init.pt", ComponentRef("identity")).dice
                if falls_back else record.dice)
        rows.setdefault((record.target, record.label), {})[record.seed] = (record.dice, dice, falls_back)
        fallback = f"  -> falls back: test Dice {record.dice:.3f} -> {dice:.3f}" if falls_back else ""
        print(f"{record.run_id}: validator at step 0 {start:+.4f}, best {best_score:+.4f} (step {best_step})"
              f"{fallback}", file=sys.stderr)
    print("| target | row | runs falling back | test Dice as selected | with select_start "
          "| change (95 % CI) |")
    print("|---|---|---|---|---|---|")
    for (target, label), seeds in sorted(rows.items()):
        before = [v[0] for v in seeds.values()]
        after = [v[1] for v in seeds.values()]
        interval = paired_t_interval([a - b for a, b in zip(after, before)])
        change = "-" if interval is None else interval.text()
        print(f"| `{target}` | `{label}` | {sum(v[2] for v in seeds.values())} of {len(seeds)} | "
              f"{sum(before) / len(before):.3f} | {sum(after) / len(after):.3f} | {change} |")
    print(f"\nlargest |offline - logged| validator score of best.pt over {checked} runs: {check:.2e}")
    return 0


if __name__ == "__main__":
    from voxuda.cli import script_main

    raise SystemExit(script_main("select_start_regret", main))  # one-line user errors
