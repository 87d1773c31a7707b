"""Unit behaviour of vox_uda: who sees the denoiser, the consistency and adversarial terms, config checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxuda.errors import ConfigError
from voxuda.methods.base import SourceBatch, TargetBatch, TrainContext
from voxuda.methods.losses import feature_consistency

from .helpers import start, tiny_domains, tiny_method, train

# the unit tests use the identity teacher denoiser unless the denoiser is what they test
ID = {"teacher_denoiser": "identity"}


@pytest.mark.parametrize("form", ["cosine", "cosine_flat", "mse"])
def test_consistency_is_zero_for_identical_features(form: str) -> None:
    a = torch.randn(2, 5, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    assert float(feature_consistency(a, a.clone(), form)) == pytest.approx(0.0, abs=1e-6)
    # not the global RNG: after another test's manual_seed(0) it would draw noise equal to a
    noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(1))
    assert float(feature_consistency(a, a + noise, form)) > 0.05


def test_cosine_forms_differ_in_what_they_compare() -> None:
    """Per-voxel cosine ignores a per-voxel rescaling of the channel vector; flattened cosine does not."""
    a = torch.randn(1, 3, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    scale = torch.rand(1, 1, 4, 4, 4, generator=torch.Generator().manual_seed(2)) + 0.5
    assert float(feature_consistency(a, a * scale, "cosine")) == pytest.approx(0.0, abs=1e-6)
    assert float(feature_consistency(a, a * scale, "cosine_flat")) > 1e-3


def test_consistency_term_is_zero_without_noise() -> None:
    method = tiny_method(noise="none", **ID)
    out = train(method, steps=1)[0]
    assert out.losses["con"] == pytest.approx(0.0, abs=1e-6)
    assert out.metrics["noise_sigma2"] == 0.0


class _Spy(nn.Module):
    """A denoiser that records its inputs and returns a recognisable volume (input + 100)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.clone())
        return x + 100.0


def test_denoiser_feeds_the_teacher_only() -> None:
    method = tiny_method(noise="none", **ID)
    spy = _Spy()
    method.self_training.teacher_denoiser = spy
    inputs: dict[str, list[Tensor]] = {"student": [], "teacher": []}
    method.student.register_forward_pre_hook(lambda m, args: inputs["student"].append(args[0].clone()))
    method.teacher.register_forward_pre_hook(lambda m, args: inputs["teacher"].append(args[0].clone()))
    source, label, target, _ = tiny_domains()
    start(method, target)
    method.training_step(SourceBatch(source[:2], label[:2]), TargetBatch(target[:2]), step=0)

    assert len(spy.seen) == 1 and torch.equal(spy.seen[0], target[:2])
    assert len(inputs["teacher"]) == 1 and torch.equal(inputs["teacher"][0], target[:2] + 100.0)
    assert any(torch.equal(x, target[:2]) for x in inputs["student"])  # the raw target
    assert all(float(x.max()) < 50 for x in inputs["student"])  # never the denoised volume


def test_student_input_denoiser_is_the_place_to_denoise_the_student() -> None:
    method = tiny_method(noise="none", **ID)
    spy = _Spy()
    method.student_input_denoiser = spy
    seen: list[Tensor] = []
    method.student.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    source, label, target, _ = tiny_domains()
    start(method, target)
    method.training_step(SourceBatch(source[:2], label[:2]), TargetBatch(target[:2]), step=0)
    assert any(torch.equal(x, target[:2] + 100.0) for x in seen)


