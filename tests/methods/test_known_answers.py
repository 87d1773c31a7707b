"""Known-answer tests: on a synthetic noise-level shift, where the answer is known (the target holds the same
kind of scenes as the source, only noisier), self-training must beat source-only *continuation* from the same
warm start, and the warm start itself, by stated Dice margins.

Protocol (the method API, as the trainer drives it): spheres on white noise at 16^3
(:func:`voxuda.testing.sphere_split`), source noise std 0.3, target 1.2 (both z-scored per volume; the same
scene distribution, so the source foreground fraction is the right prior); a U-Net 8-16 with GroupNorm;
warm start = source-only, 120 steps of Adam 3e-3, batch 4; then 80 steps of Adam 1e-3 from the warm start for
each arm; the reported network (``predictor()``, the EMA teacher) is scored on 16 held-out target volumes.
EMA 0.95 (half-life 13.5 steps, a sixth of the 80 steps).

Measured, target Dice (each seed draws its own data, initialisation and batches):

| arm | seed 0 | seed 1 | seed 2 | min gain over continuation | min gain over warm start |
|---|---|---|---|---|---|
| warm start (source-only, 120 steps) | 0.637 | 0.607 | 0.666 | | |
| source-only continued 80 steps | 0.518 | 0.574 | 0.606 | | |
| mean teacher, prior selection | 0.732 | 0.730 | 0.733 | +0.127 | +0.067 |
| mean teacher, class_balanced (0.5) | 0.639 | 0.709 | 0.682 | +0.076 | +0.002 |
| Vox-UDA, prior, Gaussian teacher input | 0.742 | 0.793 | 0.758 | +0.152 | +0.092 |

On seed 0, Vox-UDA with its default IBF teacher input scored 0.663 and with the threshold selection (Gaussian
input) 0.745: on this white-noise shift the teacher's denoiser matters more than the selection mode.
Margins asserted are about half the smallest measured gain. class_balanced does not reliably beat the warm
start (+0.002 on seed 0, +0.016 on seed 2), so only its gain over continuation is asserted. Seed 0 runs in CI;
seeds 1 and 2 run with ``-m slow``.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import torch
from torch import nn

from voxuda.api import build_component
from voxuda.engine.data import DomainSplit, RunData
from voxuda.engine.evaluate import evaluate_predictor
from voxuda.methods.base import Method, SourceBatch, TargetBatch, TrainContext
from voxuda.testing import sphere_split

BACKBONE = {"name": "unet3d", "widths": [8, 16]}
SOURCE_NOISE, TARGET_NOISE = 0.3, 1.2
WARM_STEPS, ADAPT_STEPS, BATCH = 120, 80, 4
EMA = 0.95

MEAN_TEACHER_PRIOR = {"name": "mean_teacher", "ema_momentum": EMA, "pseudo_label_selection": "prior"}
MEAN_TEACHER_BALANCED = {**MEAN_TEACHER_PRIOR, "pseudo_label_selection": "class_balanced"}
VOX_UDA_PRIOR = {
    "name": "vox_uda", "ema_momentum": EMA, "pseudo_label_selection": "prior",
    "teacher_denoiser": "gaussian",  # the default IBF costs about twice the step time (seed 0: 0.663)
    "tap_weights": [0.3, 0.4, 0.3],  # three taps on a two-level U-Net
}


@attrs.frozen
class Shift:
    data: RunData
    test: DomainSplit


def noise_shift(seed: int) -> Shift:
    offset = 10 * seed
    data = RunData(
        source_train=sphere_split(16, 1 + offset, noise=SOURCE_NOISE),
        target_train=sphere_split(16, 2 + offset, noise=TARGET_NOISE),
    )
    return Shift(data, sphere_split(16, 5 + offset, noise=TARGET_NOISE))


def train(method: Method, data: RunData, steps: int, seed: int, lr: float) -> None:
    """What the trainer does, without files: on_train_start, then step / backward / Adam / after-step."""
    generator = torch.Generator().manual_seed(seed)
    n_source, n_target = len(data.source_train), len(data.target_train)

    def sample_target(n: int) -> torch.Tensor:
        return data.target_train.volumes[torch.randint(0, n_target, (n,), generator=generator)]

    method.on_train_start(TrainContext(total_steps=steps, device=torch.device("cpu"), generator=generator,
                                       sample_target=sample_target, extra={"data": data}))
    optimizer = torch.optim.Adam(list(method.trainable_parameters()), lr=lr)
    for step in range(steps):
        s = torch.randint(0, n_source, (BATCH,), generator=generator)
        t = torch.randint(0, n_target, (BATCH,), generator=generator)
        method.train()
        out = method.training_step(
            SourceBatch(data.source_train.volumes[s], data.source_train.labels[s]),
            TargetBatch(data.target_train.volumes[t]), step,
        )
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        method.on_after_optimizer_step(step)


def target_dice(predictor: nn.Module, split: DomainSplit) -> float:
    with torch.no_grad():
        return float(evaluate_predictor(predictor.eval(), split, num_classes=2)["overall"]["dice_fg"])


def from_warm_start(params: dict[str, Any], weights: dict[str, torch.Tensor], seed: int) -> Method:
    """The method with the warm start in its student (and teacher, as the benchmark's warm start does)."""
    torch.manual_seed(seed)
    method = build_component("method", {"backbone": BACKBONE, **params})
    for name, network in method.networks().items():
        network.load_state_dict(weights)
        assert name in ("student", "teacher")
    return method


@attrs.frozen
class Baseline:
    shift: Shift
    weights: dict[str, torch.Tensor]
    warm_dice: float
    continuation_dice: float
    seed: int


def baseline(seed: int) -> Baseline:
    shift = noise_shift(seed)
    torch.manual_seed(seed)
    parent = build_component("method", {"name": "source_only", "backbone": BACKBONE})
    train(parent, shift.data, WARM_STEPS, seed, lr=3e-3)
    weights = {k: v.clone() for k, v in parent.student.state_dict().items()}
    continuation = from_warm_start({"name": "source_only"}, weights, seed)
    train(continuation, shift.data, ADAPT_STEPS, seed + 100, lr=1e-3)
    return Baseline(shift, weights, target_dice(parent.predictor(), shift.test),
                    target_dice(continuation.predictor(), shift.test), seed)


def adapted_dice(params: dict[str, Any], base: Baseline) -> float:
    method = from_warm_start(params, base.weights, base.seed)
    train(method, base.shift.data, ADAPT_STEPS, base.seed + 100, lr=1e-3)
    return target_dice(method.predictor(), base.shift.test)


@pytest.fixture(scope="module")
def seed0() -> Baseline:
    return baseline(0)


CASES = [  # (method, margin over continuation, margin over the warm start or None)
    pytest.param(MEAN_TEACHER_PRIOR, 0.06, 0.035, id="mean_teacher-prior"),
    pytest.param(MEAN_TEACHER_BALANCED, 0.04, None, id="mean_teacher-class_balanced"),
    pytest.param(VOX_UDA_PRIOR, 0.08, 0.05, id="vox_uda-prior"),
]


def check(params: dict[str, Any], over_continuation: float, over_warm: float | None, base: Baseline) -> None:
    dice = adapted_dice(params, base)
    summary = (f"{params['name']} {params['pseudo_label_selection']} seed {base.seed}: {dice:.3f}; "
               f"continuation {base.continuation_dice:.3f}; warm start {base.warm_dice:.3f}")
    assert dice >= base.continuation_dice + over_continuation, summary
    if over_warm is not None:
        assert dice >= base.warm_dice + over_warm, summary


@pytest.mark.parametrize(("params", "over_continuation", "over_warm"), CASES)
def test_self_training_beats_continuation_on_a_noise_shift(params, over_continuation, over_warm, seed0):  # type: ignore[no-untyped-def]
    check(params, over_continuation, over_warm, seed0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(("params", "over_continuation", "over_warm"), CASES)
def test_self_training_margins_hold_on_other_seeds(params, over_continuation, over_warm, seed):  # type: ignore[no-untyped-def]
    check(params, over_continuation, over_warm, baseline(seed))
