"""The loss terms of voxuda/methods/terms.py on their own: the adversarial term's own learning-rate group, the
self-training term's EMA update, freezing at build time, the consistency sum, and that methods built from
terms keep the checkpoint layout (state-dict keys) they had before terms existed."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from voxuda.api import build_method
from voxuda.backbones.taps import resolve_tap, resolve_taps
from voxuda.backbones.unet3d import UNet3D
from voxuda.engine.optim import build_optimizer
from voxuda.engine.run_config import TrainerConfig
from voxuda.errors import ConfigError
from voxuda.methods.base import Method, TargetBatch, TrainContext
from voxuda.methods.discriminator import AdversarySettings
from voxuda.methods.losses import feature_consistency, masked_cross_entropy, soft_dice_loss
from voxuda.methods.mean_teacher import MeanTeacherConfig
from voxuda.methods.pseudo_labels import PseudoLabelSelector
from voxuda.methods.terms import AdversarialTerm, ConsistencyTerm, SelfTrainingTerm, TermLogs, attach, frozen

SMALL = {"name": "unet3d", "widths": [4, 8, 8]}  # taps enc1, enc2, bottleneck, decoder
SIZE = 16


def unet() -> UNet3D:
    torch.manual_seed(0)
    return UNet3D(widths=(4, 8, 8))


def context(steps: int = 10) -> TrainContext:
    return TrainContext(total_steps=steps, device=torch.device("cpu"), sample_target=lambda n: torch.zeros(0),
                        generator=torch.Generator().manual_seed(0))


class _Holder(nn.Module):
    """A method-like module: a student plus whatever a term registers through attach."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student