def test_discriminator_gradient_is_reversed_on_the_feature_extractor() -> None:
    """With only L_dis on, student gradients are minus those of the plain domain-classification loss, and
    the discriminator's own gradients are not reversed."""
    method = tiny_method(noise="none", w_seg=0.0, w_con=0.0, pseudo_weight=0.0, grl_schedule="constant",
                         grl_lambda=1.0, discriminator_warmup_steps=0, **ID)
    source, label, target, _ = tiny_domains()
    start(method, target)
    out = method.training_step(SourceBatch(source[:2], label[:2]), TargetBatch(target[:2]), step=0)
    out.loss.backward()
    reversed_grads = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    method.zero_grad()

    tap = method.adversarial.tap
    _, fs = method.student(source[:2])
    _, ft = method.student(target[:2])
    head = method.discriminator.heads[tap]
    joint = head(torch.cat([fs[tap], ft[tap]]))  # one batch: the head standardises over both domains
    ls, lt = joint[:2], joint[2:]
    plain = 0.5 * (F.binary_cross_entropy_with_logits(ls, torch.zeros_like(ls))
                   + F.binary_cross_entropy_with_logits(lt, torch.ones_like(lt)))
    plain.backward()
    student_checked = 0
    for name, p in method.named_parameters():
        if p.grad is None or name not in reversed_grads:
            continue
        if name.startswith("student."):
            assert torch.allclose(reversed_grads[name], -p.grad, atol=1e-6), name
            student_checked += int(p.grad.abs().sum() > 0)
        elif name.startswith("discriminator."):
            assert torch.allclose(reversed_grads[name], p.grad, atol=1e-6), name
    assert student_checked > 0


def test_taps_and_weights_are_configurable_and_checked() -> None:
    method = tiny_method(taps=["enc1", "bottleneck"], tap_weights=[0.5, 0.5], **ID)
    assert method.consistency.taps == ("enc1", "bottleneck")
    out = train(method, steps=1)[0]
    assert set(k for k in out.losses if k.startswith("con_")) == {"con_enc1", "con_bottleneck"}
    with pytest.raises(ConfigError, match="tap_weights"):
        tiny_method(taps=["enc1"], **ID)
    with pytest.raises(ConfigError, match="no tap"):
        tiny_method(taps=["nope", "enc1", "enc2", "enc3"], **ID)
    default = tiny_method(**ID)
    assert default.consistency.taps == tuple(default.student.tap_names) and len(default.consistency.taps) == 4
    assert default.adversarial.tap == default.student.deepest_tap


def test_warmup_then_ramped_pseudo_labels_with_logged_metrics() -> None:
    method = tiny_method(warmup_steps=2, pseudo_rampup_steps=4, **ID)
    outs = train(method, steps=4)
    assert [o.metrics["pseudo_weight"] for o in outs[:2]] == [0.0, 0.0]
    assert "pseudo" not in outs[0].losses and "pseudo_keep_fraction" not in outs[0].metrics
    assert 0 < outs[2].metrics["pseudo_weight"] < outs[3].metrics["pseudo_weight"] <= 1.0
    last = outs[3]
    assert 0.0 <= last.metrics["pseudo_keep_fraction"] <= 1.0
    for key in ("seg", "ce", "dice", "con", "dis", "pseudo", "total"):
        assert key in last.losses
    assert last.metrics["noise_sigma2"] > 0


def test_noise_model_is_fitted_at_start_and_refitted() -> None:
    method = tiny_method(noise={"name": "ngm", "n_samples": 3, "refit_every": 2}, **ID)
    source, label, target, _ = tiny_domains()
    with pytest.raises(RuntimeError, match="on_train_start"):
        method.training_step(SourceBatch(source[:2], label[:2]), TargetBatch(target[:2]), step=0)
    train(method, steps=5)
    state = method.noise.state()
    assert len(state["per_sample_sigma2"]) == 3
    assert state["n_fits"] == 3  # at start, step 2 and step 4


def test_components_report_provenance_and_noise_state() -> None:
    method = tiny_method(**ID)
    train(method, steps=1)
    records = method.components()
    assert {"backbone", "noise", "teacher_denoiser", "student_input_denoiser"} <= set(records)
    assert records["noise"]["name"] == "ngm" and records["noise"]["plugin"] == "voxuda"
    assert records["noise"]["state"]["sigma2"] > 0
    assert records["backbone"]["config"]["widths"] == [4, 8, 8, 8]


def test_predictor_is_teacher_or_student_and_teacher_is_not_trained() -> None:
    method = tiny_method(**ID)
    teacher_ids = {id(p) for p in method.teacher.parameters()}
    assert not teacher_ids & {id(p) for p in method.trainable_parameters()}
    assert any(p is q for p in method.trainable_parameters() for q in method.discriminator.parameters())
    x = torch.randn(1, 1, 16, 16, 16)
    assert torch.equal(method.predictor()(x), method.teacher(x)[0])
    student = tiny_method(predict_with="student", **ID)
    assert torch.equal(student.predictor()(x), student.student(x)[0])


