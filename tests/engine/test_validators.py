"""Validators score a predictor (higher is better) and the target oracle is marked as a label leak."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import blob_split
from voxuda.api import build_component
from voxuda.engine.data import DomainSplit, RunData
from voxuda.engine.evaluate import evaluate_predictor
from voxuda.engine.validators import ValidationContext, mean_entropy
from voxuda.errors import ConfigError


class Threshold(nn.Module):
    """Predicts foreground where the input exceeds a level (a fixed, weightless predictor)."""

    def __init__(self, level: float, sharpness: float = 20.0) -> None:
        super().__init__()
        self.level, self.sharpness = level, sharpness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = self.sharpness * (x - self.level)
        return torch.cat([-fg, fg], dim=1)


@pytest.fixture
def context() -> ValidationContext:
    data = RunData(
        source_train=blob_split(4, seed=1), target_train=blob_split(4, seed=2, contrast=0.7),
        source_val=blob_split(4, seed=3), target_val=blob_split(4, seed=4, contrast=0.7),
    )
    return ValidationContext(data=data, num_classes=2, batch_size=2)


def test_source_val_is_dice_on_source_val(context: ValidationContext) -> None:
    validator = build_component("validator", "source_val")
    good, bad = Threshold(0.8), Threshold(5.0)
    score = validator.score(good, context)
    expected = evaluate_predictor(good, context.data.source_val, num_classes=2)["overall"]["dice_fg"]
    assert score == pytest.approx(expected)
    assert score > validator.score(bad, context)


def test_entropy_prefers_confident_predictions(context: ValidationContext) -> None:
    validator = build_component("validator", "entropy")
    assert validator.score(Threshold(0.8, 50.0), context) > validator.score(Threshold(0.8, 0.1), context)
    uniform = torch.full((1, 2, 2, 2, 2), 0.5)
    assert float(mean_entropy(uniform)) == pytest.approx(float(torch.log(torch.tensor(2.0))))


def test_target_oracle_flagged(context: ValidationContext) -> None:
    validator = build_component("validator", "target_oracle")
    assert validator.label_leak is True and "leak" in validator.flag
    assert not build_component("validator", "source_val").label_leak
    assert 0.0 <= validator.score(Threshold(0.8), context) <= 1.0


def test_agreement_between_raw_and_denoised(context: ValidationContext) -> None:
    try:
        validator = build_component("validator", {"name": "agreement", "denoiser": "gaussian"})
    except Exception as exc:  # the denoisers are written in parallel; skip only while their module is absent
        from tests.methods.helpers import unwritten_builtin_module

        if unwritten_builtin_module(exc):
            pytest.skip("voxuda.denoisers not written yet")
        raise
    score = validator.score(Threshold(0.8), context)
    assert 0.0 <= score <= 1.0


# -- label-free validators that look at the target --------------------------------------------------------
LABEL_FREE = [
    "entropy",
    {"name": "agreement", "denoiser": "gaussian"},
    "target_prior",
    "target_agreement",
    {"name": "target_agreement", "view": "denoised"},
    "target_combined",
    {"name": "target_combined", "entropy_weight": 1.0, "view": "denoised"},
    "noisy_source_val",
]


class PoisonedLabels:
    """Stands in for target labels: any use at all (indexing, shape, arithmetic, len) fails the test."""

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        raise AssertionError(f"a label-free validator read target labels (.{name})")

    def __getitem__(self, item):  # type: ignore[no-untyped-def]
        raise AssertionError("a label-free validator indexed target labels")

    def __len__(self) -> int:
        raise AssertionError("a label-free validator measured target labels")


def poisoned_context(labels: object) -> ValidationContext:
    source = blob_split(4, seed=1)
    target = blob_split(4, seed=2, contrast=0.7)
    target_val = blob_split(4, seed=4, contrast=0.7)
    data = RunData(
        source_train=source, source_val=blob_split(4, seed=3),
        target_train=DomainSplit(target.volumes, labels, target.meta),  # type: ignore[arg-type]
        target_val=DomainSplit(target_val.volumes, labels, target_val.meta),  # type: ignore[arg-type]
    )
    return ValidationContext(data=data, num_classes=2, batch_size=2)


def _ref_id(ref: object) -> str:
    return ref if isinstance(ref, str) else "-".join(map(str, ref.values()))  # type: ignore[attr-defined]


@pytest.mark.parametrize("labels", [None, PoisonedLabels()], ids=["none", "poisoned"])
@pytest.mark.parametrize("ref", LABEL_FREE, ids=_ref_id)
def test_label_free_validators_never_read_target_labels(ref, labels) -> None:  # type: ignore[no-untyped-def]
    validator = build_component("validator", ref)
    assert not validator.label_leak
    with torch.no_grad():
        score = validator.score(Threshold(0.8), poisoned_context(labels))
    assert math.isfinite(score)


def fraction_predictor(fraction: float) -> nn.Module:
    """Foreground exactly on the first ``fraction`` of each volume's voxels (in memory order)."""

    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n = x[0, 0].numel()
            fg = (torch.arange(n) < round(fraction * n)).float().reshape(x.shape[2:])
            logit = 10 * (2 * fg - 1)
            return torch.stack([-logit, logit]).unsqueeze(0).expand(x.shape[0], 2, *x.shape[2:])

    return Fixed()


