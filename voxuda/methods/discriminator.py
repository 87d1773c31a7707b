"""Adversarial domain alignment, one place for DANN, Vox-UDA's L_dis and the ADVENT plugin.

Pieces:

- :class:`DomainDiscriminator3D`: a domain classifier on a feature tap. ``pooled`` mode global-average-pools
  the features and classifies whole volumes (the classic DANN head); ``voxel`` mode classifies every voxel.
- :class:`OutputDiscriminator3D`: ADVENT's fully convolutional discriminator (Vu et al. 2019, after Hung et
  al. 2018) on output-space maps, with :func:`output_maps` (softmax or weighted self-information).
- :func:`domain_adversarial_loss`: BCE (source = 0, target = 1) behind a gradient-reversal layer (Ganin and
  Lempitsky 2015); :func:`domain_confusion_loss`: the same BCE for the discriminator on detached features,
  and for the features a confusion loss towards 1/2 (Tzeng et al. 2015).
- :class:`DomainAdversary`: the discriminator(s) of a method and where they look (``discriminator_input``):
  ``pooled`` one tap (the deepest by default), ``taps`` one small head per tap with the losses averaged, or
  ``output`` the softmax / entropy maps of the logits. It also owns the schedule: an optional warm-up during
  which the discriminator trains on detached inputs with the reversal weight at 0 (so it leaves chance before
  it pushes back), then the DANN ramp ``2 / (1 + exp(-gamma p)) - 1`` or a constant weight.

Why two forms (``adversarial_form``). Through a gradient-reversal layer the features follow
``lambda * (y - sigmoid(z))`` per domain logit ``z`` (minus the BCE gradient): largest where the discriminator
is *wrong*, and vanishing where it is confident and right. A discriminator near chance (e.g. one constant
output) therefore pushes source features one way and target features the other, *separating* the domains,
and one that became confident stops pushing. Measured (docs/vox_uda.md, "What changed"): on a clean covariate
shift (an intensity ramp on the target, 3 seeds, 60 steps, 48 volumes a domain) the reversal form raised the
pooled-feature distance between domains from 1.1-1.8 to 2.6-3.7 (the original pooled head at the backbone's
rate, at accuracy 0.50: 2.3-5.4), while source-only continuation ended at 0.8-1.6. The confusion form trains
the features towards ``sigmoid(z) = 1/2`` for both domains (gradient ``sigmoid(z) - 1/2``): it moves both
domains toward the boundary, never past each other, and stops at confusion; it ended at 1.2-2.4, closer than
the reversal on every seed, but (like the reversal) not closer than source-only continuation.

Why the discriminator trains faster than the backbone (``discriminator_lr_scale``, default 10): it starts from
scratch against a warm-started backbone. DANN practice trains the layers added to a pre-trained network at 10x
the learning rate of the pre-trained ones (Ganin and Lempitsky 2015, Office experiments; Long et al. 2015 for
DAN; the Transfer-Learning-Library's DANN gives its backbone 0.1x and its discriminator 1x the base rate).
The adaptation review measured that at the backbone's rate the pooled head never left chance in 100 steps
(docs/vox_uda.md). Methods put the discriminator in its own optimiser group through
:meth:`voxuda.methods.base.Method.optimizer_groups`.

Source and target go through a discriminator as *one* batch (:func:`domain_adversarial_loss` concatenates
them), so the pooled head can standardise its input with the joint batch's statistics: the domain difference
survives (both domains share one mean and scale) while the small, unscaled pooled features (mean magnitude
~0.37 on the quick preset's U-Net) no longer slow its learning. Normalising each domain's batch on its own
would erase the domain difference; that is why no head normalises per domain.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxuda.backbones.taps import resolve_tap, resolve_taps, tap_channels
from voxuda.checks import at_least_one, non_negative, positive
from voxuda.config import help_field
from voxuda.methods.grl import adversarial_weight, grad_reverse
from voxuda.protocols import Backbone3D

DiscriminatorMode = Literal["voxel", "pooled"]
DiscriminatorInput = Literal["pooled", "taps", "output"]
OutputMap = Literal["entropy", "softmax"]


# -- networks -------------------------------------------------------------------------------------------
class DomainDiscriminator3D(nn.Module):
    """Domain classifier on ``(N, C, D, H, W)`` features; returns "is target" logits (no sigmoid).

    ``standardize`` (pooled mode) puts a parameter-free batch standardisation of the pooled vector first; it
    must see source and target in one batch (as :func:`domain_adversarial_loss` gives them).
    """

    def __init__(self, in_channels: int, hidden: int = 32, mode: DiscriminatorMode = "pooled",
                 standardize: bool = False) -> None:
        super().__init__()
        if mode not in ("voxel", "pooled"):
            raise ValueError(f"discriminator mode must be 'voxel' or 'pooled', got {mode!r}")
        self.mode = mode
        self.standardize = standardize and mode == "pooled"
        if mode == "voxel":
            self.net: nn.Module = nn.Sequential(
                nn.Conv3d(in_channels, hidden, kernel_size=3, padding=1),
                nn.LeakyReLU(0.2),
                nn.Conv3d(hidden, hidden, kernel_size=3, padding=1),
                nn.LeakyReLU(0.2),
                nn.Conv3d(hidden, 1, kernel_size=1),
            )
        else:
            norm = nn.BatchNorm1d(in_channels, affine=False, track_running_stats=False)
            first: list[nn.Module] = [norm] if self.standardize else []
            self.net = nn.Sequential(
                *first,
                nn.Linear(in_channels, hidden),
                nn.LeakyReLU(0.2),
                nn.Linear(hidden, hidden),
                nn.LeakyReLU(0.2),
                nn.Linear(hidden, 1),
            )

    def forward(self, features: Tensor) -> Tensor:
        """Voxel mode: ``(N, 1, *spatial)`` logits; pooled mode: ``(N, 1)`` logits."""
        if self.mode == "pooled":
            features = features.mean(dim=tuple(range(2, features.ndim)))
        return self.net(features)


class OutputDiscriminator3D(nn.Module):
    """ADVENT's fully convolutional 3D domain classifier: "is target" logits ``(N, 1, d, h, w)``.

    Strided 3x3x3 convolutions (stride 2, padding 1) and leaky ReLUs map a side ``s`` to ``ceil(s / 2)`` per
    downsampling, so tiny subtomograms (8^3, 16^3) never shrink to zero voxels; each output logit classifies
    a patch of the input maps.
    """

    def __init__(self, in_channels: int, width: int = 16, downsamplings: int = 3) -> None:
        super().__init__()
        if in_channels < 1 or width < 1 or downsamplings < 1:
            raise ValueError(
                f"need in_channels, width and downsamplings >= 1, got {in_channels}, {width}, {downsamplings}"
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for level in range(downsamplings):
            out = width * 2 ** min(level, 3)
            layers += [nn.Conv3d(channels, out, kernel_size=3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = out
        layers.append(nn.Conv3d(channels, 1, kernel_size=3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, maps: Tensor) -> Tensor:
        if maps.ndim != 5:
            raise ValueError(f"OutputDiscriminator3D expects (N, C, D, H, W) maps, got {tuple(maps.shape)}")
        return self.net(maps)


def self_information(logits: Tensor) -> Tensor:
    """ADVENT's weighted self-information map ``-p log p / log K``, shape ``(N, K, *spatial)``.

    Normalised by ``log K`` so values lie in [0, 1] whatever the number of classes; computed from
    ``log_softmax`` so confident voxels do not produce ``0 * -inf``.
    """
    log_p = torch.log_softmax(logits.float(), dim=1)
    return -log_p.exp() * log_p / math.log(max(logits.shape[1], 2))


def output_maps(logits: Tensor, kind: OutputMap) -> Tensor:
    """What an output-space discriminator sees: the softmax or the self-information maps ``(N, K, ...)``."""
    if kind == "softmax":
        return logits.float().softmax(dim=1)
    if kind == "entropy":
        return self_information(logits)
    raise ValueError(f"output map must be 'entropy' or 'softmax', got {kind!r}")


# -- the loss -------------------------------------------------------------------------------------------
AdversarialForm = Literal["grl", "confusion"]


def _domain_logits(discriminator: Any, source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Source and target logits, from one joint batch when the shapes agree (a standardising head then sees
    joint statistics)."""
    if source.shape[1:] == target.shape[1:]:
        joint = discriminator(torch.cat([source, target]))
        return joint[: source.shape[0]], joint[source.shape[0]:]
    return discriminator(source), discriminator(target)


