"""voxuda-statalign: discovered as a plugin; AdaBN moves BN statistics to the target, CORAL is Deep CORAL."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from voxuda_statalign.bnstats import batch_norm_layers  # noqa: E402
from voxuda_statalign.coral import coral_loss, covariance, feature_samples  # noqa: E402

import voxuda  # noqa: E402
from voxuda.backbones.blocks import LogitsOnly  # noqa: E402
from voxuda.cli import main  # noqa: E402
from voxuda.errors import ConfigError  # noqa: E402
from voxuda.methods.base import SourceBatch, TargetBatch  # noqa: E402
from voxuda.testing import run_steps, tiny_batches  # noqa: E402

TINY = {"name": "unet3d", "widths": [4, 8]}


def batches(seed: int = 0, n: int = 2, size: int = 8) -> tuple[SourceBatch, TargetBatch]:
    return tiny_batches(seed, n, size, shift=3.0, scale=2.0)  # a shifted and scaled target domain


def stat_set(n: int = 8, size: int = 8) -> torch.Tensor:
    """Target volumes from a shifted and scaled domain (what ``context.sample_target`` would return)."""
    return 2.0 * torch.randn(n, 1, size, size, size, generator=torch.Generator().manual_seed(99)) + 3.0


def train(method, steps: int, n: int = 2, lr: float = 1e-2, context: bool = True):  # type: ignore[no-untyped-def]
    """The trainer's protocol on fresh batches each step; returns the target batches it showed."""
    shown: list[TargetBatch] = []

    def batches_at(step: int) -> tuple[SourceBatch, TargetBatch]:
        source, target = batches(seed=step, n=n)
        shown.append(target)
        return source, target

    volumes = stat_set()
    run_steps(method, steps, batches_at, lr=lr, sample_target=(lambda k: volumes[:k]) if context else None,
              train_mode=True)
    return shown


