"""Selection regret of the model-selection validators on the known-answer toy shifts (CPU, about a minute per
seed and shift on one thread).

Protocol: tests/methods/test_known_answers.py (spheres on noise at 16^3, a source-only warm start, 80
adaptation steps). For each run the candidates are the checkpoints at steps 0 (the warm start), 10, ..., 80;
each validator picks one (label-free ones see only target-train volumes; ``source_val`` sees 8 held-out
source volumes), and its regret is the best candidate's target test Dice minus the picked one's. Target test
labels are used for scoring only.

Shifts: ``white`` = the tests' noise-level shift (target white noise std 1.2, source 0.3); ``correlated`` =
Gaussian-correlated target noise (sigma 1 voxel, std 4.0), on which the warm start over-predicts foreground
(4.5 % against 2.9 % true), as the source model did in the appearance probe.

    python benchmarks/bench_selection_toy.py --seeds 0,1 --shift white
    python benchmarks/bench_selection_toy.py --seeds 0,1 --shift correlated

Report what it prints; these are toy numbers, to pick among validators before measuring on the benchmark.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.methods import test_known_answers as ka  # noqa: E402
from voxuda.api import build_component  # noqa: E402
from voxuda.denoisers.basic import GaussianDenoiser, GaussianDenoiserConfig  # noqa: E402
from voxuda.engine.data import DomainSplit, RunData  # noqa: E402
from voxuda.engine.validators import ValidationContext  # noqa: E402
from voxuda.methods.base import Method, SourceBatch, TargetBatch, TrainContext  # noqa: E402
from voxuda.testing import sphere_split  # noqa: E402

VALIDATORS: dict[str, Any] = {
    "source_val": "source_val",
    "entropy": "entropy",
    "agreement": "agreement",
    "target_prior": "target_prior",
    "target_agreement": "target_agreement",
    "target_combined": "target_combined",
    "target_combined(tol 1)": {"name": "target_combined", "prior_tolerance": 1.0},
}
ARMS: dict[str, dict[str, Any]] = {
    "continuation": {"name": "source_only"},
    "mean_teacher_threshold_0.9": {**ka.MEAN_TEACHER_PRIOR, "pseudo_label_selection": "threshold",
                                   "confidence_threshold": 0.9},
    "mean_teacher_prior": ka.MEAN_TEACHER_PRIOR,
}
EVERY = 10


def correlated_split(n: int, seed: int, *, noise: float, gain: float = 1.0, offset: float = 0.0,
                     size: int = 16) -> DomainSplit:
    """Like :func:`sphere_split`, but a noisy target gets Gaussian-correlated noise (sigma 1 voxel)."""
    if noise <= ka.SOURCE_NOISE:
        return sphere_split(n, seed, noise=noise, size=size)
    clean = sphere_split(n, seed, noise=0.0, size=size)
    generator = torch.Generator().manual_seed(seed + 999)
    blur = GaussianDenoiser(GaussianDenoiserConfig(sigma=1.0))
    z = blur(torch.randn(n, 1, size, size, size, generator=generator))
    v = clean.volumes + noise * z / z.std(dim=(1, 2, 3, 4), keepdim=True)
    v = (v - v.mean(dim=(1, 2, 3, 4), keepdim=True)) / v.std(dim=(1, 2, 3, 4), keepdim=True)
    return DomainSplit(v, clean.labels, clean.meta)


def train_keeping(method: Method, data: RunData, seed: int) -> dict[int, torch.nn.Module]:
    """:func:`ka.train` with a copy of the predictor every ``EVERY`` steps (step 0 = the warm start)."""
    kept = {0: copy.deepcopy(method.predictor()).eval()}
    generator = torch.Generator().manual_seed(seed)

    def sample_target(n: int) -> torch.Tensor:
        return data.target_train.volumes[torch.randint(0, len(data.target_train), (n,), generator=generator)]

    method.on_train_start(TrainContext(
        total_steps=ka.ADAPT_STEPS, device=torch.device("cpu"), generator=generator,
        sample_target=sample_target, extra={"data": data},
    ))
    optimizer = torch.optim.Adam(list(method.trainable_parameters()), lr=1e-3)
    for step in range(ka.ADAPT_STEPS):
        s = torch.randint(0, len(data.source_train), (ka.BATCH,), generator=generator)
        t = torch.randint(0, len(data.target_train), (ka.BATCH,), generator=generator)
        method.train()
        out = method.training_step(SourceBatch(data.source_train.volumes[s], data.source_train.labels[s]),
                                   TargetBatch(data.target_train.volumes[t]), step)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        method.on_after_optimizer_step(step)
        if (step + 1) % EVERY == 0:
            kept[step + 1] = copy.deepcopy(method.predictor()).eval()
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--shift", choices=("white", "correlated"), default="white")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.shift == "correlated":
        ka.sphere_split = correlated_split  # the protocol's data, with the other noise
        ka.TARGET_NOISE = 4.0
    validators = {name: build_component("validator", ref) for name, ref in VALIDATORS.items()}
    totals = dict.fromkeys(validators, 0.0)
    runs = 0
    for seed in (int(s) for s in args.seeds.split(",")):
        base = ka.baseline(seed)
        data = RunData(source_train=base.shift.data.source_train, target_train=base.shift.data.target_train,
                       source_val=sphere_split(8, 3 + 10 * seed, noise=ka.SOURCE_NOISE))
        context = ValidationContext(data=data, num_classes=2, batch_size=4)
        for arm, params in ARMS.items():
            kept = train_keeping(ka.from_warm_start(params, base.weights, seed), base.shift.data, seed + 100)
            truth = {step: ka.target_dice(p, base.shift.test) for step, p in kept.items()}
            best = max(truth.values())
            curve = " ".join(f"{k}:{v:.3f}" for k, v in truth.items())
            print(f"seed {seed} {arm}: target Dice by step {curve}")
            picks = []
            with torch.no_grad():
                for name, validator in validators.items():
                    scores = {step: validator.score(p, context) for step, p in kept.items()}
                    choice = max(scores, key=lambda k: (scores[k], -k))  # the trainer keeps the first best
                    totals[name] += best - truth[choice]
                    picks.append(f"{name} {best - truth[choice]:.3f}@{choice}")
            print("    regret@step: " + ", ".join(picks), flush=True)
            runs += 1
    print(f"total regret over {runs} runs: " + ", ".join(f"{k} {v:.3f}" for k, v in totals.items()))


if __name__ == "__main__":
    main()