def _domain_bce(logits_s: Tensor, logits_t: Tensor) -> tuple[Tensor, float]:
    """0.5 (BCE(source, 0) + BCE(target, 1)) and the detached accuracy of the domain logits."""
    loss = 0.5 * (
        F.binary_cross_entropy_with_logits(logits_s.float(), torch.zeros_like(logits_s, dtype=torch.float32))
        + F.binary_cross_entropy_with_logits(logits_t.float(), torch.ones_like(logits_t, dtype=torch.float32))
    )
    with torch.no_grad():
        correct = (logits_s < 0).float().mean() + (logits_t > 0).float().mean()
    return loss, float(correct) / 2.0


def domain_adversarial_loss(
    discriminator: nn.Module, source_features: Tensor, target_features: Tensor, lambd: float
) -> tuple[Tensor, float]:
    """BCE of the discriminator (source = 0, target = 1) behind a gradient-reversal layer of weight ``lambd``.

    Returns ``(loss, accuracy)``; accuracy is the detached fraction of correctly classified domain logits, the
    first thing to look at: an adversary at 0.5 does not discriminate (and, through the reversal, still
    pushes the two domains apart; see the module doc).
    """
    reversed_s, reversed_t = grad_reverse(source_features, lambd), grad_reverse(target_features, lambd)
    return _domain_bce(*_domain_logits(discriminator, reversed_s, reversed_t))


