"""How a trained run's foreground decision fits each domain: predicted against true foreground fraction, and
Dice when the foreground threshold on ``p_fg = 1 - p(background)`` is lowered or raised.

Why: the content track's crowded targets hold several times the source's foreground, and a model that keeps
the source's occupancy under-segments them whatever its features; this shows it directly, and how much a
decision that follows the right occupancy (``evaluation.fg_prior``, ``voxuda/engine/decision.py``) could
recover. It READS TARGET LABELS: a diagnostic for the benchmark, never a way to choose a setting.

    python scripts/foreground_calibration.py RUN_FOLDER [--checkpoint best.pt] [--limit 48]

RUN_FOLDER is a trained run (``config.toml`` + checkpoint); its data are loaded and aligned as the run's
config says (source val and target train splits, the first ``--limit`` volumes of each).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's voxuda

from voxuda.engine.data import DomainSplit, load_run_data  # noqa: E402
from voxuda.engine.inference import iter_probabilities  # noqa: E402
from voxuda.engine.run_config import load_run_config  # noqa: E402
from voxuda.methods.pseudo_labels import foreground_probability  # noqa: E402
from voxuda.segment.model import load_model  # noqa: E402

THRESHOLDS = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02)


def calibration_row(predictor: torch.nn.Module, split: DomainSplit, limit: int) -> dict[str, float]:
    """True, argmax and soft foreground fractions and Dice at each threshold of :data:`THRESHOLDS`."""
    if split.labels is None:
        raise SystemExit("the split has no labels")
    volumes, truth = split.volumes[:limit], split.labels[:limit] > 0
    p_fg = torch.cat([foreground_probability(probs) for _, probs in
                      iter_probabilities(predictor, volumes, batch_size=8)])
    row = {"true": float(truth.float().mean()), "soft": float(p_fg.mean())}
    for t in THRESHOLDS:
        called = p_fg > t
        overlap = float((called & truth).sum())
        row[f"frac@{t}"] = float(called.float().mean())
        row[f"dice@{t}"] = 2 * overlap / max(float(called.sum() + truth.sum()), 1.0)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a trained run folder")
    parser.add_argument("--checkpoint", default="best.pt", help="checkpoint file in the run folder")
    parser.add_argument("--limit", type=int, default=48, help="volumes per split")
    args = parser.parse_args(argv)
    if not (args.run / "config.toml").is_file():
        parser.error(f"{args.run}: no config.toml; give a trained run folder")
    config = load_run_config(args.run / "config.toml")
    torch.set_num_threads(config.trainer.num_threads)
    data = load_run_data(config.data, config.seed)
    predictor = load_model(args.run / args.checkpoint).predictor
    columns = ["true", "soft"] + [f"frac@{t}" for t in THRESHOLDS] + [f"dice@{t}" for t in THRESHOLDS]
    print("| split | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, split in (("source val", data.source_val), ("target train", data.target_train)):
        if split is None:
            continue
        row = calibration_row(predictor, split, args.limit)
        print(f"| {name} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |")
    return 0


if __name__ == "__main__":
    from voxuda.cli import script_main

    raise SystemExit(script_main("foreground_calibration", main))  # one-line user errors