def test_target_prior_is_minus_the_log_ratio_to_the_prior(context: ValidationContext) -> None:
    validator = build_component("validator", {"name": "target_prior", "fg_prior": [0.1, 0.1]})
    with torch.no_grad():
        assert validator.score(fraction_predictor(0.1), context) == pytest.approx(0.0, abs=1e-3)
        assert validator.score(fraction_predictor(0.3), context) == pytest.approx(-math.log(3), abs=1e-2)
        assert validator.score(fraction_predictor(0.05), context) == pytest.approx(-math.log(2), abs=1e-2)
        inside = build_component("validator", {"name": "target_prior", "fg_prior": [0.05, 0.3]})
        assert inside.score(fraction_predictor(0.2), context) == 0.0
        tolerant = build_component("validator", {"name": "target_prior", "fg_prior": [0.1, 0.1],
                                                 "prior_tolerance": 1.5})
        assert tolerant.score(fraction_predictor(0.14), context) == 0.0
        assert tolerant.score(fraction_predictor(0.3), context) == pytest.approx(-math.log(2), abs=1e-2)
        empty = validator.score(fraction_predictor(0.0), context)
        assert math.isfinite(empty) and empty < validator.score(fraction_predictor(0.05), context)


def test_target_prior_measures_the_prior_on_source_labels(context: ValidationContext) -> None:
    source_fraction = float((context.data.source_train.labels > 0).float().mean())
    validator = build_component("validator", "target_prior")
    with torch.no_grad():
        # (within the rounding of the predictor's foreground to whole voxels)
        assert validator.score(fraction_predictor(source_fraction), context) == pytest.approx(0.0, abs=5e-3)
        assert validator.score(fraction_predictor(3 * source_fraction), context) == pytest.approx(
            -math.log(3), abs=2e-2)
    unlabelled = ValidationContext(
        data=RunData(source_train=DomainSplit(context.data.source_train.volumes, None),
                     target_train=context.data.target_train), num_classes=2)
    with pytest.raises(ConfigError, match="target_prior.*fg_prior"):
        validator.score(Threshold(0.8), unlabelled)


class Shifted(nn.Module):
    """Thresholds the input plus a ramp along W: not equivariant under flips, so its views disagree."""

    def __init__(self, level: float, ramp: float) -> None:
        super().__init__()
        self.inner, self.ramp = Threshold(level), ramp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        return self.inner(x + self.ramp * (torch.arange(w, dtype=x.dtype) / w - 0.5))


