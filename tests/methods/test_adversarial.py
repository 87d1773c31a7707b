"""Adversarial alignment (DANN and Vox-UDA's L_dis): the discriminator learns, has its own learning rate, can
warm up and looks where it is told; on a known covariate shift its accuracy leaves chance, and what the two
adversarial forms do to the domains is measured against source-only continuation from the same start."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from tests.vox_uda.helpers import smooth_fields
from voxuda.api import build_method
from voxuda.engine.optim import build_optimizer, build_scheduler
from voxuda.engine.run_config import TrainerConfig
from voxuda.errors import ConfigError
from voxuda.methods.base import Method, SourceBatch, TargetBatch, TrainContext
from voxuda.methods.discriminator import (
    DomainDiscriminator3D,
    OutputDiscriminator3D,
    domain_adversarial_loss,
    domain_confusion_loss,
)

SMALL = {"name": "unet3d", "widths": [4, 8, 8]}  # taps enc1, enc2, bottleneck, decoder
SIZE = 16


def context(steps: int) -> TrainContext:
    return TrainContext(total_steps=steps, device=torch.device("cpu"), sample_target=lambda n: torch.zeros(0),
                        generator=torch.Generator().manual_seed(0))


# -- the pieces -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["voxel", "pooled"])
def test_discriminator_learns_to_separate_shifted_features(mode: str) -> None:
    """Replaces the old ``0 <= accuracy <= 1``: on features whose domains differ by an offset of half a
    standard deviation, the head must reach 90 % accuracy within 60 Adam steps."""
    torch.manual_seed(0)
    disc = DomainDiscriminator3D(4, hidden=16, mode=mode, standardize=True)
    optimiser = torch.optim.Adam(disc.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        source = 0.3 * torch.randn(8, 4, 4, 4, 4, generator=g)
        target = source.roll(1, 0) + 0.15  # same distribution, shifted by half its std
        loss, accuracy = domain_adversarial_loss(disc, source, target, 1.0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert accuracy > 0.9 and float(loss.detach()) < 0.3, (accuracy, float(loss.detach()))


class _Linear(nn.Module):
    """logit = w . f + b on pooled features ``(N, C)``: a discriminator whose gradient is known by hand."""

    def __init__(self, w: Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, f: Tensor) -> Tensor:
        return f @ self.w + self.b


def test_reversal_at_chance_pushes_domains_apart_and_confusion_does_not() -> None:
    """The mechanism behind the default form: a discriminator that calls everything 'target' (accuracy 0.5)
    sends source features one way and target features the other through the reversal layer; the confusion
    loss moves both domains alike."""
    g = torch.Generator().manual_seed(0)
    source, target = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    disc = _Linear(torch.tensor([0.01, 0.0, 0.0, 0.0]), 1.0)  # every logit ~1: all called 'target'

    def mean_step(loss_fn: Any) -> tuple[Tensor, Tensor]:
        s, t = source.clone().requires_grad_(), target.clone().requires_grad_()
        out = loss_fn(disc, s, t, 1.0)
        assert out[-1] == 0.5  # at chance
        out[0].backward()
        return -s.grad.mean(0), -t.grad.mean(0)  # the descent direction of each domain's mean

    move_s, move_t = mean_step(domain_adversarial_loss)
    assert float(move_s[0]) > 0 > float(move_t[0])  # source towards 'target', target towards 'source'
    move_s, move_t = mean_step(domain_confusion_loss)
    torch.testing.assert_close(move_s, move_t)  # both towards the boundary, the gap unchanged
    assert float(move_s[0]) < 0


def test_confusion_trains_the_discriminator_on_detached_features_only() -> None:
    disc = DomainDiscriminator3D(4, hidden=8)
    s, t = torch.randn(3, 4, 2, 2, 2, requires_grad=True), torch.randn(3, 4, 2, 2, 2, requires_grad=True)
    total, bce, _ = domain_confusion_loss(disc, s, t, 0.0)
    total.backward()
    assert s.grad is None and t.grad is None  # lambda 0: nothing reaches the features
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())
    disc.zero_grad()
    plain, _ = domain_adversarial_loss(disc, s.detach(), t.detach(), 0.0)
    total, bce, _ = domain_confusion_loss(disc, s, t, 2.0)
    torch.testing.assert_close(bce, plain)
    bce.backward(retain_graph=True)
    disc_only = [p.grad.clone() for p in disc.parameters()]
    disc.zero_grad()
    total.backward()  # the confusion term adds feature gradients, none to the discriminator
    for got, expected in zip((p.grad for p in disc.parameters()), disc_only):
        torch.testing.assert_close(got, expected)
    assert s.grad is not None and s.grad.abs().sum() > 0


# -- optimiser groups -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dann", "vox_uda"])
def test_discriminator_has_its_own_learning_rate_group(name: str) -> None:
    params: dict[str, Any] = {"name": name, "backbone": SMALL}
    if name == "vox_uda":
        params["teacher_denoiser"] = "identity"
    method = build_method(params)
    groups = method.optimizer_groups()
    assert [g.get("lr_scale", 1.0) for g in groups] == [1.0, 10.0]
    ids = [[id(p) for p in g["params"]] for g in groups]
    assert sorted(sum(ids, [])) == sorted(id(p) for p in method.trainable_parameters())
    assert set(ids[1]) == {id(p) for p in method.discriminator.parameters()}
    cfg = TrainerConfig(lr=2e-3, steps=20, schedule="cosine", warmup=4)
    optimizer = build_optimizer(groups, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    for _ in range(12):
        optimizer.step()
        scheduler.step()
        backbone, discriminator = (g["lr"] for g in optimizer.param_groups)
        assert discriminator == pytest.approx(10 * backbone)  # the schedule scales both alike
    assert 0 < backbone < 2e-3


def test_default_method_has_one_group_and_bad_scales_fail() -> None:
    method = build_method({"name": "source_only", "backbone": SMALL})
    assert Method.optimizer_groups is type(method).optimizer_groups
    (group,) = method.optimizer_groups()
    optimizer = build_optimizer(method.optimizer_groups(), TrainerConfig(lr=1e-3))
    assert optimizer.param_groups[0]["lr"] == 1e-3 and len(group["params"]) == len(list(method.parameters()))
    with pytest.raises(ValueError, match="lr_scale"):
        build_optimizer([{"params": group["params"], "lr_scale": 0.0}], TrainerConfig())
    with pytest.raises(ConfigError, match="discriminator_lr_scale"):
        build_method({"name": "dann", "backbone": SMALL, "discriminator_lr_scale": -1.0})


# -- warm-up, inputs, logging ---------------------------------------------------------------------------
def _batches(seed: int = 0) -> tuple[SourceBatch, TargetBatch]:
    g = torch.Generator().manual_seed(seed)
    volume = torch.randn(2, 1, SIZE, SIZE, SIZE, generator=g)
    return SourceBatch(volume, (volume[:, 0] > 0).long()), TargetBatch(volume.flip(-1) * 2 + 1)


@pytest.mark.parametrize("form", ["grl", "confusion"])
def test_warmup_trains_the_discriminator_alone_then_the_schedule_starts(form: str) -> None:
    method = build_method({"name": "dann", "backbone": SMALL, "ce_weight": 0.0, "dice_weight": 0.0,
                           "discriminator_warmup_steps": 3, "adversarial_form": form})
    method.on_train_start(context(13))
    weights = [method.adversarial.weight(step) for step in range(13)]
    assert weights[:4] == [0.0] * 4  # warm-up, then the ramp restarts from 0
    assert weights[4:] == sorted(weights[4:]) and weights[-1] > 0.9
    source, target = _batches()
    for step, backbone_moves in ((1, False), (5, True)):
        method.zero_grad()
        out = method.training_step(source, target, step)
        out.loss.backward()
        student = sum(float(p.grad.abs().sum()) for p in method.student.parameters() if p.grad is not None)
        assert (student > 0) is backbone_moves
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.discriminator.parameters())
        assert {"grl_lambda", "domain_accuracy", "domain_loss"} <= set(out.metrics)


def test_discriminator_inputs_pooled_taps_and_output() -> None:
    source, target = _batches()
    pooled = build_method({"name": "dann", "backbone": SMALL})
    assert pooled.discriminator.taps == ("bottleneck",) and pooled.adversarial.tap == "bottleneck"
    taps = build_method({"name": "dann", "backbone": SMALL, "discriminator_input": "taps"})
    assert taps.discriminator.taps == tuple(taps.student.tap_names)
    taps.on_train_start(context(4))
    out = taps.training_step(source, target, 3)
    assert {f"domain_accuracy_{t}" for t in taps.discriminator.taps} <= set(out.metrics)
    chosen = build_method({"name": "dann", "backbone": SMALL, "discriminator_input": "taps",
                           "discriminator_taps": ["enc1", "decoder"]})
    assert chosen.discriminator.taps == ("enc1", "decoder")
    with pytest.raises(ConfigError, match="method.discriminator_taps"):
        build_method({"name": "dann", "backbone": SMALL, "discriminator_input": "taps",
                      "discriminator_taps": ["nope"]})
    for output_map in ("entropy", "softmax"):
        output = build_method({"name": "dann", "backbone": SMALL, "discriminator_input": "output",
                               "discriminator_output_map": output_map, "adversarial_form": "grl"})
        assert isinstance(output.discriminator.heads["output"], OutputDiscriminator3D)
        output.on_train_start(context(4))
        out = output.training_step(source, target, 3)
        out.loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in output.student.head.parameters())


def test_vox_uda_uses_the_shared_adversary_and_keeps_the_paper_form() -> None:
    method = build_method({"name": "vox_uda", "backbone": SMALL, "teacher_denoiser": "identity",
                           "noise": "none", "pseudo_weight": 0.0})
    assert method.config.adversarial_form == "grl"  # the paper's gradient-reversal discriminator [R]
    assert build_method({"name": "dann", "backbone": SMALL}).config.adversarial_form == "confusion"
    method.on_train_start(context(10))
    out = method.training_step(*_batches(), 2)
    assert out.losses["dis"] == pytest.approx(out.metrics["domain_loss"])
    assert {"domain_accuracy", "grl_lambda"} <= set(out.metrics)


# -- known answer: a covariate shift DANN can remove ----------------------------------------------------


def ramp_domains(seed: int, n: int = 48) -> tuple[Tensor, Tensor, Tensor]:
    """Source: smooth blobs + low noise, labelled above 0.5; target: the same kind of volumes plus an
    intensity ramp along z (like the simulator's ice-thickness gradient), which a segmenter should ignore."""
    g = torch.Generator().manual_seed(seed)
    clean_s, clean_t = smooth_fields(n, g), smooth_fields(n, g)
    ramp = 1.5 * torch.linspace(-1, 1, SIZE).view(1, 1, SIZE, 1, 1)
    source = clean_s + 0.2 * torch.randn(clean_s.shape, generator=g)
    target = clean_t + 0.2 * torch.randn(clean_t.shape, generator=g) + ramp
    return source, (clean_s > 0.5).long()[:, 0], target


def domain_distance(method: Any, source: Tensor, target: Tensor, tap: str = "bottleneck") -> float:
    """|mean_s - mean_t| / |pooled std| of the globally pooled tap features (held-out volumes)."""
    with torch.no_grad():
        xs = method.student(source)[1][tap].mean((2, 3, 4))
        xt = method.student(target)[1][tap].mean((2, 3, 4))
    spread = torch.cat([xs - xs.mean(0), xt - xt.mean(0)]).std(0).norm()
    return float((xs.mean(0) - xt.mean(0)).norm() / spread)


def adapt(seed: int, steps: int = 60, **params: Any) -> tuple[list[float], float, float]:
    """Warm-start a DANN from a 30-step source-only parent and adapt for ``steps`` steps (batch 8, lr 2e-3);
    returns the per-step domain accuracies and the domain distance before and after."""
    source, labels, target = ramp_domains(seed)
    train, held = slice(0, 32), slice(32, None)
    backbone = {"name": "unet3d", "widths": [4, 8, 16]}
    torch.manual_seed(seed)
    parent = build_method({"name": "source_only", "backbone": backbone})
    optimiser = torch.optim.Adam(parent.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(30):
        i = torch.randint(0, 32, (8,), generator=g)
        loss, _ = parent.seg_loss(parent.student(source[i])[0], labels[i])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.manual_seed(100)
    method = build_method({"name": "dann", "backbone": backbone, **params})
    method.student.load_state_dict(parent.student.state_dict())
    method.on_train_start(context(steps))
    optimiser = build_optimizer(method.optimizer_groups(), TrainerConfig(lr=2e-3))
    before = domain_distance(method, source[held], target[held])
    g = torch.Generator().manual_seed(7)
    accuracies = []
    for step in range(steps):
        i, j = torch.randint(0, 32, (8,), generator=g), torch.randint(0, 32, (8,), generator=g)
        out = method.training_step(SourceBatch(source[train][i], labels[train][i]),
                                   TargetBatch(target[train][j]), step)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        accuracies.append(out.metrics["domain_accuracy"])
    return accuracies, before, domain_distance(method, source[held], target[held])


def first_window_above(accuracies: list[float], level: float, window: int = 10) -> int | None:
    """The step by which the mean accuracy of some ``window`` consecutive steps first exceeds ``level``."""
    for end in range(window, len(accuracies) + 1):
        if sum(accuracies[end - window:end]) / window > level:
            return end
    return None


def test_dann_known_answer_discriminator_learns_and_confusion_pushes_less_than_reversal() -> None:
    """Known answer on one seed (seed 1; the slow test has three): with the defaults the discriminator's
    10-step mean accuracy passes 0.6 within N = 20 steps (measured: step 10 on every seed), while the original
    head (reversal form, no standardisation, the backbone's rate) stays at chance; and the default confusion
    form ends with the domains' pooled bottleneck features closer than the reversal form does (measured on
    every one of six seed/data combinations; neither reliably beats source-only continuation: see the slow
    test and docs/vox_uda.md)."""
    accuracies, before, confusion = adapt(seed=1)
    reached = first_window_above(accuracies, 0.6)
    assert reached is not None and reached <= 20, accuracies[:20]
    assert before > 1.0  # the ramp is visible at the bottleneck
    old_accuracies, _, _ = adapt(seed=1, adversarial_form="grl", discriminator_standardize=False,
                                 discriminator_lr_scale=1.0)
    assert first_window_above(old_accuracies, 0.6) is None
    assert sum(old_accuracies) / len(old_accuracies) < 0.55
    _, _, reversal = adapt(seed=1, adversarial_form="grl")
    assert confusion < 0.8 * reversal, (before, confusion, reversal)


@pytest.mark.slow
def test_dann_known_answer_three_seeds() -> None:
    """Seeds 0-2. Measured distances, before (1.44 / 1.14 / 1.77) -> after 60 steps: source-only continuation
    0.87 / 1.62 / 0.83, confusion (default) 2.42 / 2.26 / 1.18, reversal 2.60 / 3.68 / 2.61, the original
    head (reversal, no standardisation, backbone's rate; accuracy at chance) 2.73 / 5.38 / 2.34."""
    # Per seed only the discriminator claim, whose margin is wide (step 10 against a bound of 20); the
    # distance claims are compared summed over the seeds, where the measured margins are wide too (confusion
    # 5.86 vs reversal 8.89; original head 10.45 vs 1.25 x 4.35 before): a single seed's ratio (down to 1.07)
    # moves with the thread count's float summation order.
    confusions, reversals, befores, olds, old_means = [], [], [], [], []
    for seed in range(3):
        accuracies, _, confusion = adapt(seed)
        assert (first_window_above(accuracies, 0.6) or 99) <= 20, seed
        old_accuracies, before, old = adapt(seed, adversarial_form="grl", discriminator_standardize=False,
                                            discriminator_lr_scale=1.0)
        confusions.append(confusion)
        reversals.append(adapt(seed, adversarial_form="grl")[2])
        befores.append(before)
        olds.append(old)
        old_means.append(sum(old_accuracies) / len(old_accuracies))
    assert sum(old_means) / 3 < 0.55, old_means  # the original head stays at chance
    assert sum(olds) > 1.25 * sum(befores), (olds, befores)  # ... and, reversed, pushes the domains apart
    assert sum(confusions) < sum(reversals), (confusions, reversals)