class _LearnedDenoiser(nn.Module):
    """A denoiser with a parameter, as a plugin's network denoiser would have."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def self_training(student: nn.Module, denoiser: Any = None, **overrides: Any) -> SelfTrainingTerm:
    config = MeanTeacherConfig(**overrides)
    return SelfTrainingTerm(config, student, denoiser if denoiser is not None else nn.Identity(),
                            PseudoLabelSelector(config))


# -- AdversarialTerm -------------------------------------------------------------------------------------
def test_adversarial_term_puts_its_discriminator_in_a_group_at_the_lr_multiplier() -> None:
    holder = _Holder(unet())
    term = attach(holder, AdversarialTerm(AdversarySettings(lr_scale=4.0), holder.student, 2, "dis"))
    groups = term.optimizer_groups(p for p in holder.parameters() if p.requires_grad)
    assert [g.get("lr_scale", 1.0) for g in groups] == [1.0, 4.0]
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in holder.student.parameters()]
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in term.discriminator.parameters()]
    optimizer = build_optimizer(groups, TrainerConfig(lr=1e-3))
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(1e-3), pytest.approx(4e-3)]


def test_adversarial_term_logs_under_its_method_key_and_follows_the_run_length() -> None:
    student = unet()
    settings = AdversarySettings(schedule="dann", max_weight=2.0, gamma=10.0, warmup_steps=2)
    term = AdversarialTerm(settings, student, 2, loss_key="domain")
    assert term.tap == "bottleneck"
    term.on_train_start(context(12))
    assert term.discriminator.total_steps == 12
    assert term.weight(1) == 0.0 and 0.0 < term.weight(4) < term.weight(11) <= 2.0
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, SIZE, SIZE, SIZE, generator=g)
    (logits_s, feats_s), (logits_t, feats_t) = student(x), student(x * 2 + 1)
    loss, logs = term(logits_s, feats_s, logits_t, feats_t, step=5)
    assert list(logs.losses) == ["domain"] and logs.losses["domain"] == float(loss.detach())
    assert {"grl_lambda", "domain_accuracy", "domain_loss"} <= set(logs.metrics)
    assert logs.metrics["grl_lambda"] == term.weight(5)


# -- SelfTrainingTerm ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ramp", [False, True])
def test_self_training_ema_update_moves_the_teacher_towards_the_student(ramp: bool) -> None:
    student = unet()
    term = self_training(student, ema_momentum=0.9, ema_ramp=ramp)
    before = {name: p.clone() for name, p in term.teacher.named_parameters()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    term.update_teacher(step=3)
    m = min(0.9, 1 - 1 / 5) if ramp else 0.9  # the ramp caps the momentum early: 1 - 1/(step + 2)
    moved = 0
    for name, s_param in student.named_parameters():
        t_param = dict(term.teacher.named_parameters())[name]
        torch.testing.assert_close(t_param, m * before[name] + (1 - m) * s_param)
        moved += int(not torch.equal(t_param, before[name]))
    assert moved == len(before)


def test_self_training_term_freezes_teacher_and_denoiser_when_built() -> None:
    holder = _Holder(unet())
    denoiser = _LearnedDenoiser()
    term = attach(holder, self_training(holder.student, denoiser))
    assert all(not p.requires_grad for p in term.teacher.parameters())
    assert not denoiser.scale.requires_grad
    # registered under the checkpoint names, so the base class's requires_grad filter is all a method needs
    assert holder.teacher is term.teacher and holder.teacher_denoiser is denoiser
    trainable = [p for p in holder.parameters() if p.requires_grad]
    assert [id(p) for p in trainable] == [id(p) for p in holder.student.parameters()]
    assert frozen(lambda x: x)(3) == 3  # a plain callable passes through


def test_half_life_fraction_sets_the_term_momentum_at_train_start() -> None:
    term = self_training(unet(), ema_momentum=0.999, ema_half_life_fraction=0.2)
    assert term.ema_momentum == 0.999
    term.on_train_start(context(50))
    assert term.ema_momentum == pytest.approx(0.5 ** (1 / 10))


def test_self_training_targets_follow_the_view_and_draw_only_when_augmenting() -> None:
    g = torch.Generator().manual_seed(2)
    volume = torch.randn(2, 1, SIZE, SIZE, SIZE, generator=g)
    seen: list[Tensor] = []

    def student_input(x: Tensor) -> Tensor:
        seen.append(x)
        return x + 100.0

    plain = self_training(unet(), augment=False, confidence_threshold=0.0)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    targets = plain.targets(TargetBatch(volume), generator, student_input)
    assert torch.equal(generator.get_state(), state)  # augment off: nothing drawn
    assert torch.equal(targets.view, volume + 100.0) and torch.equal(seen[0], volume)
    assert torch.equal(targets.labels, targets.selection.labels) and bool(targets.mask.all())

    augmented = self_training(unet(), augment=True, augment_orientations="all")
    moved = augmented.targets(TargetBatch(volume), generator)
    assert not torch.equal(generator.get_state(), state)
    expected = augmented.augmented_target(volume, moved.selection, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip((moved.view, moved.labels, moved.mask), expected))


def test_self_training_loss_is_masked_ce_with_size_penalty_and_logs() -> None:
    term = self_training(unet(), confidence_threshold=0.0, size_prior_weight=0.5, fg_prior=(0.1, 0.2))
    volume = torch.randn(2, 1, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    targets = term.targets(TargetBatch(volume), torch.Generator().manual_seed(0))
    logits = torch.randn(2, 2, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    loss, logs = term.loss(logits, targets)
    ce = nn.functional.cross_entropy(logits, targets.labels)
    assert list(logs.losses) == ["pseudo", "size_prior"]
    assert logs.losses["pseudo"] == pytest.approx(float(ce))
    assert float(loss) == pytest.approx(float(ce) + logs.losses["size_prior"])
    assert {"pseudo_keep_fraction", "student_fg_fraction"} <= set(logs.metrics)


def test_self_training_loss_with_ce_dice_adds_masked_dice_at_the_supervised_weights() -> None:
    """``pseudo_loss = "ce_dice"``: ce_weight masked CE + dice_weight masked soft Dice, logged apart."""
    term = self_training(unet(), pseudo_loss="ce_dice", ce_weight=0.5, dice_weight=2.0,
                         pseudo_label_selection="prior", fg_prior=(0.05, 0.05), confidence_threshold=0.9)
    volume = torch.randn(2, 1, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    targets = term.targets(TargetBatch(volume), torch.Generator().manual_seed(0))
    assert not bool(targets.mask.all())  # the prior selection ignores the uncertain voxels
    logits = torch.randn(2, 2, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    loss, logs = term.loss(logits, targets)
    ce = masked_cross_entropy(logits, targets.labels, targets.mask)
    dice = soft_dice_loss(logits, targets.labels, mask=targets.mask)
    assert list(logs.losses) == ["pseudo", "pseudo_ce", "pseudo_dice"]
    assert logs.losses["pseudo_ce"] == pytest.approx(float(ce))
    assert logs.losses["pseudo_dice"] == pytest.approx(float(dice))
    assert float(loss) == pytest.approx(0.5 * float(ce) + 2.0 * float(dice))
    # an ignored voxel's logits and label do not count
    ignored = ~targets.mask
    changed = torch.where(ignored.unsqueeze(1), torch.randn_like(logits) * 10, logits)
    assert float(term.loss(changed, targets)[0]) == pytest.approx(float(loss))


def test_dice_gives_a_rare_pseudo_class_the_weight_cross_entropy_denies_it() -> None:
    """Why ``ce_dice`` exists: with 1 % foreground, masked CE's gradient on the foreground logits is about
    the foreground share of the loss, Dice's is not; a student that calls everything background loses
    little under CE and nearly the whole Dice term."""
    labels = torch.zeros(1, 10, 10, 10, dtype=torch.long)
    labels[0, :1, :1, :] = 1  # 10 of 1000 voxels
    mask = torch.ones_like(labels, dtype=torch.bool)
    background = torch.zeros(1, 2, 10, 10, 10)
    background[:, 0] = 4.0  # confident background everywhere
    ce_only = build_selector_loss("ce")
    ce_dice = build_selector_loss("ce_dice")
    assert float(ce_only(background, labels, mask)[0]) < 0.1
    assert float(ce_dice(background, labels, mask)[0]) > 0.45


def build_selector_loss(form: str) -> Any:
    return PseudoLabelSelector(MeanTeacherConfig(pseudo_loss=form)).label_loss


# -- ConsistencyTerm -------------------------------------------------------------------------------------
def test_consistency_term_is_the_weighted_sum_over_its_taps() -> None:
    g = torch.Generator().manual_seed(5)
    clean = {tap: torch.randn(2, 3, 4, 4, 4, generator=g, requires_grad=True) for tap in ("a", "b")}
    noisy = {tap: torch.randn(2, 3, 4, 4, 4, generator=g) for tap in ("a", "b")}
    term = ConsistencyTerm(("a", "b"), (0.25, 0.75), "cosine")
    loss, logs = term(clean, noisy)
    parts = {tap: feature_consistency(clean[tap], noisy[tap], "cosine") for tap in ("a", "b")}
    torch.testing.assert_close(loss, 0.25 * parts["a"] + 0.75 * parts["b"])
    assert list(logs.losses) == ["con", "con_a", "con_b"] and logs.losses["con"] == float(loss.detach())
    loss.backward()
    assert all(clean[tap].grad is not None and clean[tap].grad.abs().sum() > 0 for tap in clean)
    for tap in clean:
        clean[tap].grad = None
    noisy = {tap: x.clone().requires_grad_() for tap, x in noisy.items()}
    detached, _ = ConsistencyTerm(("a", "b"), (0.25, 0.75), "cosine", detach_clean=True)(clean, noisy)
    detached.backward()  # the clean branch is a fixed target: only the noisy features get gradients
    assert all(clean[tap].grad is None and noisy[tap].grad is not None for tap in clean)


def test_consistency_term_checks_taps_and_weights_against_the_backbone() -> None:
    student = unet()
    default = ConsistencyTerm.on_backbone(student, (), (1, 1, 1, 1), "mse")
    assert default.taps == student.tap_names
    with pytest.raises(ConfigError, match="tap_weights"):
        ConsistencyTerm.on_backbone(student, ("enc1",), (1, 1), "mse")
    with pytest.raises(ConfigError, match="method.taps: .* no tap 'nope'"):
        ConsistencyTerm.on_backbone(student, ("nope",), (1,), "mse")


def test_tap_resolution_defaults_and_errors() -> None:
    student = unet()
    assert resolve_tap(student, "") == "bottleneck"
    assert resolve_tap(student, "decoder") == "decoder"  # declared by tap_channels, not tap_names
    assert resolve_taps(student, (), "k") == student.tap_names
    with pytest.raises(ConfigError, match="^method.discriminator_tap: "):
        resolve_tap(student, "nope", "method.discriminator_tap")

    class NoTaps(nn.Module):  # satisfies Backbone3D, but declares no taps
        tap_names: tuple[str, ...] = ()
        tap_channels: dict[str, int] = {}
        deepest_tap = ""
        divisor = 1

        def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            return x, {}

    with pytest.raises(ConfigError, match="names no taps"):
        resolve_taps(NoTaps(), (), "method.taps")


# -- methods built from terms ----------------------------------------------------------------------------
def test_term_logs_keep_order_and_become_the_step_output() -> None:
    logs = TermLogs(losses={"seg": 1.0}, metrics={"w": 0.5})
    logs.add(TermLogs(losses={"dis": 2.0}, metrics={"acc": 0.7})).add(TermLogs(losses={"pseudo": 3.0}))
    out = logs.output(torch.tensor(6.0))
    assert list(out.losses) == ["seg", "dis", "pseudo"] and list(out.metrics) == ["w", "acc"]
    assert float(out.loss) == 6.0


@pytest.mark.parametrize(("name", "prefixes"), [
    ("mean_teacher", ["student", "teacher", "pseudo_selector"]),
    ("dann", ["student", "discriminator"]),
    ("vox_uda", ["_extra_state", "student", "teacher", "pseudo_selector", "discriminator"]),
])
def test_methods_keep_their_checkpoint_layout(name: str, prefixes: list[str]) -> None:
    """Terms are not modules: state-dict keys stay those of checkpoints written before them, in order."""
    method = build_method({"name": name, "backbone": SMALL, "teacher_denoiser": "identity"}
                          if name != "dann" else {"name": name, "backbone": SMALL})
    keys = list(method.state_dict())
    assert list(dict.fromkeys(k.split(".")[0] for k in keys)) == prefixes
    assert any(k.startswith("teacher.") for k in keys) == (name != "dann")
    assert type(method).trainable_parameters is Method.trainable_parameters  # frozen parts need no filter


def test_the_mean_teacher_freezes_and_registers_a_network_denoiser(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin denoiser with parameters: saved with the method, frozen, never in an optimiser group."""
    import voxuda.api

    denoiser = _LearnedDenoiser()
    build = voxuda.api.build_component
    monkeypatch.setattr(voxuda.api, "build_component",
                        lambda kind, ref: denoiser if kind == "denoiser" else build(kind, ref))
    method = build_method({"name": "mean_teacher", "backbone": SMALL})
    assert method.teacher_denoiser is denoiser and not denoiser.scale.requires_grad
    assert "teacher_denoiser.scale" in method.state_dict()
    grouped = [id(p) for group in method.optimizer_groups() for p in group["params"]]
    assert grouped == [id(p) for p in method.student.parameters()]
