"""How good are a teacher's pseudo-labels on simulated target data, by teacher input denoiser?

Vox-UDA's central claim is that denoising the teacher's input (with its improved bilateral filter, IBF) gives
better pseudo-labels. This benchmark measures that claim in isolation: it trains a source-only U-Net briefly
on the labelled source of a simulated benchmark (the teacher a mean teacher starts from), then labels the
target training volumes with the teacher fed raw, Gaussian-smoothed, classic-bilateral and IBF input, and
scores the pseudo-labels against the hidden target labels (labels are used for scoring only).

Reported per input: foreground Dice of the argmax labels, the fraction of voxels the confidence threshold
keeps, and the foreground Dice restricted to the kept voxels.

    python benchmarks/bench_pseudo_labels.py --preset quick --steps 300
    python benchmarks/bench_pseudo_labels.py --preset tiny --steps 60        # seconds, for a smoke check

Denoisers are built from the registry with their own defaults unless ``--set name.key=value`` is given.
Report what it prints; do not tune the settings towards the paper's numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quick", help="simulator preset (tiny, quick, ...)")
    p.add_argument("--root", default="", help="dataset folder (default: data_cache/<preset>); simulated "
                   "there if it holds no manifest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=300, help="source-only training steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--widths", default="8,16,32,64", help="U-Net widths")
    p.add_argument("--target-domains", default="insitu_ribosome,dense_cell,purified_thin_ice",
                   help="comma-separated target domains of the manifest, each scored separately")
    p.add_argument("--threshold", type=float, default=0.85, help="confidence threshold (vox_uda default)")
    p.add_argument("--denoisers", default="identity,gaussian,bilateral,improved_bilateral")
    p.add_argument("--set", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="denoiser parameter, e.g. improved_bilateral.sigma_range=2.0 (TOML value)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-target", type=int, default=0, help="score at most N target volumes (0: all)")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    return p.parse_args(argv)


def foreground_dice(pred: Tensor, label: Tensor, mask: Tensor | None = None) -> float:
    """Dice of class 1 (macromolecule) over all voxels of the set (or the voxels in ``mask``)."""
    p, t = pred == 1, label == 1
    if mask is not None:
        p, t = p & mask, t & mask
    inter = (p & t).sum().item()
    total = p.sum().item() + t.sum().item()
    return 2.0 * inter / total if total else float("nan")


def train_source_only(data: Any, args: argparse.Namespace) -> torch.nn.Module:
    from voxuda.api import build_method
    from voxuda.methods.base import SourceBatch, TargetBatch

    widths = [int(w) for w in args.widths.split(",")]
    method = build_method({"name": "source_only", "backbone": {"name": "unet3d", "widths": widths}})
    optimiser = torch.optim.Adam(list(method.trainable_parameters()), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    source = data.source_train
    empty_target = TargetBatch(source.volumes[:1])
    method.train()
    for step in range(args.steps):
        index = torch.randint(0, len(source), (args.batch_size,), generator=g)
        batch = SourceBatch(source.volumes[index], source.labels[index])
        out = method.training_step(batch, empty_target, step)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        method.on_after_optimizer_step(step)
        if step % 50 == 0 or step == args.steps - 1:
            print(f"  step {step:4d}  seg loss {out.loss.item():.3f}", flush=True)
    return method.predictor().eval()


def denoiser_refs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from voxuda.config import parse_value

    refs: dict[str, dict[str, Any]] = {name: {"name": name} for name in args.denoisers.split(",") if name}
    for item in args.set:
        key, _, raw = item.partition("=")
        name, _, param = key.partition(".")
        if name not in refs or not param:
            raise SystemExit(f"--set {item!r}: expected NAME.KEY=VALUE with NAME in --denoisers")
        refs[name][param] = parse_value(raw)
    return refs


@torch.no_grad()
def score(model: torch.nn.Module, denoiser: Any, volumes: Tensor, labels: Tensor, threshold: float,
          batch: int = 16) -> dict[str, float]:
    preds, keeps = [], []
    for i in range(0, volumes.shape[0], batch):
        probs = model(denoiser(volumes[i:i + batch])).softmax(dim=1)
        confidence, pred = probs.max(dim=1)
        preds.append(pred)
        keeps.append(confidence >= threshold)
    pred, keep = torch.cat(preds), torch.cat(keeps)
    return {"dice": foreground_dice(pred, labels), "keep_fraction": float(keep.float().mean()),
            "dice_kept": foreground_dice(pred, labels, keep)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from voxuda.api import build_component, resolved_config
    from voxuda.engine.data import ensure_dataset, load_domain, load_run_data
    from voxuda.engine.run_config import DataConfig

    root = args.root or f"data_cache/{args.preset}"
    domains = [d for d in args.target_domains.split(",") if d]
    t0 = time.perf_counter()
    data_cfg = DataConfig(root=root, preset=args.preset, target_domain=domains[0])
    data = load_run_data(data_cfg, args.seed)
    print(f"data {root}: {len(data.source_train)} source volumes ({time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    model = train_source_only(data, args)
    print(f"source-only teacher trained for {args.steps} steps ({time.perf_counter() - t0:.1f} s)")

    refs = denoiser_refs(args)
    denoisers = {name: build_component("denoiser", ref) for name, ref in refs.items()}
    results = []
    for domain in domains:
        target = load_domain(data_cfg, ensure_dataset(data_cfg, args.seed), domain, data_cfg.train_split,
                             with_labels=True)
        if target.labels is None:
            raise SystemExit(f"{root}: target domain {domain!r} has no labels to score against")
        volumes, labels = target.volumes, target.labels
        if args.max_target:
            volumes, labels = volumes[:args.max_target], labels[:args.max_target]
        print(f"\n{domain}: pseudo-labels of {volumes.shape[0]} target volumes (threshold {args.threshold})")
        print(f"{'teacher input':<20} {'Dice':>7} {'kept':>7} {'Dice(kept)':>11}")
        for name, denoiser in denoisers.items():
            t0 = time.perf_counter()
            row = score(model, denoiser, volumes, labels, args.threshold)
            row.update(domain=domain, denoiser=name, config=resolved_config("denoiser", refs[name]),
                       seconds=time.perf_counter() - t0)
            results.append(row)
            print(f"{name:<20} {row['dice']:7.3f} {row['keep_fraction']:7.3f} {row['dice_kept']:11.3f}",
                  flush=True)
    if args.json:
        payload = {"args": vars(args), "results": results}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
