"""voxuda-fixmatch: discovered as a plugin; views, pseudo-label mask and geometric consistency are right."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from voxuda_fixmatch.photometric import StrongPhotometric, gaussian_blur3d  # noqa: E402
from voxuda_fixmatch.views import make_views, pseudo_targets  # noqa: E402

import voxuda  # noqa: E402
from voxuda.cli import main  # noqa: E402
from voxuda.methods.augment import apply_batch  # noqa: E402
from voxuda.methods.base import SourceBatch, TargetBatch, TrainContext  # noqa: E402

TINY = {"name": "unet3d", "widths": [4, 8]}
NO_PHOTOMETRIC = StrongPhotometric(
    intensity_scale=0, intensity_shift=0, noise_std=0, blur_sigma=0, cutout_fraction=0
)


def asymmetric_volume(n: int = 4, size: int = 8) -> torch.Tensor:
    """Every voxel distinct (a ramp), so any flip or turn changes the volume."""
    ramp = torch.arange(size**3, dtype=torch.float32).reshape(size, size, size) / size**3 - 0.5
    return torch.stack([ramp + 0.01 * i for i in range(n)]).unsqueeze(1)


def test_listed_with_this_distribution(capsys):
    assert main(["plugins", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    [row] = [c for c in payload["components"] if c["kind"] == "method" and c["name"] == "fixmatch"]
    assert (row["plugin"], row["distribution"], row["version"]) == ("fixmatch", "voxuda-fixmatch", "0.1.0")
    assert not payload["failed"]


def test_strong_view_differs_from_the_weak_view():
    x = asymmetric_volume()
    views = make_views(x, torch.Generator().manual_seed(0), StrongPhotometric(cutout_prob=1.0, blur_prob=1.0))
    aligned_weak = views.to_strong_frame(views.weak)
    assert views.strong.shape == x.shape
    assert not torch.allclose(views.strong, aligned_weak, atol=1e-3)
    assert (~views.keep).any() and views.keep.any()  # cutout erased a box, not everything
    erased = (~views.keep).unsqueeze(1)
    for i in range(x.shape[0]):  # erased voxels hold one value: the volume's mean
        values = views.strong[i][erased[i]]
        if values.numel():
            assert torch.allclose(values, values[0].expand_as(values))


def test_weak_view_is_a_flip_rotation_of_the_input():
    x = asymmetric_volume()
    views = make_views(x, torch.Generator().manual_seed(3), NO_PHOTOMETRIC)
    assert torch.equal(views.weak, apply_batch(x, views.weak_transforms))
    assert any(not t.is_identity for t in views.weak_transforms)
    assert torch.equal(torch.sort(views.weak.flatten(1)).values, torch.sort(x.flatten(1)).values)


def test_pseudo_labels_follow_the_strong_geometry():
    """A 'model' thresholding intensity must label the strong view exactly as its moved weak labels say."""
    x = asymmetric_volume()
    views = make_views(x, torch.Generator().manual_seed(1), NO_PHOTOMETRIC)
    assert any(not t.is_identity for t in views.strong_transforms)

    def threshold_model(v: torch.Tensor) -> torch.Tensor:  # probabilities (N, 2, D, H, W), confident
        fg = (v[:, 0] > 0).float()
        return torch.stack([1 - fg, fg], dim=1)

    labels, mask, _ = pseudo_targets(threshold_model(views.weak), views, threshold=0.9)
    assert mask.all()
    assert torch.equal(labels, threshold_model(views.strong).argmax(1))
    assert not torch.equal(labels, threshold_model(views.weak).argmax(1))  # the move mattered


def test_mask_is_confidence_threshold_minus_cutout():
    g = torch.Generator().manual_seed(0)
    x = asymmetric_volume(n=2)
    views = make_views(x, g, StrongPhotometric(cutout_prob=1.0, cutout_fraction=0.5), strong_flip_rot=False)
    probs = torch.rand(2, 2, 8, 8, 8, generator=g).softmax(1)
    labels, mask, confident = pseudo_targets(probs, views, threshold=0.55)
    assert torch.equal(confident, probs.max(1).values >= 0.55)
    assert torch.equal(mask, confident & views.keep)
    assert torch.equal(labels, probs.argmax(1))
    assert 0 < int(mask.sum()) < int(confident.sum())


def test_blur_preserves_constants_and_smooths():
    flat = torch.full((1, 1, 6, 6, 6), 2.0)
    assert torch.allclose(gaussian_blur3d(flat, 1.0), flat)
    spike = torch.zeros(1, 1, 7, 7, 7)
    spike[..., 3, 3, 3] = 1.0
    blurred = gaussian_blur3d(spike, 1.0)
    assert math.isclose(float(blurred.sum()), 1.0, rel_tol=1e-5)
    assert float(blurred.max()) < 0.2 and torch.allclose(blurred, blurred.flip(2).flip(3).flip(4), atol=1e-7)


def test_views_are_deterministic_by_seed():
    x = asymmetric_volume()
    a = make_views(x, torch.Generator().manual_seed(5), StrongPhotometric())
    b = make_views(x, torch.Generator().manual_seed(5), StrongPhotometric())
    assert torch.equal(a.strong, b.strong) and torch.equal(a.keep, b.keep)


def test_fixmatch_trains_and_reports_its_mask():
    torch.manual_seed(0)
    method = voxuda.build_method("fixmatch", backbone=TINY, confidence_threshold=0.5)
    g = torch.Generator().manual_seed(0)
    method.on_train_start(
        TrainContext(total_steps=3, device=torch.device("cpu"), sample_target=lambda k: None, generator=g)
    )
    optimiser = torch.optim.Adam(method.trainable_parameters(), lr=1e-2)
    source = torch.randn(2, 1, 8, 8, 8, generator=g)
    batch = SourceBatch(source, (source[:, 0] > 0).long())
    target = TargetBatch(torch.randn(2, 1, 8, 8, 8, generator=g) + 0.5)
    for step in range(3):
        out = method.training_step(batch, target, step)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        assert 0.0 < out.metrics["pseudo_keep_fraction"] <= out.metrics["pseudo_confident_fraction"] <= 1.0
        assert math.isfinite(out.losses["pseudo"])
        assert math.isclose(float(out.loss.detach()), out.losses["seg"] + out.losses["pseudo"], rel_tol=1e-5)


def test_fixmatch_takes_the_shared_pseudo_loss_option():
    """``pseudo_loss = "ce_dice"`` (shared with the mean teacher and Vox-UDA) adds masked Dice to L_u."""
    torch.manual_seed(0)
    method = voxuda.build_method("fixmatch", backbone=TINY, confidence_threshold=0.5, pseudo_loss="ce_dice")
    g = torch.Generator().manual_seed(0)
    source = torch.randn(2, 1, 8, 8, 8, generator=g)
    batch, target = SourceBatch(source, (source[:, 0] > 0).long()), TargetBatch(source + 0.5)
    out = method.training_step(batch, target, 0)
    assert out.losses["pseudo_dice"] > 0.0
    parts = out.losses["pseudo_ce"] + out.losses["pseudo_dice"]
    assert math.isclose(out.losses["pseudo"], parts, rel_tol=1e-5)


def test_threshold_one_keeps_nothing_and_warmup_skips_the_target():
    method = voxuda.build_method("fixmatch", backbone=TINY, confidence_threshold=1.0, warmup_steps=1)
    g = torch.Generator().manual_seed(0)
    source = torch.randn(2, 1, 8, 8, 8, generator=g)
    batch, target = SourceBatch(source, (source[:, 0] > 0).long()), TargetBatch(source + 1)
    out = method.training_step(batch, target, 0)
    assert "pseudo" not in out.losses
    out = method.training_step(batch, target, 1)
    assert out.metrics["pseudo_keep_fraction"] == 0.0 and out.losses["pseudo"] == 0.0
