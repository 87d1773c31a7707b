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

With ``--noise-check`` it also prints, for each target domain, what the ``skew_matched`` noise model does
to the source in each ``colour`` and ``spectrum`` (both domains detrended first, as ``[data] alignment =
"detrend"`` does): the added variance ``v``, the noisy source's skewness beside the target's, the noisy
source's mean power over the target's in three frequency bands (a ratio of 1 is the target's spectrum), and
``empty``: the share of the power between 0.05 and 0.45 cycles/voxel that lies at the frequencies where the
target has under a fifth of its radial shell's mean power (a missing wedge), for the noisy source and
(``target_empty``) for the target itself; ``empty_freqs`` is the share of those frequencies.

    python scripts/domain_statistics.py DATA/appearance --limit 40 [--noise-check] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's voxuda

from voxuda.align import build_aligner  # noqa: E402
from voxuda.data.datasets import load_split  # noqa: E402
from voxuda.noise.fourier import radial_frequency, radial_power  # noqa: E402
from voxuda.noise.ngm import NGMConfig, NoiseGenerationModule, estimate_noise_variance  # noqa: E402
from voxuda.noise.skew_matched import SkewMatchedNoise, SkewMatchedNoiseConfig, mean_skewness  # noqa: E402

#: frequency bands of the noise check, cycles per voxel
BANDS = {"low (<0.1)": (0.0, 0.1), "mid (0.1-0.3)": (0.1, 0.3), "high (>0.3)": (0.3, 1.0)}


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


def _power_grid(volumes: torch.Tensor) -> torch.Tensor:
    """Mean power at every frequency of mean-removed volumes ``(N, 1, D, H, W)``."""
    flat = volumes.float().reshape(-1, *volumes.shape[-3:])
    flat = flat - flat.mean(dim=(-3, -2, -1), keepdim=True)
    return (torch.fft.fftn(flat, dim=(-3, -2, -1)).abs() ** 2).mean(dim=0)


def empty_frequencies(power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(band, empty): the frequencies between 0.05 and 0.45 cycles/voxel, and those of them where ``power``
    is under a fifth of its radial shell's mean (shells ``1 / max(D, H, W)`` wide)."""
    radius = radial_frequency(power.shape)
    shell = torch.round(radius * max(power.shape)).long().flatten()
    sums = torch.zeros(int(shell.max()) + 1).index_add_(0, shell, power.flatten())
    counts = torch.zeros(int(shell.max()) + 1).index_add_(0, shell, torch.ones(shell.numel()))
    relative = power / (sums / counts.clamp_min(1))[shell].reshape(power.shape).clamp_min(1e-30)
    band = (radius > 0.05) & (radius < 0.45)
    return band, band & (relative < 0.2)


def noise_check(source: torch.Tensor, target: torch.Tensor, seed: int = 0) -> dict[str, dict[str, float]]:
    """``skew_matched`` in each colour and spectrum on detrended ``source`` and ``target`` volumes
    ``(N, 1, D, H, W)``: ``v``, skewness before and after, the noisy source's band power over the target's and
    the share of its power at the target's empty frequencies."""
    detrend = build_aligner("detrend")  # what `[data] alignment = "detrend"` applies to both domains
    source, target = detrend(source.float(), "source"), detrend(target.float(), "target")
    radii, target_power = radial_power(target)
    target_grid = _power_grid(target)
    band, empty = empty_frequencies(target_grid)
    out: dict[str, dict[str, float]] = {}
    for spectrum in ("radial", "full"):
        for colour in ("source", "target"):
            model = SkewMatchedNoise(SkewMatchedNoiseConfig(n_samples=len(target), colour=colour,
                                                            spectrum=spectrum))
            model.fit(target)
            model.measure_source(source)
            noisy = model(source, torch.Generator().manual_seed(seed))
            noisy_power = radial_power(noisy)[1]
            noisy_grid = _power_grid(noisy)
            assert model.source_skewness is not None and model.target_skewness is not None
            row = {"v": model.variance, "source_skewness": model.source_skewness,
                   "noisy_skewness": mean_skewness(noisy), "target_skewness": model.target_skewness}
            for name, (lo, hi) in BANDS.items():
                keep = (radii > lo) & (radii <= hi)
                row[name] = float(noisy_power[keep].sum() / target_power[keep].sum().clamp_min(1e-30))
            row["empty"] = float(noisy_grid[empty].sum() / noisy_grid[band].sum())
            row["target_empty"] = float(target_grid[empty].sum() / target_grid[band].sum())
            row["empty_freqs"] = float(empty.sum() / band.sum())
            out[f"{colour}, {spectrum}"] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a dataset folder written by voxuda simulate")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=40, help="volumes per domain")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    parser.add_argument("--noise-check", action="store_true",
                        help="also show what skew_matched noise in each colour does to the source")
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
    checks: dict[str, Any] = {}
    if args.noise_check and "source" in domains:
        source, _, _ = load_split(args.root, "source", args.split, canonical_polarity=None, limit=args.limit)
        ckeys = ("v", "source_skewness", "noisy_skewness", "target_skewness", *BANDS, "empty",
                 "target_empty", "empty_freqs")
        print("\nskew_matched noise on the detrended source (noisy source / target power per band)\n")
        print("| target | colour, spectrum | " + " | ".join(ckeys) + " |")
        print("|---" * (len(ckeys) + 2) + "|")
        for domain in (d for d in domains if d != "source"):
            target, _, _ = load_split(args.root, domain, args.split, canonical_polarity=None,
                                      limit=args.limit, with_labels=False)
            checks[domain] = noise_check(source, target)
            for colour, row in checks[domain].items():
                print(f"| {domain} | {colour} | " + " | ".join(f"{row[k]:.4g}" for k in ckeys) + " |")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "split": args.split,
                                         "domains": rows, "noise_check": checks}, indent=1) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    from voxuda.cli import script_main

    raise SystemExit(script_main("domain_statistics", main))  # one-line user errors