def test_defaults_and_their_origins_are_described() -> None:
    from voxuda.api import describe

    fields = {f.name: f for f in describe("vox_uda", kind="method")[0].fields}
    assert fields["ema_momentum"].default == 0.999 and "[R-own]" in fields["ema_momentum"].help
    assert fields["confidence_threshold"].default == 0.85
    assert fields["tap_weights"].default == [0.2, 0.2, 0.3, 0.3]
    assert fields["noise"].default == {"name": "ngm"}
    assert fields["teacher_denoiser"].default == {"name": "improved_bilateral"}
    assert all(f.help for f in fields.values())


@pytest.mark.parametrize("noise", ["ngm", "spectral_ngm", "none"])
def test_fitted_noise_survives_a_state_dict_round_trip(noise: str) -> None:
    method = tiny_method(noise={"name": noise, "n_samples": 3} if noise != "none" else "none", **ID)
    train(method, steps=1)
    fresh = tiny_method(noise={"name": noise, "n_samples": 3} if noise != "none" else "none", **ID)
    fresh.load_state_dict(method.state_dict())
    assert fresh.noise.state() == method.noise.state()
    x = torch.zeros(1, 1, 16, 16, 16)
    assert torch.equal(fresh.noise(x, torch.Generator().manual_seed(1)),
                       method.noise(x, torch.Generator().manual_seed(1)))


def test_noise_premise_is_checked_on_source_volumes_and_reported(capsys) -> None:  # type: ignore[no-untyped-def]
    """Vox-UDA measures the source's noise like the target's; a source noisier than the target is reported in
    one warning line and in the noise model's run.json state."""
    from voxuda.engine.data import DomainSplit, RunData

    source, label, target, _ = tiny_domains()
    for source_volumes, holds in ((source, True), (target + 2.0 * torch.randn_like(target), False)):
        method = tiny_method(noise={"name": "ngm", "n_samples": 4}, **ID)
        data = RunData(source_train=DomainSplit(source_volumes, label),
                       target_train=DomainSplit(target, None))
        generator = torch.Generator().manual_seed(0)
        method.on_train_start(TrainContext(total_steps=4, device=torch.device("cpu"), generator=generator,
                                           sample_target=lambda k: target[:k], extra={"data": data}))
        state = method.components()["noise"]["state"]
        assert state["premise_holds"] is holds
        assert (state["source_sigma2"] < state["target_sigma2"]) is holds
        lines = [line for line in capsys.readouterr().err.splitlines() if "premise" in line]
        assert len(lines) == (0 if holds else 1)
    no_data = tiny_method(noise={"name": "ngm", "n_samples": 4}, **ID)
    start(no_data, target)  # a bare loop without run data: no measurement, no claim
    assert "premise_holds" not in no_data.components()["noise"]["state"]


def test_skew_matched_with_n_samples_0_reads_every_volume_once_whatever_the_seed() -> None:
    """``n_samples = 0``: the skewnesses are the means over the whole target-train and source-train splits,
    the same for any run seed, and the run's generator is not drawn from; with 40 draws they are not."""
    from voxuda.engine.data import DomainSplit, RunData
    from voxuda.noise.skew_matched import mean_skewness

    source, label, target, _ = tiny_domains()
    data = RunData(source_train=DomainSplit(source, label), target_train=DomainSplit(target, None))

    def fitted(n_samples: int, seed: int) -> tuple[dict[str, object], Tensor]:
        method = tiny_method(noise={"name": "skew_matched", "n_samples": n_samples}, **ID)
        generator = torch.Generator().manual_seed(seed)

        def draw(k: int) -> Tensor:
            return target[torch.randint(0, len(target), (k,), generator=generator)]

        method.on_train_start(TrainContext(total_steps=4, device=torch.device("cpu"), generator=generator,
                                           sample_target=draw, extra={"data": data}))
        return method.components()["noise"]["state"], torch.randint(0, 1000, (4,), generator=generator)

    whole = [fitted(0, seed) for seed in (0, 1, 2)]
    for state, _ in whole:
        assert state["target_skewness"] == pytest.approx(mean_skewness(target), rel=1e-12)
        assert state["source_skewness"] == pytest.approx(mean_skewness(source), rel=1e-12)
    # the generator was untouched by the fit: its next draws are a fresh generator's
    assert torch.equal(whole[0][1], torch.randint(0, 1000, (4,), generator=torch.Generator().manual_seed(0)))
    drawn = {fitted(40, seed)[0]["target_skewness"] for seed in (0, 1, 2)}
    assert len(drawn) == 3 and mean_skewness(target) not in drawn
    no_data = tiny_method(noise={"name": "skew_matched", "n_samples": 0}, **ID)
    with pytest.raises(RuntimeError, match="n_samples >= 1"):
        start(no_data, target)