def first_layer_statistics(method, chunks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """By hand: the mean over chunks of each chunk's per-channel mean and unbiased variance of the first
    convolution's output (the first BatchNorm normalises that bias-free convolution)."""
    conv = method.student.encoders[0][0]
    with torch.no_grad():
        outputs = [conv(chunk) for chunk in chunks]
    mean = torch.stack([o.mean(dim=(0, 2, 3, 4)) for o in outputs]).mean(0)
    var = torch.stack([o.var(dim=(0, 2, 3, 4)) for o in outputs]).mean(0)
    return mean, var


def test_both_methods_are_listed_with_this_distribution(capsys):
    assert main(["plugins", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    rows = {c["name"]: c for c in payload["components"] if c["kind"] == "method"}
    for name in ("adabn", "coral"):
        assert (rows[name]["plugin"], rows[name]["distribution"], rows[name]["version"]) == (
            "statalign", "voxuda-statalign", "0.1.0"
        )
    assert not payload["failed"]


# -- AdaBN ------------------------------------------------------------------------------------------------
def test_adabn_fills_in_batch_norm_and_refuses_a_backbone_without_it():
    method = voxuda.build_method("adabn", backbone=TINY)
    assert method.config.backbone.params["norm"] == "batch"
    assert all(isinstance(m, torch.nn.BatchNorm3d) for m in batch_norm_layers(method.student))
    assert len(batch_norm_layers(method.student)) == 6
    with pytest.raises(ConfigError, match="no BatchNorm"):
        voxuda.build_method("adabn", backbone={**TINY, "norm": "group"})


@pytest.mark.parametrize("batch_size", [2, 8])
def test_adabn_statistics_move_to_the_target(batch_size):
    torch.manual_seed(0)
    method = voxuda.build_method("adabn", backbone=TINY, stat_volumes=8, stat_batch_size=batch_size)
    shown = train(method, steps=4, n=batch_size)
    # re-estimated after the last optimiser step, without anyone asking for a predictor
    assert bool(method.target_stats.valid)
    chunks = list(stat_set().split(batch_size))
    assert len(method.statistics_batches()) == len(chunks) == 8 // batch_size
    expected_mean, expected_var = first_layer_statistics(method, chunks)
    assert torch.allclose(method.target_stats.mean_0, expected_mean, rtol=1e-4, atol=1e-5)
    assert torch.allclose(method.target_stats.var_0, expected_var, rtol=1e-4, atol=1e-5)
    # ... and they are far from the source statistics the student keeps for training
    first_bn = batch_norm_layers(method.student)[0]
    assert (method.target_stats.mean_0 - first_bn.running_mean).abs().max() > 0.5
    predictor = method.predictor()
    assert torch.equal(batch_norm_layers(predictor)[0].running_mean, method.target_stats.mean_0)
    source_net = LogitsOnly(method.student).eval()
    target = shown[-1].volume
    with torch.no_grad():
        assert not torch.allclose(predictor.eval()(target), source_net(target), atol=1e-3)


def test_adabn_without_a_context_uses_the_first_target_volumes_seen():
    torch.manual_seed(0)
    method = voxuda.build_method("adabn", backbone=TINY, stat_volumes=4, stat_batch_size=2)
    shown = train(method, steps=3, context=False)
    method.adapt_to_target()
    expected_mean, _ = first_layer_statistics(method, [shown[0].volume, shown[1].volume])
    assert torch.allclose(method.target_stats.mean_0, expected_mean, rtol=1e-4, atol=1e-5)


def test_adabn_statistics_travel_with_the_checkpoint():
    torch.manual_seed(0)
    method = voxuda.build_method("adabn", backbone=TINY)
    shown = train(method, steps=3)
    state = method.state_dict()
    assert "target_stats.mean_0" in state and bool(state["target_stats.valid"])
    fresh = voxuda.build_method("adabn", backbone=TINY)
    fresh.load_state_dict(state)
    x = shown[0].volume
    with torch.no_grad():
        assert torch.allclose(fresh.predictor().eval()(x), method.predictor().eval()(x), atol=1e-5)


def test_adabn_statistics_go_stale_after_a_step_and_are_refreshed_on_demand():
    torch.manual_seed(0)
    method = voxuda.build_method("adabn", backbone=TINY)
    train(method, steps=3)
    method.total_steps = 10  # pretend training goes on
    source, target = batches(seed=7)
    optimiser = torch.optim.SGD(method.trainable_parameters(), lr=0.1)
    method.training_step(source, target, 3).loss.backward()
    optimiser.step()
    method.on_after_optimizer_step(3)
    assert not bool(method.target_stats.valid)
    method.predictor()
    assert bool(method.target_stats.valid)


def test_adabn_without_target_data_warns_and_uses_source_statistics():
    method = voxuda.build_method("adabn", backbone=TINY)
    with pytest.warns(RuntimeWarning, match="source BatchNorm"):
        predictor = method.predictor()
    source_mean = batch_norm_layers(method.student)[0].running_mean
    assert torch.equal(batch_norm_layers(predictor)[0].running_mean, source_mean)


# -- CORAL ------------------------------------------------------------------------------------------------
def test_coral_loss_matches_a_hand_computed_value():
    source = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    target = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    # cov_s = diag(2, 2) / 3, cov_t = diag(8, 0) / 3: ||diff||^2 = 4 + 4/9; / (4 * 2^2) = 5/18
    assert torch.allclose(covariance(source), torch.eye(2) * 2 / 3)
    assert math.isclose(float(coral_loss(source, target)), 5 / 18, rel_tol=1e-6)


def test_coral_loss_is_zero_for_identical_covariances_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g)
    shifted_and_shuffled = x[torch.randperm(50, generator=g)] + 5.0  # same covariance, other mean and order
    assert float(coral_loss(x, shifted_and_shuffled)) < 1e-10
    assert float(coral_loss(x, 1.5 * x)) > 1e-3
    with pytest.raises(ValueError, match="at least 2 samples"):
        coral_loss(x[:1], x[:1])


def test_feature_samples_are_voxels_or_volumes():
    features = torch.arange(2 * 3 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2, 2)
    voxels = feature_samples(features, "voxel")
    assert voxels.shape == (16, 3)
    assert torch.equal(voxels[0], features[0, :, 0, 0, 0]) and torch.equal(voxels[9], features[1, :, 0, 0, 1])
    assert torch.equal(feature_samples(features, "pooled"), features.mean(dim=(2, 3, 4)))


@pytest.mark.parametrize("mode", ["voxel", "pooled"])
def test_coral_training_aligns_the_tap_covariances(mode):
    torch.manual_seed(0)
    method = voxuda.build_method("coral", backbone=TINY, features=mode, ce_weight=0.0, dice_weight=0.0)
    assert method.tap == "bottleneck"
    source, target = batches(n=4)

    def loss() -> float:
        with torch.no_grad():
            return float(method.training_step(source, target, 0).losses["coral"])

    before = loss()
    assert before > 0
    optimiser = torch.optim.Adam(method.trainable_parameters(), lr=1e-2)
    for step in range(8):
        out = method.training_step(source, target, step)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    assert loss() < 0.5 * before


def test_coral_rejects_an_unknown_tap():
    with pytest.raises(ConfigError, match="no tap"):
        voxuda.build_method("coral", backbone=TINY, tap="nowhere")
