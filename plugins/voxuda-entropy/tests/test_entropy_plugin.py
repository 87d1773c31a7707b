"""voxuda-entropy: discovered as a plugin, and each method does what its paper says on tiny 3D volumes."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from voxuda_entropy.advent import nonsaturating_losses  # noqa: E402
from voxuda_entropy.discriminator import AdventDiscriminator3D  # noqa: E402
from voxuda_entropy.entropy import entropy_map, linear_ramp, self_information  # noqa: E402

import voxuda  # noqa: E402
from voxuda.cli import main  # noqa: E402
from voxuda.testing import run_steps, tiny_batches  # noqa: E402

TINY = {"name": "unet3d", "widths": [4, 8]}


def train(method, steps: int, lr: float = 1e-2) -> list[dict[str, float]]:  # type: ignore[no-untyped-def]
    """The trainer's protocol on one fixed pair of tiny batches; every step's losses and metrics."""
    source, target = tiny_batches()
    outputs = run_steps(method, steps, lambda _step: (source, target), lr=lr,
                        sample_target=lambda k: target.volume[:k])
    return [{**out.losses, **out.metrics} for out in outputs]


def test_both_methods_are_listed_with_this_distribution(capsys):
    assert main(["plugins", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    rows = {c["name"]: c for c in payload["components"] if c["kind"] == "method"}
    for name in ("entropy_min", "advent"):
        assert rows[name]["plugin"] == "entropy"
        assert rows[name]["distribution"] == "voxuda-entropy"
        assert rows[name]["version"] == "0.1.0"
        assert rows[name]["qualified_name"] == f"entropy:{name}"
    assert not payload["failed"]


def test_entropy_is_normalised_and_is_the_sum_of_self_information():
    logits = torch.zeros(1, 3, 2, 2, 2)
    assert torch.allclose(entropy_map(logits), torch.ones(1, 2, 2, 2))
    confident = torch.zeros(1, 3, 2, 2, 2)
    confident[:, 0] = 50.0
    assert float(entropy_map(confident).max()) < 1e-15
    logits = torch.randn(2, 2, 4, 4, 4)
    p = logits.softmax(1)
    by_hand = -(p * p.log()) / math.log(2)
    assert torch.allclose(self_information(logits), by_hand, atol=1e-6)
    assert torch.allclose(entropy_map(logits), by_hand.sum(1), atol=1e-6)
    assert linear_ramp(0, 0) == 1.0 and linear_ramp(0, 4) == 0.25 and linear_ramp(9, 4) == 1.0


def test_entropy_min_lowers_target_entropy():
    torch.manual_seed(0)
    method = voxuda.build_method("entropy_min", backbone=TINY, ce_weight=0.0, dice_weight=0.0)
    _, target = tiny_batches()
    with torch.no_grad():
        before = float(entropy_map(method.predictor()(target.volume)).mean())
    logs = train(method, steps=12)
    with torch.no_grad():
        after = float(entropy_map(method.predictor()(target.volume)).mean())
    assert after < 0.8 * before
    assert logs[-1]["entropy"] < logs[0]["entropy"]


def test_entropy_weight_zero_is_source_only():
    torch.manual_seed(0)
    method = voxuda.build_method("entropy_min", backbone=TINY, entropy_weight=0.0)
    source, target = tiny_batches()
    out = method.training_step(source, target, 0)
    assert math.isclose(float(out.loss.detach()), out.losses["seg"], rel_tol=1e-6)


def test_discriminator_is_fully_convolutional_on_tiny_volumes():
    disc = AdventDiscriminator3D(2, width=4, downsamplings=3)
    assert disc(torch.zeros(2, 2, 8, 8, 8)).shape == (2, 1, 1, 1, 1)
    assert disc(torch.zeros(1, 2, 16, 12, 8)).shape == (1, 1, 2, 2, 1)


def test_nonsaturating_adversarial_loss_reaches_only_the_segmenter():
    """The adversarial term must not train D; the D term must not train the segmenter."""
    torch.manual_seed(0)
    method = voxuda.build_method(
        "advent", backbone=TINY, ce_weight=0.0, dice_weight=0.0, entropy_weight=0.0, adversarial_weight=1.0,
        discriminator_loss_weight=0.0, discriminator_width=4,
    )
    source, target = tiny_batches()
    method.training_step(source, target, 0).loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in method.discriminator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.student.parameters())

    method.zero_grad()
    method = voxuda.build_method(
        "advent", backbone=TINY, ce_weight=0.0, dice_weight=0.0, entropy_weight=0.0, adversarial_weight=0.0,
        discriminator_loss_weight=1.0, discriminator_width=4,
    )
    method.training_step(source, target, 0).loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in method.student.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.discriminator.parameters())


def test_segmenter_step_makes_target_maps_look_like_source():
    """Adversarial sign: one segmenter step on the adversarial loss lowers D's 'is target' BCE-to-source."""
    torch.manual_seed(1)
    method = voxuda.build_method(
        "advent", backbone=TINY, ce_weight=0.0, dice_weight=0.0, entropy_weight=0.0, adversarial_weight=1.0,
        discriminator_loss_weight=0.0, discriminator_width=4,
    )
    source, target = tiny_batches()

    def fooling_loss() -> float:
        with torch.no_grad():
            logits = method.discriminator(self_information(method.student(target.volume)[0]))
            return float(F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits)))

    before = fooling_loss()
    optimiser = torch.optim.SGD(method.student.parameters(), lr=0.5)
    method.training_step(source, target, 0).loss.backward()
    optimiser.step()
    assert fooling_loss() < before


