"""Unit tests of the pieces methods share: gradient reversal, EMA, confidence mask, losses, the discriminator
(augmentation: test_augment.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from voxuda.api import build_method
from voxuda.methods.discriminator import DomainDiscriminator3D, domain_adversarial_loss
from voxuda.methods.ema import ema_update, make_ema_teacher, ramped_momentum
from voxuda.methods.grl import GradientReversal, dann_lambda, grad_reverse
from voxuda.methods.losses import confidence_mask, masked_cross_entropy, one_hot, soft_dice_loss

SMALL = {"name": "unet3d", "widths": [4, 8]}


def test_gradient_reversal_flips_and_scales_the_gradient() -> None:
    x = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    weights = torch.randn_like(x)
    y = grad_reverse(x, 0.3)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, -0.3 * weights)
    x.grad = None
    (GradientReversal(2.0)(x) * weights).sum().backward()
    torch.testing.assert_close(x.grad, -2.0 * weights)


def test_dann_lambda_schedule() -> None:
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5, max_weight=0.5) == pytest.approx(0.5 * (2 / (1 + math.exp(-5)) - 1))
    assert dann_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_lambda(7.0) == dann_lambda(1.0)  # clamped progress
    values = [dann_lambda(p / 10) for p in range(11)]
    assert values == sorted(values)


def test_ema_update_formula_and_buffers() -> None:
    student = nn.Sequential(nn.Conv3d(1, 2, 1), nn.BatchNorm3d(2))
    teacher = make_ema_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    t0 = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
        student[1].running_mean.fill_(3.0)
    ema_update(teacher, student, 0.9)
    for name, s_param in student.named_parameters():
        expected = 0.9 * t0[name] + 0.1 * s_param.detach()
        torch.testing.assert_close(dict(teacher.named_parameters())[name], expected)
    assert torch.equal(teacher[1].running_mean, student[1].running_mean)
    ema_update(teacher, student, 0.0)  # momentum 0 copies the student
    for (_, t), (_, s) in zip(teacher.named_parameters(), student.named_parameters()):
        assert torch.equal(t, s)
    assert ramped_momentum(0.99, 0) == 0.5 and ramped_momentum(0.99, 10_000) == 0.99
    with pytest.raises(ValueError):
        ema_update(teacher, student, 1.5)


def test_mean_teacher_ema_step_and_frozen_teacher() -> None:
    method = build_method({"name": "mean_teacher", "backbone": SMALL, "ema_momentum": 0.75})
    trainable = {id(p) for p in method.trainable_parameters()}
    assert not trainable & {id(p) for p in method.teacher.parameters()}
    assert {id(p) for p in method.student.parameters()} <= trainable
    before = {k: v.clone() for k, v in method.teacher.named_parameters()}
    with torch.no_grad():
        for p in method.student.parameters():
            p.add_(1.0)
    method.on_after_optimizer_step(0)
    for name, s_param in method.student.named_parameters():
        torch.testing.assert_close(dict(method.teacher.named_parameters())[name],
                                   0.75 * before[name] + 0.25 * s_param)


def test_confidence_mask_thresholds_max_probability() -> None:
    probs = torch.tensor([[0.9, 0.5, 0.2, 0.79], [0.1, 0.5, 0.8, 0.21]]).reshape(1, 2, 4, 1, 1)
    labels, mask, confidence = confidence_mask(probs, 0.8)
    assert labels.flatten().tolist() == [0, 0, 1, 0]
    assert mask.flatten().tolist() == [True, False, True, False]
    torch.testing.assert_close(confidence.flatten(), torch.tensor([0.9, 0.5, 0.8, 0.79]))
    assert confidence_mask(probs, 0.0)[1].all()


def test_masked_cross_entropy_ignores_masked_voxels() -> None:
    logits = torch.randn(2, 2, 4, 4, 4, requires_grad=True)
    labels = torch.randint(0, 2, (2, 4, 4, 4))
    mask = torch.rand(2, 4, 4, 4) > 0.5
    loss = masked_cross_entropy(logits, labels, mask)
    changed = torch.where(mask.unsqueeze(1), logits.detach(), torch.randn_like(logits) * 10)
    torch.testing.assert_close(masked_cross_entropy(changed, labels, mask), loss.detach())
    expected = nn.functional.cross_entropy(logits.detach(), labels, reduction="none")[mask].mean()
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert torch.all(logits.grad.abs().sum(1)[~mask] == 0)
    zero = masked_cross_entropy(logits, labels, torch.zeros_like(mask))
    assert float(zero.detach()) == 0.0


def test_soft_dice_perfect_and_wrong() -> None:
    labels = torch.randint(0, 3, (2, 6, 6, 6))
    perfect = one_hot(labels, 3) * 50.0
    assert float(soft_dice_loss(perfect, labels)) < 1e-3
    assert float(soft_dice_loss(-perfect, labels)) > 0.9


@pytest.mark.parametrize("mode", ["voxel", "pooled"])
def test_discriminator_modes_and_reversed_feature_gradient(mode: str) -> None:
    """Output shapes, and the features' gradient is exactly minus that of the plain domain loss (that the
    discriminator learns is tested in test_adversarial.py)."""
    disc = DomainDiscriminator3D(4, hidden=8, mode=mode, standardize=True)
    feats = torch.randn(2, 4, 4, 4, 4, requires_grad=True)
    assert disc(feats).shape == ((2, 1, 4, 4, 4) if mode == "voxel" else (2, 1))
    loss, _ = domain_adversarial_loss(disc, feats, feats + 1, 0.7)
    (reversed_grad,) = torch.autograd.grad(loss, feats)
    joint = disc(torch.cat([feats, feats + 1]))
    plain = 0.5 * (nn.functional.binary_cross_entropy_with_logits(joint[:2], torch.zeros_like(joint[:2]))
                   + nn.functional.binary_cross_entropy_with_logits(joint[2:], torch.ones_like(joint[2:])))
    (plain_grad,) = torch.autograd.grad(plain, feats)
    torch.testing.assert_close(reversed_grad, -0.7 * plain_grad)
    assert plain_grad.abs().sum() > 0


def test_mean_teacher_pseudo_labels_follow_the_augmentation() -> None:
    method = build_method({"name": "mean_teacher", "backbone": SMALL, "confidence_threshold": 0.0})
    volume = torch.randn(2, 1, 8, 8, 8)
    term = method.self_training
    pseudo = term.make_pseudo_labels(term.teacher_input(volume))
    assert pseudo.mask.all() and pseudo.keep_fraction == 1.0
    # build pseudo-labels that are a known function of the voxels and check the transform is shared
    from voxuda.methods.pseudo_labels import PseudoLabels

    fake = PseudoLabels(labels=(volume[:, 0] > 0).long(), mask=volume[:, 0] > 0.5,
                        confidence=volume[:, 0].abs(), probs=torch.zeros(2, 2, 8, 8, 8))
    view, labels, mask = term.augmented_target(volume, fake, method.generator)
    assert not torch.equal(view, volume)
    assert torch.equal(labels, (view[:, 0] > 0).long())
    assert torch.equal(mask, view[:, 0] > 0.5)


def test_mean_teacher_warmup_and_rampup() -> None:
    method = build_method({"name": "mean_teacher", "backbone": SMALL, "warmup_steps": 3,
                           "pseudo_rampup_steps": 4, "pseudo_weight": 2.0})
    weight = method.self_training.weight
    assert weight(0) == 0.0 and weight(2) == 0.0
    assert weight(3) == pytest.approx(2.0 * math.exp(-5))
    assert weight(7) == 2.0
    from tests.conftest import make_blobs
    from voxuda.methods.base import SourceBatch, TargetBatch

    v, lab, _ = make_blobs(2, seed=0)
    out = method.training_step(SourceBatch(v, lab), TargetBatch(v), 0)
    assert "pseudo" not in out.losses and out.metrics["pseudo_weight"] == 0.0
    out = method.training_step(SourceBatch(v, lab), TargetBatch(v), 5)
    assert "pseudo" in out.losses and 0.0 <= out.metrics["pseudo_keep_fraction"] <= 1.0
