"""What a plugin may import from voxuda: the plugin-author surface, in one module.

Why one module: a plugin that imports voxuda's internals (a private helper of a sibling method, a module path
that a refactor moves) breaks when voxuda changes how it is built inside. Everything a plugin needs is
re-exported here, and voxuda keeps these names working; a plugin's test-suite checks it imports nothing else
(``tests/foundation/test_plugin_api.py`` does so for the plugins in this repository).

The rest of the surface is deliberately light and lives where plugin discovery needs it:

- ``from voxuda import hookimpl`` and ``from voxuda.hookspecs import RegisterFn`` in the plugin's
  ``__init__`` (which must not import torch: plugins are discovered on every command);
- :mod:`voxuda.testing` in the plugin's tests (train a component through the real engine on tiny volumes).

Importing this module imports torch (methods, losses and discriminators are torch code); component modules
import it, and they are loaded only when a component is built. docs/plugins.md lists what each name is for.
"""

from __future__ import annotations

from voxuda.backbones.blocks import LogitsOnly
from voxuda.backbones.taps import resolve_tap, resolve_taps, tap_channels
from voxuda.checks import (
    at_least_one,
    each_non_negative,
    fraction_below_one,
    non_negative,
    non_negative_int,
    non_negative_or_none,
    one_of,
    positive,
    positive_or_none,
    unit_interval,
    widths,
)
from voxuda.config import ComponentRef, component_ref, help_field, ref_field
from voxuda.errors import ConfigError, PluginError, VoxudaError
from voxuda.methods.augment import FlipRot3D, apply_batch, sample_batch_transforms
from voxuda.methods.base import Method, SourceBatch, StepOutput, TargetBatch, TrainContext
from voxuda.methods.discriminator import (
    DomainAdversary,
    OutputDiscriminator3D,
    domain_adversarial_loss,
    self_information,
)
from voxuda.methods.ema import ema_update, make_ema_teacher
from voxuda.methods.grl import GradientReversal, grad_reverse
from voxuda.methods.losses import confidence_mask, masked_cross_entropy, segmentation_loss, soft_dice_loss
from voxuda.methods.pseudo_labels import PseudoLabelConfig, PseudoLabelSelector, selection_metrics
from voxuda.methods.segmentation import BaseMethodConfig, SegmentationMethod
from voxuda.methods.terms import AdversarialTerm, ConsistencyTerm, SelfTrainingTerm, TermLogs, attach, frozen
from voxuda.plugins import resolve
from voxuda.protocols import Backbone3D, Denoiser, NoiseModel, OpBackend

__all__ = [
    "AdversarialTerm",
    "Backbone3D",
    "BaseMethodConfig",
    "ComponentRef",
    "ConfigError",
    "ConsistencyTerm",
    "Denoiser",
    "DomainAdversary",
    "FlipRot3D",
    "GradientReversal",
    "LogitsOnly",
    "Method",
    "NoiseModel",
    "OpBackend",
    "OutputDiscriminator3D",
    "PluginError",
    "PseudoLabelConfig",
    "PseudoLabelSelector",
    "SegmentationMethod",
    "SelfTrainingTerm",
    "SourceBatch",
    "StepOutput",
    "TargetBatch",
    "TermLogs",
    "TrainContext",
    "VoxudaError",
    "apply_batch",
    "at_least_one",
    "attach",
    "component_ref",
    "confidence_mask",
    "domain_adversarial_loss",
    "each_non_negative",
    "ema_update",
    "fraction_below_one",
    "frozen",
    "grad_reverse",
    "help_field",
    "make_ema_teacher",
    "masked_cross_entropy",
    "non_negative",
    "non_negative_int",
    "non_negative_or_none",
    "one_of",
    "positive",
    "positive_or_none",
    "ref_field",
    "resolve",
    "resolve_tap",
    "resolve_taps",
    "sample_batch_transforms",
    "segmentation_loss",
    "selection_metrics",
    "self_information",
    "soft_dice_loss",
    "tap_channels",
    "unit_interval",
    "widths",
]