def _student_forwards(method: nn.Module) -> list[Tensor]:
    seen: list[Tensor] = []
    method.student.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    return seen


def test_segmentation_on_the_noisy_source_is_supervised_with_the_source_labels() -> None:
    """``w_seg_noisy``: L_seg of the noisy-source logits against the clean labels. With no noise the noisy
    source is the source, so the term equals L_seg and the total is their sum; it is skipped at weight 0."""
    only_seg = {"w_con": 0.0, "w_dis": 0.0, "pseudo_weight": 0.0, **ID}
    source, label, target, _ = tiny_domains()

    method = tiny_method(noise="none", w_seg_noisy=1.0, **only_seg)
    seen = _student_forwards(method)
    start(method, target)
    out = method.training_step(SourceBatch(source[:2], label[:2]), TargetBatch(target[:2]), step=0)
    assert len(seen) == 2 and torch.equal(seen[1], source[:2])
    assert out.losses["seg_noisy"] == pytest.approx(out.losses["seg"], rel=1e-6)
    assert float(out.loss.detach()) == pytest.approx(2 * out.losses["seg"], rel=1e-6)

    method = tiny_method(noise={"name": "ngm", "n_samples": 4}, w_seg_noisy=0.5, **only_seg)
    seen = _student_forwards(method)
    start(method, target)
    out = method.training_step(SourceBatch(source[:2], label[:2]), TargetBatch(target[:2]), step=0)
    assert len(seen) == 2 and not torch.equal(seen[1], source[:2])  # NGM noise was added
    with torch.no_grad():
        by_hand, _ = method.seg_loss(method.student(seen[1])[0], label[:2])  # noisy input, clean labels
    assert out.losses["seg_noisy"] == pytest.approx(float(by_hand), rel=1e-6)
    assert float(out.loss.detach()) == pytest.approx(out.losses["seg"] + 0.5 * out.losses["seg_noisy"],
                                                     rel=1e-6)

    method = tiny_method(noise={"name": "ngm", "n_samples": 4}, **only_seg)  # w_seg_noisy = 0: the default
    seen = _student_forwards(method)
    start(method, target)
    out = method.training_step(SourceBatch(source[:2], label[:2]), TargetBatch(target[:2]), step=0)
    assert len(seen) == 1 and "seg_noisy" not in out.losses


def test_supervision_only_on_the_noisy_source() -> None:
    """``w_seg = 0, w_seg_noisy = 1`` (the eleventh try): the loss is the noisy source's L_seg alone, the
    clean L_seg is still logged (docs read its rise) and sends no gradient."""
    only_noisy = {"w_seg": 0.0, "w_con": 0.0, "w_dis": 0.0, "pseudo_weight": 0.0, **ID}
    source, label, target, _ = tiny_domains()
    method = tiny_method(noise={"name": "ngm", "n_samples": 4}, w_seg_noisy=1.0, **only_noisy)
    seen = _student_forwards(method)
    start(method, target)
    out = method.training_step(SourceBatch(source[:2], label[:2]), TargetBatch(target[:2]), step=0)
    assert len(seen) == 2 and not torch.equal(seen[1], source[:2])
    assert out.losses["seg"] > 0  # still computed and logged
    assert float(out.loss.detach()) == pytest.approx(out.losses["seg_noisy"], rel=1e-6)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in method.student.named_parameters() if p.grad is not None}
    assert grads
    method.zero_grad()
    noisy_only, _ = method.seg_loss(method.student(seen[1])[0], label[:2])
    noisy_only.backward()
    for name, p in method.student.named_parameters():
        if name in grads:
            assert torch.allclose(grads[name], p.grad, atol=1e-6), name