def domain_confusion_loss(
    discriminator: nn.Module, source_features: Tensor, target_features: Tensor, lambd: float
) -> tuple[Tensor, Tensor, float]:
    """Domain confusion: ``(discriminator_bce + lambd * confusion, discriminator_bce, accuracy)``.

    The discriminator learns the domain BCE on *detached* features; the features minimise
    ``BCE(logit, 1/2)`` for both domains, evaluated through a detached copy of the discriminator's weights, so
    neither loss reaches the other's parameters (one backward pass trains both, as with the reversal layer).
    """
    from torch.func import functional_call

    disc, accuracy = _domain_bce(*_domain_logits(discriminator, source_features.detach(),
                                                 target_features.detach()))
    if lambd == 0:
        return disc, disc, accuracy
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}

    def fixed(x: Tensor) -> Tensor:
        return functional_call(discriminator, frozen, (x,))

    logits_s, logits_t = _domain_logits(fixed, source_features, target_features)
    logits = torch.cat([logits_s.flatten(), logits_t.flatten()]).float()
    confusion = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 0.5))
    return disc + lambd * confusion, disc, accuracy


# -- config fields shared by every adversarial method ---------------------------------------------------
def input_field(default: DiscriminatorInput = "pooled") -> Any:
    return help_field(
        default, help="where the discriminator looks: pooled (one tap, deepest by default), taps (one small "
        "head per tap, losses averaged) or output (fully convolutional, on the softmax or entropy maps)")


def taps_field() -> Any:
    return help_field((), help="taps read when discriminator_input = 'taps'; () = the backbone's tap_names")


def output_map_field() -> Any:
    return help_field("entropy", help="output-space input: entropy (ADVENT's self-information) or softmax")


def lr_scale_field(default: float = 10.0) -> Any:
    return help_field(
        default, help="discriminator learning rate / trainer.lr (its own optimiser group); 10 [I] after the "
        "DANN practice of a 10x rate for layers trained from scratch; 1 = the original single rate",
        validator=positive)


def warmup_field(default: int = 0) -> Any:
    return help_field(
        default, help="first steps in which the discriminator trains on detached inputs with the adversarial "
        "weight at 0, so it leaves chance before it pushes back", validator=non_negative)


def standardize_field(default: bool = True) -> Any:
    return help_field(
        default, help="pooled heads standardise their input over the joint source+target batch "
        "(parameter-free) so the small pooled features do not stall them [I, measured]; false = the original "
        "head")


def hidden_field(default: int = 32) -> Any:
    return help_field(default, help="hidden width of each discriminator head [I]", validator=at_least_one)


def form_field(default: AdversarialForm) -> Any:
    return help_field(
        default, help="grl: features follow the reversed discriminator gradient (Ganin and Lempitsky); "
        "confusion: features are trained towards a confused discriminator, 1/2 for both domains "
        "(Tzeng et al. 2015)")


@attrs.frozen
class AdversarySettings:
    """Everything :class:`DomainAdversary` needs, gathered from a method's config fields."""

    input: DiscriminatorInput = "pooled"
    tap: str = ""
    taps: tuple[str, ...] = ()
    mode: DiscriminatorMode = "pooled"
    hidden: int = 32
    standardize: bool = True
    form: AdversarialForm = "grl"
    output_map: OutputMap = "entropy"
    warmup_steps: int = 0
    lr_scale: float = 10.0
    schedule: Literal["dann", "constant"] = "dann"
    max_weight: float = 1.0
    gamma: float = 10.0
    tap_key: str = "method.tap"
    taps_key: str = "method.discriminator_taps"


