"""The one augmentation module: orientations move labels with volumes, invert, replay by seed, and the default
set keeps a real missing-wedge mask (tilt axis y, beam z) unchanged in Fourier space."""

from __future__ import annotations

import pytest
import torch

from voxuda.api import build_method
from voxuda.methods.augment import (
    ORIENTATIONS,
    FlipRot3D,
    apply_batch,
    augment_pair,
    intensity_jitter,
    invert_batch,
    orientation_set,
    sample_batch_transforms,
)
from voxuda.methods.pseudo_labels import PseudoLabels
from voxuda.simulate.wedge import wedge_mask

SIZE = 16
ASYMMETRIC = (-50.0, 64.0)  # the insitu_ribosome preset's tilt range
SYMMETRIC = (-60.0, 60.0)


def wedge_volume(tilt: tuple[float, float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A real volume whose Fourier support is exactly a missing-wedge mask, and that support."""
    mask = torch.from_numpy(wedge_mask((SIZE,) * 3, *tilt)).bool()
    g = torch.Generator().manual_seed(seed)
    real, imag = (torch.randn(mask.shape, generator=g, dtype=torch.float64) for _ in range(2))
    volume = torch.fft.ifftn(torch.complex(real, imag) * mask).real  # float64: round-off far below 1e-9
    return volume, support(volume)


def support(volume: torch.Tensor) -> torch.Tensor:
    amplitude = torch.fft.fftn(volume).abs()
    return amplitude > 1e-9 * float(amplitude.max())


def keeps_wedge(transform: FlipRot3D, volume: torch.Tensor, wedge: torch.Tensor) -> bool:
    return bool(torch.equal(support(transform.apply(volume)), wedge))


def test_wedge_volume_has_the_mask_as_support() -> None:
    """The test's premise: the support is the wedge mask (which is Friedel-symmetric), not the whole cube."""
    for tilt in (ASYMMETRIC, SYMMETRIC):
        _, wedge = wedge_volume(tilt)
        mask = torch.from_numpy(wedge_mask((SIZE,) * 3, *tilt)).bool()
        assert 0.2 < float(wedge.float().mean()) < 0.9
        # a real volume's support is the mask united with its mirror image (they differ on Nyquist planes)
        assert float((wedge ^ mask).float().mean()) < 0.1


@pytest.mark.parametrize("tilt", [ASYMMETRIC, SYMMETRIC], ids=["asymmetric", "symmetric"])
def test_default_orientations_keep_the_missing_wedge(tilt: tuple[float, float]) -> None:
    volume, wedge = wedge_volume(tilt)
    default = orientation_set((SIZE,) * 3)
    assert default == orientation_set((SIZE,) * 3, "wedge") and len(default) == 4
    assert all(keeps_wedge(t, volume, wedge) for t in default)


def test_flips_keep_only_a_symmetric_wedge_and_quarter_turns_move_it() -> None:
    volume, wedge = wedge_volume(SYMMETRIC)
    assert all(keeps_wedge(t, volume, wedge) for t in orientation_set((SIZE,) * 3, "flips"))
    volume, wedge = wedge_volume(ASYMMETRIC)
    assert not keeps_wedge(FlipRot3D(flips=(True, False, False)), volume, wedge)  # mirrors -50/+64
    for tilt in (SYMMETRIC, ASYMMETRIC):
        volume, wedge = wedge_volume(tilt)
        # a quarter turn in (H, W) -- the old data/augment.py default -- moves the tilt axis from y to x
        assert not keeps_wedge(FlipRot3D(flips=(False, True, False), axes=(0, 2, 1)), volume, wedge)
        everything = orientation_set((SIZE,) * 3, "all")
        assert len(everything) == 48
        assert sum(keeps_wedge(t, volume, wedge) for t in everything) < len(everything)


def test_orientation_sets_are_distinct_and_keep_shapes() -> None:
    cube = torch.arange(4 * 4 * 4).reshape(1, 4, 4, 4)
    for name, count in (("wedge", 4), ("flips", 8), ("all", 48)):
        images = {tuple(t.apply(cube).flatten().tolist()) for t in orientation_set((4, 4, 4), name)}
        assert len(images) == count, name
    box = torch.randn(3, 1, 4, 6, 6)
    allowed = orientation_set(box.shape[-3:], "all")
    assert len(allowed) == 16  # only H and W (both 6) may swap
    moved = apply_batch(box, sample_batch_transforms(3, box.shape[-3:], torch.Generator(), "all"))
    assert moved.shape == box.shape
    with pytest.raises(ValueError, match="orientations"):
        orientation_set((4, 4, 4), "isotropic")  # type: ignore[arg-type]
    assert set(ORIENTATIONS) == {"wedge", "flips", "all"}


@pytest.mark.parametrize("orientations", ["wedge", "flips", "all"])
def test_labels_follow_volumes_invert_and_replay(orientations: str) -> None:
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn(6, 1, 6, 6, 6)
    labels = (volume[:, 0] > 0).long()
    aug_v, aug_l, transforms = augment_pair(volume, labels, generator, orientations)  # type: ignore[arg-type]
    assert aug_l is not None and torch.equal(aug_l, (aug_v[:, 0] > 0).long())
    assert torch.equal(invert_batch(aug_v, transforms), volume)
    assert any(not t.is_identity for t in transforms)
    again = sample_batch_transforms(6, (6, 6, 6), torch.Generator().manual_seed(0), orientations)  # type: ignore[arg-type]
    assert again == transforms


def test_intensity_jitter_changes_intensities_only() -> None:
    volume = torch.randn(2, 1, 4, 4, 4)
    jittered = intensity_jitter(volume, torch.Generator().manual_seed(1), scale=0.1, shift=0.1)
    assert jittered.shape == volume.shape and not torch.equal(jittered, volume)
    # per-sample affine: the correlation with the input stays exactly 1
    for a, b in zip(volume.flatten(1), jittered.flatten(1)):
        assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", ["mean_teacher", "vox_uda"])
def test_self_training_views_keep_the_wedge_by_default(name: str) -> None:
    params = {"name": name, "backbone": {"name": "unet3d", "widths": [4, 8, 8]}}
    if name == "vox_uda":
        params.update(augment=True, teacher_denoiser="identity")
    method = build_method(params)
    assert method.config.augment_orientations == "wedge"
    volume, wedge = wedge_volume(ASYMMETRIC)
    batch = volume.expand(8, 1, SIZE, SIZE, SIZE).clone()  # float64: augmented_target only moves voxels
    fake = PseudoLabels(labels=(batch[:, 0] > 0).long(), mask=batch[:, 0] > 0.1, confidence=batch[:, 0].abs(),
                        probs=torch.zeros(8, 2, SIZE, SIZE, SIZE))
    view, labels, _ = method.self_training.augmented_target(batch, fake, method.generator)
    assert not torch.equal(view, batch)
    assert torch.equal(labels, (view[:, 0] > 0).long())
    assert all(torch.equal(support(v[0]), wedge) for v in view)
