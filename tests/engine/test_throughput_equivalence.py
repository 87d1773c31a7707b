"""The speed-ups of issue 18 keep training results: exactly where the change is exact (the teacher-input
cache, skipping deterministic mode's NaN fill), within float rounding where it only reorders arithmetic
(the channels_last_3d memory format)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from voxuda.api import build_method
from voxuda.engine import trainer as trainer_module
from voxuda.engine.checkpoint import load_checkpoint
from voxuda.engine.data import DomainSplit, PairedSampler, RunData
from voxuda.engine.distributed import ShardedPairedSampler
from voxuda.engine.metrics_log import read_metrics
from voxuda.engine.run_config import run_config_from_dict
from voxuda.engine.trainer import train
from voxuda.methods.base import SourceBatch, TargetBatch, TrainContext
from voxuda.methods.volume_cache import DenoisedVolumeCache, cacheable_denoiser, settings_key
from voxuda.testing import sphere_split

SIZE = 16
IBF = {"name": "improved_bilateral", "backend": "torch"}


def run_data() -> RunData:
    return RunData(source_train=sphere_split(12, 0, noise=0.3, size=SIZE),
                   target_train=sphere_split(6, 1, noise=1.5, size=SIZE),
                   source_val=sphere_split(4, 2, noise=0.3, size=SIZE))


def vox_uda_config(**method: Any) -> Any:
    return run_config_from_dict({
        "seed": 0,
        "method": {"name": "vox_uda", "backbone": {"name": "unet3d", "widths": [4, 8, 8]},
                   "teacher_denoiser": IBF, "ema_momentum": 0.9, "confidence_threshold": 0.5,
                   "noise": {"name": "ngm", "n_samples": 4}, **method},
        "data": {"root": "unused", "box": SIZE},
        "trainer": {"steps": 5, "batch_size": 4, "progress": False, "num_threads": 1},
        "evaluation": {"selection": "last"},
    })


def final_state(config: Any, out: Path) -> tuple[dict[str, torch.Tensor], list[float]]:
    result = train(config, out, data=run_data())
    state = load_checkpoint(result.last_checkpoint)["method"]
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    return state, losses


def assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key


# -- the teacher-input cache -----------------------------------------------------------------------------
def test_cached_teacher_input_equals_uncached_bit_for_bit() -> None:
    method = build_method({"name": "vox_uda", "backbone": {"name": "unet3d", "widths": [4, 8, 8]},
                           "teacher_denoiser": IBF}).self_training
    volumes = sphere_split(6, 1, noise=1.5, size=SIZE).volumes
    index = torch.tensor([3, 1, 3, 0])  # a repeat inside one batch, as sampling with replacement gives
    first = method.teacher_input(volumes[index], index)
    assert len(method.teacher_input_cache) == 3 and method.teacher_input_cache.misses == 4
    again = torch.tensor([0, 5, 1, 3])
    second = method.teacher_input(volumes[again], again)
    assert method.teacher_input_cache.hits == 3  # 0, 1 and 3 were served from the cache
    assert torch.equal(first, method.teacher_denoiser(volumes[index]))
    assert torch.equal(second, method.teacher_denoiser(volumes[again]))
    assert torch.equal(second, method.teacher_input(volumes[again]))  # no index: no cache


def test_cache_invalidates_on_any_setting_change_and_on_other_content() -> None:
    method = build_method({"name": "mean_teacher", "backbone": {"name": "unet3d", "widths": [4, 8, 8]},
                           "teacher_denoiser": IBF}).self_training
    volumes = sphere_split(4, 1, noise=1.5, size=SIZE).volumes
    index = torch.arange(4)
    before = method.teacher_input(volumes, index)
    method.teacher_denoiser.config.sigma_range = 0.3  # a setting changed mid-run
    after = method.teacher_input(volumes, index)
    assert not torch.equal(before, after)
    assert torch.equal(after, method.teacher_denoiser(volumes))
    other = sphere_split(4, 7, noise=1.5, size=SIZE).volumes  # same positions, different volumes
    assert torch.equal(method.teacher_input(other, index), method.teacher_denoiser(other))


def test_cache_budget_and_which_denoisers_are_cached() -> None:
    volumes = sphere_split(4, 1, noise=1.5, size=SIZE).volumes
    calls: list[int] = []

    def denoise(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x * 2

    one_volume = volumes[0].numel() * volumes.element_size()
    cache = DenoisedVolumeCache(budget_bytes=2 * one_volume)
    out = cache.lookup(volumes, torch.arange(4), denoise, ("k",))
    assert torch.equal(out, volumes * 2) and len(cache) == 2  # the rest is computed but not kept
    cache.lookup(volumes, torch.arange(4), denoise, ("k",))
    assert calls == [4, 2]
    with pytest.raises(ValueError, match="index"):
        cache.lookup(volumes, torch.arange(3), denoise, ("k",))
    identity = build_method({"name": "mean_teacher", "backbone": {"name": "unet3d", "widths": [4, 8, 8]}})
    assert not cacheable_denoiser(identity.self_training.teacher_denoiser)
    assert not cacheable_denoiser(lambda x: x)  # plugin callables are not assumed deterministic per volume
    vox_uda = build_method({"name": "vox_uda", "backbone": {"name": "unet3d", "widths": [4, 8, 8]}})
    ibf = vox_uda.self_training.teacher_denoiser
    assert cacheable_denoiser(ibf) and settings_key(ibf) == settings_key(ibf)


def test_vox_uda_training_is_identical_with_and_without_the_cache(tmp_path: Path) -> None:
    cached, cached_losses = final_state(vox_uda_config(), tmp_path / "cached")
    plain, plain_losses = final_state(vox_uda_config(teacher_input_cache_mb=0), tmp_path / "plain")
    assert cached_losses == plain_losses and len(plain_losses) == 5
    assert_same_state(cached, plain)


def test_trainer_hands_the_batch_positions_to_the_method(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from voxuda.methods.vox_uda import VoxUDA

    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    original = VoxUDA.training_step

    def spy(self: VoxUDA, source: SourceBatch, target: TargetBatch, step: int) -> Any:
        seen.append((target.volume.clone(), target.index))
        return original(self, source, target, step)

    monkeypatch.setattr(VoxUDA, "training_step", spy)
    data = run_data()
    train(vox_uda_config(), tmp_path / "run", data=data)
    assert len(seen) == 5
    for volume, index in seen:
        assert index is not None and torch.equal(volume.cpu(), data.target_train.volumes[index.cpu()])


def test_take_composes_positions_through_the_sharded_sampler() -> None:
    split = sphere_split(10, 0, noise=0.3, size=8)
    assert split.index is None
    batch = split.take(torch.tensor([7, 2, 9, 4]))
    assert batch.index.tolist() == [7, 2, 9, 4]
    assert batch.take(torch.tensor([1, 3])).index.tolist() == [2, 4]
    data = RunData(source_train=split, target_train=DomainSplit(split.volumes, None))
    sharded = ShardedPairedSampler(PairedSampler(data, 4, "random"), rank=1, world_size=2)
    _, target = sharded.next(torch.Generator().manual_seed(0))
    assert torch.equal(target.volumes, split.volumes[target.index])


# -- deterministic mode without the NaN fill ----------------------------------------------------------------
def test_skipping_the_uninitialized_fill_changes_no_result(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils.deterministic as deterministic

    fast, fast_losses = final_state(vox_uda_config(), tmp_path / "fast")
    assert deterministic.fill_uninitialized_memory is False
    monkeypatch.setattr(trainer_module, "skip_uninitialized_fill", lambda: None)
    monkeypatch.setattr(deterministic, "fill_uninitialized_memory", True)
    filled, filled_losses = final_state(vox_uda_config(), tmp_path / "filled")
    assert deterministic.fill_uninitialized_memory is True  # the trainer left it on this time
    assert fast_losses == filled_losses
    assert_same_state(fast, filled)


# -- channels_last_3d ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["source_only", "vox_uda"])
def test_channels_last_gives_the_same_losses_and_gradients(name: str) -> None:
    data = run_data()
    source = SourceBatch(data.source_train.volumes[:4], data.source_train.labels[:4])  # type: ignore[index]
    target = TargetBatch(data.target_train.volumes[:4])
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        method = build_method({"name": name, "backbone": {"name": "unet3d", "widths": [4, 8, 8],
                                                          "channels_last_3d": channels_last},
                               **({"teacher_denoiser": IBF, "noise": {"name": "ngm", "n_samples": 4}}
                                  if name == "vox_uda" else {})})
        generator = torch.Generator().manual_seed(0)
        method.on_train_start(TrainContext(total_steps=10, device=torch.device("cpu"), generator=generator,
                                           sample_target=lambda n: data.target_train.volumes[:n]))
        out = method.training_step(source, target, 0)
        out.loss.backward()
        grads = {k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None}
        results.append((out.losses, grads))
    (losses_a, grads_a), (losses_b, grads_b) = results
    assert losses_a.keys() == losses_b.keys()
    for key in losses_a:
        assert losses_b[key] == pytest.approx(losses_a[key], rel=1e-4, abs=1e-6), key
    assert grads_a.keys() == grads_b.keys() and grads_a
    for key in grads_a:
        torch.testing.assert_close(grads_b[key], grads_a[key], rtol=1e-3, atol=1e-5, msg=key)


def test_unet_defaults_to_channels_last() -> None:
    net = build_method({"name": "source_only", "backbone": {"name": "unet3d", "widths": [4, 8, 8]}}).student
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv3d) and m.weight.shape[1] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    logits, features = net(torch.randn(2, 1, SIZE, SIZE, SIZE))
    assert features["enc1"].is_contiguous(memory_format=torch.channels_last_3d)


# -- the consistency loss's written-out backward -----------------------------------------------------------
def reference_consistency(clean: torch.Tensor, noisy: torch.Tensor, form: str) -> torch.Tensor:
    """The expression before issue 18, differentiated by autograd."""
    import torch.nn.functional as F

    a, b = clean.float(), noisy.float()
    if form == "cosine_flat":
        a, b = a.flatten(1), b.flatten(1)
    a_hat, b_hat = F.normalize(a, dim=1, eps=1e-8), F.normalize(b, dim=1, eps=1e-8)
    return 0.5 * (a_hat - b_hat).pow(2).sum(dim=1).mean()


@pytest.mark.parametrize("form", ["cosine", "cosine_flat"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("noise", [0.7, 0.01])  # 0.01: nearly equal features, where the loss sits in training
def test_consistency_values_and_gradients_match_autograd(form: str, layout: torch.memory_format,
                                                         noise: float) -> None:
    from voxuda.methods.losses import feature_consistency

    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(3, 5, 4, 6, 6, generator=generator)
    noisy = clean + noise * torch.randn(clean.shape, generator=generator)
    clean[0, :, 1] = 0.0  # ReLU-dead channel vectors: the eps branch of the gradient
    noisy[0, :, 1, :2] = 0.0
    clean[1, :, 2, 3] = 1e-10  # below eps but not zero
    leaves = []
    for fn in (feature_consistency, reference_consistency):
        a = clean.contiguous(memory_format=layout).requires_grad_()
        b = noisy.contiguous(memory_format=layout).requires_grad_()
        value = fn(a, b, form)
        (3.0 * value).backward()
        leaves.append((value.detach(), a.grad, b.grad))
    (value, grad_a, grad_b), (ref_value, ref_a, ref_b) = leaves
    torch.testing.assert_close(value, ref_value, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(grad_a, ref_a, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad_b, ref_b, rtol=1e-5, atol=1e-7)
    assert grad_a.abs().sum() > 0 and grad_b.abs().sum() > 0


def test_consistency_with_a_detached_clean_branch_only_reaches_the_noisy_features() -> None:
    from voxuda.methods.losses import feature_consistency

    clean = torch.randn(2, 4, 4, 4, 4)
    noisy = (clean + torch.randn(clean.shape)).requires_grad_()
    feature_consistency(clean, noisy, "cosine").backward()
    reference = noisy.detach().clone().requires_grad_()
    reference_consistency(clean, reference, "cosine").backward()
    torch.testing.assert_close(noisy.grad, reference.grad, rtol=1e-5, atol=1e-7)


def test_one_channel_groups_run_contiguous_under_channels_last_with_the_same_result() -> None:
    from voxuda.backbones.blocks import ContiguousGroupNorm, make_norm

    assert type(make_norm("group", 8, channels_last=True)) is ContiguousGroupNorm  # 8 groups of 1
    assert type(make_norm("group", 16, channels_last=True)) is torch.nn.GroupNorm  # 8 groups of 2
    assert type(make_norm("group", 8)) is torch.nn.GroupNorm
    torch.manual_seed(0)
    fast, plain = ContiguousGroupNorm(8, 8), torch.nn.GroupNorm(8, 8)
    with torch.no_grad():
        plain.weight.normal_()
        plain.bias.normal_()
    fast.load_state_dict(plain.state_dict())
    x = (3 * torch.randn(2, 8, 6, 6, 6) + 1).contiguous(memory_format=torch.channels_last_3d)
    x_fast, x_plain = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_fast, out_plain = fast(x_fast), plain(x_plain)
    assert out_fast.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out_fast, out_plain, rtol=1e-5, atol=1e-5)
    weight = torch.randn(out_fast.shape)
    (out_fast * weight).sum().backward()
    (out_plain * weight).sum().backward()
    torch.testing.assert_close(x_fast.grad, x_plain.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_class_index_is_argmax_with_ties_and_nan(layout: torch.memory_format) -> None:
    from voxuda.methods.losses import class_index

    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (3, 4, 5, 6, 7), generator=generator).float()  # many ties
    scores[0, 2, 1, 1, 1] = float("nan")
    scores = scores.contiguous(memory_format=layout)
    assert torch.equal(class_index(scores), scores.argmax(dim=1))
    assert torch.equal(class_index(scores[:, 1:]), scores[:, 1:].argmax(dim=1))