@attrs.frozen
class AdversaryStep:
    """One step of the adversary: the loss to add, the discriminator's own BCE, and what to log."""

    loss: Tensor
    domain_loss: float
    accuracy: float
    weight: float
    warming_up: bool
    per_head_accuracy: dict[str, float]

    def metrics(self) -> dict[str, float]:
        """``grl_lambda``, ``domain_accuracy``, ``domain_loss`` and, with several heads, each's accuracy."""
        out = {"grl_lambda": self.weight, "domain_accuracy": self.accuracy, "domain_loss": self.domain_loss}
        if len(self.per_head_accuracy) > 1:
            out.update({f"domain_accuracy_{name}": acc for name, acc in self.per_head_accuracy.items()})
        return out


class DomainAdversary(nn.Module):
    """The discriminator heads of an adversarial method, what they read and the reversal-weight schedule."""

    def __init__(self, backbone: Backbone3D, settings: AdversarySettings, num_classes: int) -> None:
        super().__init__()
        from voxuda.errors import ConfigError

        self.settings = settings
        self.total_steps = 1
        heads: dict[str, nn.Module] = {}
        if settings.input == "output":
            heads["output"] = OutputDiscriminator3D(num_classes, width=settings.hidden)
        elif settings.input in ("pooled", "taps"):
            if settings.input == "pooled":
                taps: tuple[str, ...] = (resolve_tap(backbone, settings.tap, settings.tap_key),)
            else:
                taps = resolve_taps(backbone, tuple(settings.taps), settings.taps_key)
            for tap in taps:
                channels = tap_channels(backbone, tap)
                heads[tap] = DomainDiscriminator3D(channels, hidden=settings.hidden, mode=settings.mode,
                                                   standardize=settings.standardize)
        else:
            raise ConfigError(f"method.discriminator_input: {settings.input!r} is not pooled, taps or output")
        self.heads = nn.ModuleDict(heads)

    @property
    def taps(self) -> tuple[str, ...]:
        """The backbone taps the heads read (empty for the output-space discriminator)."""
        return () if self.settings.input == "output" else tuple(self.heads.keys())

    def weight(self, step: int) -> float:
        """Gradient-reversal weight at ``step``: 0 during warm-up, then the schedule (restarted after it)."""
        s = self.settings
        return adversarial_weight(step, self.total_steps, warmup_steps=s.warmup_steps,
                                  max_weight=s.max_weight, gamma=s.gamma, schedule=s.schedule)

    def forward(self, source_logits: Tensor, source_features: dict[str, Tensor], target_logits: Tensor,
                target_features: dict[str, Tensor], step: int) -> AdversaryStep:
        """The adversarial loss of one step (mean over heads) with its accuracy and reversal weight."""
        warming_up = step < self.settings.warmup_steps
        lambd = self.weight(step)
        if self.settings.input == "output":
            inputs = {"output": (output_maps(source_logits, self.settings.output_map),
                                 output_maps(target_logits, self.settings.output_map))}
        else:
            inputs = {tap: (source_features[tap], target_features[tap]) for tap in self.heads}
        losses, bces, accuracies = [], [], {}
        for name, (source, target) in inputs.items():
            if warming_up:  # the discriminator learns alone: no gradient reaches the backbone
                source, target = source.detach(), target.detach()
            if self.settings.form == "confusion":
                loss, bce, accuracy = domain_confusion_loss(self.heads[name], source, target, lambd)
            else:
                loss, accuracy = domain_adversarial_loss(self.heads[name], source, target, lambd)
                bce = loss
            losses.append(loss)
            bces.append(float(bce.detach()))
            accuracies[name] = accuracy
        total = torch.stack(losses).mean()
        return AdversaryStep(loss=total, domain_loss=sum(bces) / len(bces),
                             accuracy=sum(accuracies.values()) / len(accuracies), weight=lambd,
                             warming_up=warming_up, per_head_accuracy=accuracies)


__all__ = ["AdversarialForm", "AdversarySettings", "AdversaryStep", "DiscriminatorInput", "DiscriminatorMode",
           "DomainAdversary", "DomainDiscriminator3D", "OutputDiscriminator3D", "OutputMap",
           "domain_adversarial_loss", "domain_confusion_loss", "output_maps", "self_information"]
