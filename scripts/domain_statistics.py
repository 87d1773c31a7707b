"""Per-domain statistics of a simulated benchmark folder: where each domain's noise lives and how strong its
particles are, in the units the networks see (z-scored volumes).

Why: NGM (Vox-UDA's noise generation module) measures a domain's noise as the variance left after zeroing a
low-frequency box of the spectrum. That is a noise level only if the noise lives at high frequencies. This
script prints, for each domain of a dataset written by ``voxuda simulate``:

- ``hp_var``: the NGM estimate (``voxuda.noise.ngm.estimate_noise_variance``, default box) per volume, mean;
- ``hp_share``: ``hp_var`` over the volume's variance (1 for z-scored input): the share of the variance NGM
  sees at all;
- ``fg``: foreground fraction of the labels; ``contrast``: mean foreground minus mean background voxel value,
  in units of the volume's standard deviation (a label-based measure: what a model must detect);
- ``skewness``: of the voxel values, mean over volumes (label-free; sparse particles of one sign skew it;
  ``voxuda.noise.skew_matched.mean_skewness``, the estimate the ``skew_matched`` noise model uses).

    python scripts/domain_statistics.py /work/results/data/appearance --limit 40 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's voxuda

from voxuda.data.datasets import load_split  # noqa: E402
from voxuda.noise.ngm import NGMConfig, NoiseGenerationModule, estimate_noise_variance  # noqa: E402
from voxuda.noise.skew_matched import mean_skewness  # noqa: E402


def domain_statistics(volumes: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The statistics above for ``(N, 1, D, H, W)`` z-scored volumes and their ``(N, D, H, W)`` labels."""
    flat = volumes.float().reshape(-1, *volumes.shape[-3:])
    sides = NoiseGenerationModule(NGMConfig()).box_sides(tuple(flat.shape[-3:]))
    hp = estimate_noise_variance(flat[:, None], sides, "mean_variance", compensate=False)
    var = flat.var(dim=(-3, -2, -1), unbiased=False)
    fg = labels.reshape(flat.shape) > 0
    n_fg = fg.sum(dim=(-3, -2, -1)).clamp_min(1)
    n_bg = (~fg).sum(dim=(-3, -2, -1)).clamp_min(1)
    contrast = ((flat * fg).sum(dim=(-3, -2, -1)) / n_fg - (flat * ~fg).sum(dim=(-3, -2, -1)) / n_bg)
    return {
        "volumes": int(flat.shape[0]),
        "variance": float(var.mean()),
        "hp_var": hp.mean_sample_sigma2,
        "hp_share": float((torch.tensor(hp.per_sample_sigma2) / var).mean()),
        "fg": float(fg.float().mean()),
        "contrast": float((contrast / var.sqrt()).mean()),
        "skewness": mean_skewness(flat),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a dataset folder written by voxuda simulate")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=40, help="volumes per domain")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args(argv)
    import csv

    if not (args.root / "manifest.csv").is_file():
        parser.error(f"{args.root}: no manifest.csv; give a dataset folder written by voxuda simulate")

    with open(args.root / "manifest.csv", newline="", encoding="utf-8") as handle:
        domains = list(dict.fromkeys(row["domain"] for row in csv.DictReader(handle)))
    rows: dict[str, Any] = {}
    for domain in domains:
        volumes, labels, _ = load_split(args.root, domain, args.split, canonical_polarity=None,
                                        limit=args.limit)
        if labels is None or len(volumes) == 0:
            continue
        rows[domain] = domain_statistics(volumes, labels)
    keys = ("volumes", "variance", "hp_var", "hp_share", "fg", "contrast", "skewness")
    print("| domain | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for domain, stats in rows.items():
        cells = [f"{stats[k]:d}" if k == "volumes" else f"{stats[k]:.4g}" for k in keys]
        print(f"| {domain} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "split": args.split,
                                         "domains": rows}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