def test_discriminator_learns_to_separate_domains():
    torch.manual_seed(0)
    disc = AdventDiscriminator3D(2, width=4, downsamplings=2)
    g = torch.Generator().manual_seed(0)
    maps_s = 0.1 * torch.rand(4, 2, 8, 8, 8, generator=g)  # confident source: low self-information
    maps_t = 0.4 + 0.1 * torch.rand(4, 2, 8, 8, 8, generator=g)
    optimiser = torch.optim.Adam(disc.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        _, loss, accuracy = nonsaturating_losses(disc, maps_s, maps_t)
        first = float(loss.detach()) if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(loss.detach()) < 0.5 * first and accuracy == 1.0


def test_grl_form_reverses_and_scales_the_discriminator_gradient():
    """In 'grl' form the segmenter gets exactly -adversarial_weight times the plain D-loss gradient."""
    kwargs = dict(backbone=TINY, ce_weight=0.0, dice_weight=0.0, entropy_weight=0.0, discriminator_width=4)
    source, target = tiny_batches()
    torch.manual_seed(0)
    method = voxuda.build_method(
        "advent", adversarial_form="grl", adversarial_weight=0.3, discriminator_loss_weight=2.0, **kwargs
    )
    method.training_step(source, target, 0).loss.backward()
    reversed_grads = [p.grad.clone() for p in method.student.parameters()]
    disc_grads = [p.grad.clone() for p in method.discriminator.parameters()]

    method.zero_grad()
    maps_s = self_information(method.student(source.volume)[0])
    maps_t = self_information(method.student(target.volume)[0])
    ls, lt = method.discriminator(maps_s), method.discriminator(maps_t)
    plain = 0.5 * (F.binary_cross_entropy_with_logits(ls, torch.zeros_like(ls))
                   + F.binary_cross_entropy_with_logits(lt, torch.ones_like(lt)))
    plain.backward()
    for rev, p in zip(reversed_grads, method.student.parameters()):
        assert torch.allclose(rev, -0.3 * p.grad, atol=1e-6, rtol=1e-4)
    for got, p in zip(disc_grads, method.discriminator.parameters()):
        assert torch.allclose(got, 2.0 * p.grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("form", ["nonsaturating", "grl"])
def test_advent_trains_a_few_steps(form):
    torch.manual_seed(0)
    method = voxuda.build_method(
        "advent", backbone=TINY, adversarial_form=form, adversarial_weight=0.1, entropy_weight=0.1,
        discriminator_width=4,
    )
    logs = train(method, steps=4)
    assert all(math.isfinite(v) for log in logs for v in log.values())
    assert {"seg", "entropy", "discriminator", "domain_accuracy"} <= set(logs[-1])
    assert logs[-1]["seg"] < logs[0]["seg"]


def test_bad_config_is_rejected():
    from voxuda.errors import ConfigError

    with pytest.raises(ConfigError):
        voxuda.build_method("advent", adversarial_form="hinge")
    with pytest.raises(ConfigError):
        voxuda.build_method("entropy_min", entropy_weight=-1.0)
