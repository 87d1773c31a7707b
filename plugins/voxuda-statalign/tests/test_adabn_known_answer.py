"""Known answer for AdaBN: a gain/offset shift of the input is undone by re-estimating BatchNorm statistics.

With a BatchNorm backbone, ``gain * x + offset`` only scales and shifts each first-layer channel before its
BatchNorm (exactly, away from the zero-padded border), so target statistics recover the source accuracy while
the source statistics do not. Data: spheres on white noise at 16^3 (:func:`voxuda.testing.sphere_split`),
noise std 0.3, z-scored; target = 2.5 x + 1.5. U-Net 8-16 with BatchNorm, 100 steps of Adam 3e-3, batch 4.
"Source-only" is the same trained network predicting with its source running statistics: AdaBN's training
*is* source-only training, so this is the paired comparison.

Measured, target Dice (source-only / AdaBN / source-only on the source domain):
seed 0: 0.202 / 0.968 / 0.968; seed 1: 0.097 / 0.976 / 0.979; seed 2: 0.223 / 0.971 / 0.973.
Asserted: AdaBN beats source-only by at least 0.5 and comes within 0.03 of the source-domain Dice.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from voxuda.api import build_component  # noqa: E402
from voxuda.backbones.blocks import LogitsOnly  # noqa: E402
from voxuda.engine.evaluate import evaluate_predictor  # noqa: E402
from voxuda.methods.base import SourceBatch, TargetBatch, TrainContext  # noqa: E402
from voxuda.testing import sphere_split  # noqa: E402

GAIN, OFFSET, STEPS = 2.5, 1.5, 100


def dice(predictor, split) -> float:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return float(evaluate_predictor(predictor.eval(), split, num_classes=2)["overall"]["dice_fg"])


OTHER_SEEDS = [pytest.param(seed, marks=pytest.mark.slow) for seed in (1, 2)]


@pytest.mark.parametrize("seed", [0, *OTHER_SEEDS])
def test_adabn_undoes_a_gain_offset_shift(seed):  # type: ignore[no-untyped-def]
    offset = 10 * seed
    source = sphere_split(16, 1 + offset, noise=0.3)
    target = sphere_split(16, 2 + offset, noise=0.3, gain=GAIN, offset=OFFSET)
    test_target = sphere_split(16, 5 + offset, noise=0.3, gain=GAIN, offset=OFFSET)
    test_source = sphere_split(16, 5 + offset, noise=0.3)  # the same scenes without the shift
    torch.manual_seed(seed)
    method = build_component("method", {
        "name": "adabn", "backbone": {"name": "unet3d", "widths": [8, 16]}, "stat_volumes": 16,
    })
    generator = torch.Generator().manual_seed(seed)
    method.on_train_start(TrainContext(
        total_steps=STEPS, device=torch.device("cpu"), generator=generator,
        sample_target=lambda n: target.volumes[torch.randint(0, len(target), (n,), generator=generator)],
    ))
    optimizer = torch.optim.Adam(list(method.trainable_parameters()), lr=3e-3)
    for step in range(STEPS):
        index = torch.randint(0, len(source), (4,), generator=generator)
        method.train()
        out = method.training_step(
            SourceBatch(source.volumes[index], source.labels[index]), TargetBatch(target.volumes[index]), step
        )
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        method.on_after_optimizer_step(step)
    source_only = LogitsOnly(method.student)  # the same weights with source BatchNorm statistics
    adabn, plain = dice(method.predictor(), test_target), dice(source_only, test_target)
    on_source = dice(source_only, test_source)
    summary = f"seed {seed}: source-only {plain:.3f}, AdaBN {adabn:.3f}, on the source {on_source:.3f}"
    assert adabn >= plain + 0.5, summary
    assert adabn >= on_source - 0.03, summary