class SmoothThreshold(Threshold):
    """Thresholds a 3^3 box average of the input: a reasonable blob segmenter, and flip-equivariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.nn.functional.avg_pool3d(x, 3, stride=1, padding=1))


def test_validators_rank_a_good_predictor_above_a_bad_one(context: ValidationContext) -> None:
    """Good: a smoothed threshold near the source prior. Bad: over-predicts (a low threshold) and depends on
    position (a ramp), so its flipped view disagrees."""
    good, bad = SmoothThreshold(0.45), Shifted(0.0, 3.0)
    truth_good = evaluate_predictor(good, context.data.target_val, num_classes=2)["overall"]["dice_fg"]
    truth_bad = evaluate_predictor(bad, context.data.target_val, num_classes=2)["overall"]["dice_fg"]
    assert truth_good > truth_bad + 0.2  # (the known answer, with labels the validators never see)
    for name in ("target_prior", "target_agreement", "target_combined"):
        validator = build_component("validator", name)
        with torch.no_grad():
            assert validator.score(good, context) > validator.score(bad, context), name


def test_target_combined_is_the_weighted_sum_of_its_terms(context: ValidationContext) -> None:
    predictor = Shifted(0.5, 1.0)
    weights = {"prior_weight": 0.7, "agreement_weight": 2.0, "entropy_weight": 0.5}
    combined = build_component("validator", {"name": "target_combined", **weights})
    with torch.no_grad():
        prior = build_component("validator", {"name": "target_prior", "prior_tolerance": 1.5}).score(
            predictor, context)
        agreement = build_component("validator", "target_agreement").score(predictor, context)
        entropy = -build_component("validator", "entropy").score(predictor, context)
        expected = 0.7 * prior + 2.0 * (agreement - 1) - 0.5 * entropy / math.log(2)
        assert combined.score(predictor, context) == pytest.approx(expected, rel=1e-6)
    assert agreement < 1.0 and prior < 0.0  # every term was exercised


def test_flip_view_is_wedge_preserving_point_inversion() -> None:
    from voxuda.engine.validators import flip_all

    x = torch.randn(1, 1, 6, 6, 6)
    assert torch.equal(flip_all(flip_all(x)), x)
    spectrum, flipped = torch.fft.fftn(x[0, 0]), torch.fft.fftn(flip_all(x)[0, 0])
    assert torch.allclose(flipped.abs(), spectrum.abs(), atol=1e-4)  # |F| is unchanged: the wedge stays put


# -- noisy_source_val: the held-out source given the target's look ---------------------------------------
class Smoothed(Threshold):
    """Box-averages the input before thresholding: worse on clean blobs, robust to noise."""

    def __init__(self, level: float, width: int) -> None:
        super().__init__(level)
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.avg_pool3d(x, self.width, stride=1, padding=self.width // 2))


def noisier_target_context(target_noise: float) -> ValidationContext:
    data = RunData(
        source_train=blob_split(8, seed=1), target_train=blob_split(8, seed=2, noise=target_noise),
        source_val=blob_split(6, seed=3), target_val=blob_split(6, seed=4, noise=target_noise),
    )
    return ValidationContext(data=data, num_classes=2, batch_size=2)


def test_noisy_source_val_picks_what_the_target_prefers_where_source_val_does_not() -> None:
    """Blobs with a noisier target (the appearance track's noise-level shift): a sharp threshold after light
    smoothing wins on the clean held-out source, heavier smoothing wins on the target. Scored on the held-out
    source given the target's noise level by skew_matched (fitted on unlabelled target volumes), the
    validator ranks them as the target does; source_val ranks them the other way."""
    context = noisier_target_context(0.8)
    sharp, robust = Smoothed(1.0, 3), Smoothed(0.3, 5)
    noisy = build_component("validator", "noisy_source_val")
    clean = build_component("validator", "source_val")
    oracle = build_component("validator", "target_oracle")
    assert oracle.score(robust, context) > oracle.score(sharp, context) + 0.2
    assert clean.score(sharp, context) > clean.score(robust, context) + 0.2
    assert noisy.score(robust, context) > noisy.score(sharp, context) + 0.2
    assert noisy.noise.variance > 1.0  # it did add noise, measured on the target's volumes
    # one draw, the same for every checkpoint scored
    assert noisy.score(sharp, context) == noisy.score(sharp, context)
    again = build_component("validator", "noisy_source_val")
    assert again.score(robust, context) == noisy.score(robust, context)


def test_noisy_source_val_is_source_val_when_the_target_is_not_noisier() -> None:
    """With the source's own volumes as the target, skew_matched's premise fails and adds nothing."""
    context = noisier_target_context(0.8)
    context.data.target_train = context.data.source_train
    noisy = build_component("validator", "noisy_source_val")
    predictor = Smoothed(1.0, 3)
    clean = build_component("validator", "source_val")
    assert noisy.score(predictor, context) == clean.score(predictor, context)
    assert noisy.noise.variance == 0.0


def test_noisy_source_val_refits_for_other_data() -> None:
    """One validator scored on two runs' data does not reuse the first run's noisy volumes."""
    noisier = noisier_target_context(0.8)
    same = noisier_target_context(0.8)
    same.data.target_train = same.data.source_train
    noisy = build_component("validator", "noisy_source_val")
    predictor = Smoothed(1.0, 3)
    first = noisy.score(predictor, noisier)
    assert noisy.score(predictor, same) == build_component("validator", "source_val").score(predictor, same)
    assert noisy.score(predictor, noisier) == first


def test_noisy_source_val_needs_labelled_held_out_source() -> None:
    context = noisier_target_context(0.8)
    context.data.source_val = None
    with pytest.raises(ConfigError, match="noisy_source_val' needs a labelled source split data.val_split"):
        build_component("validator", "noisy_source_val").score(Threshold(0.8), context)
