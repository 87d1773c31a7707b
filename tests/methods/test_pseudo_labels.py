"""Pseudo-label selection (voxuda.methods.pseudo_labels): what each mode keeps, what is logged, config errors,
and that the three self-training methods use it."""

from __future__ import annotations

import math

import pytest
import torch

import voxuda
from voxuda.api import build_component
from voxuda.engine.data import DomainSplit, RunData
from voxuda.errors import ConfigError
from voxuda.methods.base import SourceBatch, TargetBatch, TrainContext
from voxuda.methods.losses import confidence_mask
from voxuda.methods.pseudo_labels import (
    PseudoLabels,
    foreground_probability,
    select_by_prior,
    select_class_balanced,
    selection_metrics,
    size_penalty,
)

TINY = {"name": "unet3d", "widths": [4, 8]}


def random_probs(n: int = 2, k: int = 2, size: int = 8, seed: int = 0, fg_bias: float = -2.0) -> torch.Tensor:
    """Softmax of random logits, background favoured (like a real teacher) unless ``fg_bias`` is 0."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, size, size, size, generator=g) * 2
    logits[:, 1:] += fg_bias
    return logits.softmax(dim=1)


# -- class_balanced --------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("fraction", [0.5, 0.2, 1.0])
def test_class_balanced_keeps_the_stated_fraction_of_each_class(k: int, fraction: float) -> None:
    probs = random_probs(k=k)
    labels, mask = select_class_balanced(probs, fraction)
    confidence = probs.max(dim=1).values
    assert torch.equal(labels, probs.argmax(dim=1))
    for c in range(k):
        members = labels == c
        n_c = int(members.sum())
        assert n_c > 0
        assert int((mask & members).sum()) == round(fraction * n_c)
        kept, dropped = confidence[mask & members], confidence[~mask & members]
        if kept.numel() and dropped.numel():  # the most confident of the class are the ones kept
            assert float(kept.min()) >= float(dropped.max())


def test_class_balanced_keeps_foreground_that_a_threshold_drops() -> None:
    """The point of CBST: the rare, less confident class keeps the same share as the background."""
    probs = random_probs(fg_bias=-2.0)
    _, threshold_mask, _ = confidence_mask(probs, 0.8)
    _, balanced_mask = select_class_balanced(probs, 0.5)
    fg = probs.argmax(dim=1) > 0
    share = lambda mask: float((mask & fg).sum() / mask.sum())  # noqa: E731
    assert share(balanced_mask) > share(threshold_mask)


# -- prior -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pi", [0.013, 0.05, 0.0, 0.3])
def test_prior_keeps_pi_of_the_batch_as_foreground_within_one_voxel(pi: float) -> None:
    probs = random_probs(n=3)
    labels, mask = select_by_prior(probs, pi, background_threshold=0.9)
    fg = (labels > 0) & mask
    total = labels.numel()
    assert abs(int(fg.sum()) - pi * total) <= 1.0
    p_fg = foreground_probability(probs)
    if pi > 0:
        assert float(p_fg[fg].min()) >= float(p_fg[~fg].max())  # the top of the ranking
    background = mask & (labels == 0)
    assert torch.equal(background, (p_fg <= 0.1 + 1e-7) & ~fg)  # confidently background, nothing else
    ignored = ~mask
    assert bool(((p_fg[ignored] > 0.1) | fg[ignored]).all())


def test_prior_per_volume_scope_gives_each_volume_its_share() -> None:
    probs = random_probs(n=3)
    probs[0, 1] *= 0.01  # volume 0 looks empty to the teacher; per batch it would get almost no foreground
    probs[0, 0] = 1 - probs[0, 1]
    labels, mask = select_by_prior(probs, 0.05, 0.9, scope="volume")
    per_volume = ((labels > 0) & mask).flatten(1).sum(dim=1)
    assert per_volume.tolist() == [round(0.05 * 512)] * 3
    labels_b, mask_b = select_by_prior(probs, 0.05, 0.9, scope="batch")
    assert int(((labels_b > 0) & mask_b)[0].sum()) < per_volume[0]


def test_prior_labels_the_most_probable_foreground_class_when_multiclass() -> None:
    probs = random_probs(k=4)
    labels, mask = select_by_prior(probs, 0.1, 0.8)
    fg = (labels > 0) & mask
    assert torch.equal(labels[fg], probs[:, 1:].argmax(dim=1)[fg] + 1)
    assert set(labels[fg].unique().tolist()) <= {1, 2, 3}


def graded_probs(fg_share: float, n: int = 2, size: int = 8) -> torch.Tensor:
    """Two-class probabilities with p_fg graded over the voxels so that ``fg_share`` of them exceed 0.5."""
    count = n * size**3
    p_fg = (torch.arange(count, dtype=torch.float32) + 0.5) / count + (fg_share - 0.5)
    p_fg = p_fg.clamp(0.0, 1.0)[torch.randperm(count, generator=torch.Generator().manual_seed(0))]
    return torch.stack([1 - p_fg, p_fg]).reshape(2, n, size, size, size).transpose(0, 1)


def test_prior_range_clamps_the_teachers_own_fraction() -> None:
    method = build_component("method", {"name": "mean_teacher", "backbone": TINY,
                                        "pseudo_label_selection": "prior", "fg_prior": [0.02, 0.04]})
    selector = method.pseudo_selector
    for share, expected in ((0.10, 0.04), (0.03, 0.03), (0.005, 0.02)):
        probs = graded_probs(share)
        assert float((probs.argmax(dim=1) > 0).float().mean()) == pytest.approx(share, abs=1e-3)
        pseudo = selector.select(probs)
        assert pseudo.prior == pytest.approx(expected, abs=1e-3)
        assert abs(int(((pseudo.labels > 0) & pseudo.mask).sum()) - pseudo.prior * probs[:, 0].numel()) <= 1


# -- size penalty ----------------------------------------------------------------------------------------
def test_size_penalty_is_zero_inside_the_range_and_quadratic_outside() -> None:
    logits = torch.zeros(1, 2, 4, 4, 4)
    logits[:, 1] = math.log(0.1 / 0.9)  # p_fg = 0.1 everywhere
    assert float(size_penalty(logits, 0.05, 0.2)) == 0.0
    assert float(size_penalty(logits, 0.02, 0.05)) == pytest.approx((0.1 - 0.05) ** 2 / 0.05**2, rel=1e-4)
    assert float(size_penalty(logits, 0.2, 0.4)) == pytest.approx((0.2 - 0.1) ** 2 / 0.4**2, rel=1e-4)
    logits.requires_grad_(True)
    size_penalty(logits, 0.02, 0.05).backward()
    assert float(logits.grad[:, 1].sum()) > 0  # descending the gradient lowers the foreground logit


# -- logging ---------------------------------------------------------------------------------------------
def test_selection_metrics_on_a_hand_made_tensor() -> None:
    # 8 voxels: teacher argmax foreground on 3 of them; 5 kept, 2 of them foreground
    p_fg = torch.tensor([0.9, 0.8, 0.6, 0.4, 0.1, 0.05, 0.02, 0.3])
    probs = torch.stack([1 - p_fg, p_fg]).reshape(1, 2, 2, 2, 2)
    labels = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0]).reshape(1, 2, 2, 2)
    mask = torch.tensor([True, True, False, False, True, True, True, False]).reshape(1, 2, 2, 2)
    confidence = probs.max(dim=1).values
    pseudo = PseudoLabels(labels=labels, mask=mask, confidence=confidence, probs=probs, prior=0.25)
    metrics = selection_metrics(pseudo)
    assert metrics["pseudo_keep_fraction"] == pytest.approx(5 / 8)
    assert metrics["pseudo_fg_fraction"] == pytest.approx(2 / 5)
    assert metrics["teacher_fg_fraction"] == pytest.approx(3 / 8)
    assert metrics["fg_prior"] == 0.25
    assert metrics["teacher_confidence"] == pytest.approx(float(probs.max(dim=1).values.mean()))
    empty = selection_metrics(PseudoLabels(labels, torch.zeros_like(mask), confidence, probs))
    assert empty["pseudo_fg_fraction"] == 0.0 and "fg_prior" not in empty


# -- the selector in the methods -------------------------------------------------------------------------
def blobs(n: int, seed: int) -> DomainSplit:
    g = torch.Generator().manual_seed(seed)
    volumes = torch.randn(n, 1, 8, 8, 8, generator=g)
    return DomainSplit(volumes, (volumes[:, 0] > 1.0).long(), [])


def context(data: RunData | None, steps: int = 3) -> TrainContext:
    g = torch.Generator().manual_seed(0)
    return TrainContext(total_steps=steps, device=torch.device("cpu"), generator=g,
                        sample_target=lambda n: torch.randn(n, 1, 8, 8, 8, generator=g),
                        extra={} if data is None else {"data": data})


def test_threshold_mode_is_the_original_confidence_mask() -> None:
    method = build_component("method", {"name": "mean_teacher", "backbone": TINY})
    assert method.config.pseudo_label_selection == "threshold"
    probs = random_probs()
    pseudo = method.pseudo_selector.select(probs)
    labels, mask, confidence = confidence_mask(probs, method.config.confidence_threshold)
    assert torch.equal(pseudo.labels, labels) and torch.equal(pseudo.mask, mask)
    assert torch.equal(pseudo.confidence, confidence) and pseudo.prior is None


def test_the_source_prior_is_measured_at_train_start_and_checkpointed() -> None:
    source = blobs(4, 1)
    data = RunData(source_train=source, target_train=DomainSplit(torch.randn(2, 1, 8, 8, 8), None, []))
    prior_teacher = {"name": "mean_teacher", "backbone": TINY, "pseudo_label_selection": "prior"}
    method = build_component("method", prior_teacher)
    with pytest.raises(ConfigError, match="method.fg_prior"):
        method.pseudo_selector.select(random_probs())
    method.on_train_start(context(data))
    expected = float((source.labels > 0).float().mean())
    assert method.pseudo_selector.prior_range() == pytest.approx((expected, expected))
    state = method.state_dict()
    fresh = build_component("method", prior_teacher)
    fresh.load_state_dict(state)
    assert fresh.pseudo_selector.prior_range()[0] == pytest.approx(expected)
    older = {k: v for k, v in state.items() if "source_prior" not in k}  # a checkpoint from before the prior
    build_component("method", {"name": "mean_teacher", "backbone": TINY}).load_state_dict(older)


@pytest.mark.parametrize("value", [[0.1], [0.3, 0.1], [0.0, 0.0], [0.1, 1.5]])
def test_bad_fg_prior_is_one_clear_config_error(value: list[float]) -> None:
    with pytest.raises(ConfigError, match="fg_prior"):
        build_component("method", {"name": "mean_teacher", "fg_prior": value})


def test_unknown_selection_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="pseudo_label_selection"):
        build_component("method", {"name": "vox_uda", "pseudo_label_selection": "cbst"})


SELF_TRAINING = {
    "mean_teacher": {},
    "vox_uda": {"tap_weights": [0.3, 0.4, 0.3], "teacher_denoiser": "identity"},
    "fixmatch": {"confidence_threshold": 0.5},
}


@pytest.mark.parametrize("name", list(SELF_TRAINING))
@pytest.mark.parametrize("selection", ["class_balanced", "prior"])
def test_self_training_methods_log_the_selection(name: str, selection: str) -> None:
    if name not in {spec.name for spec in voxuda.list_components("method")}:
        pytest.skip(f"{name} is not installed")
    torch.manual_seed(0)
    method = build_component("method", {"name": name, "backbone": TINY, "pseudo_label_selection": selection,
                                        "size_prior_weight": 0.5, **SELF_TRAINING[name]})
    source = blobs(2, 1)
    data = RunData(source_train=source, target_train=blobs(2, 2))
    method.on_train_start(context(data))
    target = TargetBatch(blobs(2, 3).volumes)
    out = method.training_step(SourceBatch(source.volumes, source.labels), target, 0)
    prior = float((source.labels > 0).float().mean())
    for key in ("pseudo_keep_fraction", "pseudo_fg_fraction", "teacher_fg_fraction", "fg_prior"):
        assert 0.0 <= out.metrics[key] <= 1.0, key
    assert out.metrics["fg_prior"] == pytest.approx(prior, abs=1e-6)
    if selection == "class_balanced" and name != "fixmatch":  # (fixmatch's cutout drops some kept voxels)
        assert out.metrics["pseudo_keep_fraction"] == pytest.approx(0.5, abs=2 / 1024)
    assert "size_prior" in out.losses and out.losses["size_prior"] >= 0.0
    out.loss.backward()


def test_the_trainer_hands_the_source_prior_to_the_selection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Through the real trainer: the prior is measured on the run's source split and logged every step."""
    import json

    from voxuda.testing import tiny_run_data, train_tiny

    result, _ = train_tiny({"name": "mean_teacher", "pseudo_label_selection": "prior"}, tmp_path)
    assert result.completed
    expected = float((tiny_run_data().source_train.labels > 0).float().mean())
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "fg_prior" in line]
    assert steps and all(line["fg_prior"] == pytest.approx(expected) for line in steps)
    assert all("pseudo_fg_fraction" in line and "teacher_fg_fraction" in line for line in steps)
