"""Every registered backbone, denoiser, noise model and op backend (plugins included) against its protocol in
voxuda.protocols, with a behavioural check each; and the error a plugin component gets when it misses one."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

import voxuda
from tests.foundation.conftest import make_plugin
from tests.methods.helpers import load_or_skip
from tests.methods.test_backbones import small_params
from voxuda import plugins
from voxuda.api import build_component
from voxuda.errors import PluginError
from voxuda.hookspecs import RegisterFn
from voxuda.ops.backends.base import FilterParams
from voxuda.protocols import (
    KIND_PROTOCOLS,
    Backbone3D,
    Denoiser,
    MeasuresSource,
    NoiseModel,
    OpBackend,
    RecordsOpBackend,
    missing_members,
)
from voxuda.registry import ComponentSpec

HERE = "tests.foundation.test_protocols"


def _names(kind: str) -> list[str]:
    return [spec.qualified_name for spec in voxuda.list_components(kind)]


def _spec(kind: str, name: str) -> ComponentSpec:
    return next(s for s in voxuda.list_components(kind) if s.qualified_name == name)


@pytest.mark.parametrize("name", _names("backbone"))
def test_every_backbone_satisfies_backbone3d(name: str) -> None:
    _, config_cls = load_or_skip(_spec("backbone", name))
    net = build_component("backbone", {"name": name, **small_params(name, config_cls)})
    assert isinstance(net, Backbone3D) and isinstance(net, nn.Module)
    size = net.divisor * -(-16 // net.divisor)  # the smallest multiple of the divisor from 16 up
    logits, features = net(torch.randn(2, 1, size, size, size))
    assert logits.shape == (2, 2, size, size, size)
    assert set(net.tap_names) <= set(features) and net.deepest_tap in features
    for tap, channels in net.tap_channels.items():  # the declared widths are what forward returns
        assert features[tap].shape[:2] == (2, channels), tap
    if net.divisor > 1:  # a size that is not a multiple is refused (with divisor 1, every size is one)
        with pytest.raises(ValueError, match="multiples of"):
            net(torch.randn(1, 1, size + 1, size + 1, size + 1))


@pytest.mark.parametrize("name", _names("denoiser"))
def test_every_denoiser_satisfies_denoiser(name: str) -> None:
    load_or_skip(_spec("denoiser", name))
    denoiser = build_component("denoiser", name)
    assert isinstance(denoiser, Denoiser)
    x = torch.randn(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = denoiser(x)
    assert isinstance(out, Tensor) and out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    if isinstance(denoiser, RecordsOpBackend) and denoiser.op_backend is not None:
        assert denoiser.op_backend in {spec.name for spec in voxuda.list_components("op")}


@pytest.mark.parametrize("name", _names("noise_model"))
def test_every_noise_model_satisfies_noise_model(name: str) -> None:
    load_or_skip(_spec("noise_model", name))
    model = build_component("noise_model", name)
    assert isinstance(model, NoiseModel)
    rng = torch.Generator().manual_seed(0)
    target = torch.randn(max(model.n_fit_samples, 2), 1, 16, 16, 16, generator=rng)
    model.fit(target)
    if isinstance(model, MeasuresSource):  # as Vox-UDA does before the first call
        model.measure_source(torch.randn(2, 1, 16, 16, 16, generator=rng))
    assert model.fitted
    x = torch.randn(2, 1, 16, 16, 16, generator=rng)
    noisy = model(x, torch.Generator().manual_seed(1))
    assert noisy.shape == x.shape and torch.isfinite(noisy).all()
    json.dumps(model.state())  # JSON-ready, as run.json needs
    restored = build_component("noise_model", name)  # the fitted statistics survive a checkpoint
    restored.load_state_dict(model.state_dict())
    torch.testing.assert_close(restored(x, torch.Generator().manual_seed(1)), noisy)


@pytest.mark.parametrize("name", _names("op"))
def test_every_available_op_backend_satisfies_op_backend(name: str) -> None:
    available, reason = _spec("op", name).is_available()
    if not available:
        pytest.skip(f"op backend {name} not available here: {reason}")
    backend = build_component("op", name)
    assert isinstance(backend, OpBackend)
    params = FilterParams(radius=1, sigma_spatial=1.0, sigma_range=0.5)
    x = torch.full((1, 1, 6, 6, 6), 3.0)  # a flat volume: every weighted mean of it is 3
    guide = torch.randn(1, 1, 6, 6, 6, generator=torch.Generator().manual_seed(0))
    supported, why = backend.supports(x, guide, params)
    if not supported:
        pytest.skip(f"op backend {name} declines CPU float32 input: {why}")
    out = backend.bilateral3d(x, guide, params)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x)


def test_every_kind_with_a_protocol_is_a_kind_the_registry_knows() -> None:
    from voxuda.registry import KINDS

    assert set(KIND_PROTOCOLS) <= set(KINDS)


# -- a plugin component that misses its protocol ------------------------------------------------------------
class TaplessNet(nn.Module):
    """A network with the right forward but none of the declared taps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.conv(x), {}


class UndeclaredTapNet(TaplessNet):
    """Names a tap whose channels it does not declare (callers could not size a discriminator for it)."""

    tap_names = ("a", "b")
    tap_channels = {"a": 2}
    deepest_tap = "b"
    divisor = 1


class NotCallable:
    op_backend = None


@pytest.fixture
def bad_plugin():
    """Register components of one kind through a hand-added plugin ``badplug``, the way a third-party
    package would, and take it back afterwards."""
    added: list[str] = []

    def add(hook: str, **factories: str) -> None:
        def register_all(register: RegisterFn) -> None:
            for name, factory in factories.items():
                register(name, factory=factory)

        plugins.add_plugin(make_plugin("badplug", **{hook: register_all}), "badplug")
        added.append("badplug")

    yield add
    for name in added:
        plugins.remove_plugin(name)


@pytest.mark.parametrize(
    ("hook", "kind", "factory", "match"),
    [
        ("voxuda_register_backbones", "backbone", "TaplessNet",
         r"^backbone 'bad' \(plugin 'badplug', distribution none, factory .*:TaplessNet\) built a "
         r"'TaplessNet' that does not satisfy Backbone3D: missing tap_names, tap_channels, deepest_tap, "
         r"divisor$"),
        ("voxuda_register_backbones", "backbone", "UndeclaredTapNet",
         r"does not satisfy Backbone3D: tap_channels lacks b$"),
        ("voxuda_register_denoisers", "denoiser", "NotCallable",
         r"^denoiser 'bad' \(plugin 'badplug'.* does not satisfy Denoiser: missing __call__$"),
        ("voxuda_register_noise_models", "noise_model", "TaplessNet",  # an nn.Module: has the state_dicts
         r"does not satisfy NoiseModel: missing needs_target, n_fit_samples, refit_every, fitted, fit, "
         r"state$"),
    ],
    ids=["backbone-without-taps", "backbone-with-an-undeclared-tap", "denoiser-not-callable",
         "noise-model-without-fit"],
)
def test_a_plugin_component_missing_its_protocol_is_a_clear_error(bad_plugin, hook, kind, factory, match):
    bad_plugin(hook, bad=f"{HERE}:{factory}")
    with pytest.raises(PluginError, match=match):
        build_component(kind, "badplug:bad")


def test_missing_members_requires_methods_to_be_callable() -> None:
    class DataNotMethod:
        supports = True  # present, but not callable

        def bilateral3d(self, x: Tensor, guide: Tensor, params: FilterParams) -> Tensor:
            return x

    assert missing_members(DataNotMethod(), OpBackend) == ["supports"]
