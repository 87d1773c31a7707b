"""Op backends come from the plugin registry alone: ranked by the registered priority, probed through the
registered probe, built once per registry load, and resolved once per denoiser."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

import voxuda.ops as ops
import voxuda.ops.backends as backends
from voxuda.cli import main
from voxuda.denoisers import ImprovedBilateralDenoiser
from voxuda.errors import PluginError
from voxuda.ops.backends.torch_backend import TorchBackend

HERE = "tests.ops.test_backend_registry"
BEST_CPU = "numba" if importlib.util.find_spec("numba") else "torch"
PROBES = {"calls": 0}


class RecordingBackend(TorchBackend):
    """The torch filter, counting its calls.  The class claims priority 1: only the registration counts."""

    name = "recording"
    priority = 1

    def __init__(self) -> None:
        self.calls = 0

    def bilateral3d(self, x, guide, params):
        self.calls += 1
        return super().bilateral3d(x, guide, params)


class Unranked(TorchBackend):
    """A backend class with no ``priority`` (nor ``name``) of its own."""

    name = None  # type: ignore[assignment]


def counting_probe() -> tuple[bool, str]:
    PROBES["calls"] += 1
    return True, "counted"


def raising_probe() -> tuple[bool, str]:
    raise RuntimeError("driver exploded")


def broken_factory() -> None:
    raise RuntimeError("cannot start")


def not_a_backend() -> object:
    return object()


def _filter(x: torch.Tensor, backend: str | ops.BackendChoice = "auto") -> torch.Tensor:
    return ops.bilateral3d(x, radius=1, sigma_spatial=1.0, sigma_range=1.0, backend=backend)


def test_higher_registered_priority_wins_whatever_the_class_says(op_plugin):
    op_plugin("fastplug", recording=dict(factory=f"{HERE}:RecordingBackend", priority=200))
    rows = {s.name: s for s in ops.available_backends()}
    assert rows["recording"].priority == 200 and rows["recording"].source == "fastplug"
    assert [s.name for s in ops.available_backends()][0] == "recording"
    choice = ops.BackendChoice()
    _filter(torch.randn(1, 1, 4, 4, 4), choice)
    assert choice.name == "recording"
    assert ops.resolve_backend("recording").backend.calls == 1


def test_lower_registered_priority_loses_whatever_the_class_says(op_plugin):
    op_plugin("slowplug", unranked=dict(factory=f"{HERE}:Unranked", priority=5))
    choice = ops.BackendChoice()
    _filter(torch.randn(1, 1, 4, 4, 4), choice)
    assert choice.name == BEST_CPU
    assert ops.resolve_backend("unranked").name == "unranked"  # still usable by name
    assert [s.name for s in ops.available_backends()][-1] == "unranked"


def test_voxuda_plugins_shows_the_priority_auto_ranks_by(op_plugin, capsys):
    op_plugin("fastplug", recording=dict(factory=f"{HERE}:RecordingBackend", priority=200))
    assert main(["plugins", "--json", "--kind", "op"]) == 0
    listed = {c["qualified_name"]: c for c in json.loads(capsys.readouterr().out)["components"]}
    for status in ops.available_backends():
        entry = listed[status.qualified_name]
        assert (entry["priority"], entry["available"]) == (status.priority, status.available)
    assert listed["fastplug:recording"]["priority"] == 200
    assert main(["plugins", "--kind", "op"]) == 0
    assert "[priority 200; available]" in capsys.readouterr().out


def test_a_backend_that_declines_the_inputs_passes_auto_to_the_next(op_plugin):
    op_plugin("fastplug", recording=dict(factory=f"{HERE}:RecordingBackend", priority=200))
    b = ops.resolve_backend("recording").backend
    b.supports = lambda x, g, p: (False, "declines")  # type: ignore[method-assign]
    choice = ops.BackendChoice()
    _filter(torch.randn(1, 1, 4, 4, 4), choice)
    assert choice.name == BEST_CPU and b.calls == 0
    with pytest.raises(ValueError, match="backend 'recording' cannot filter these inputs: declines"):
        _filter(torch.randn(1, 1, 4, 4, 4), "recording")


def test_the_table_is_probed_and_built_once_per_registry_load(op_plugin):
    op_plugin("countplug", counted=dict(factory=f"{HERE}:RecordingBackend", priority=200,
                                        probe=f"{HERE}:counting_probe"))
    PROBES["calls"] = 0
    first = ops.resolve_backend("counted").backend
    for _ in range(3):
        _filter(torch.randn(1, 1, 4, 4, 4))
        ops.available_backends()
    assert PROBES["calls"] == 1
    assert ops.resolve_backend("counted").backend is first and first.calls == 3
    op_plugin("other", unranked=dict(factory=f"{HERE}:Unranked"))  # add_plugin reloads the registry
    assert ops.resolve_backend("counted").backend is not first
    assert PROBES["calls"] == 2


def test_a_failing_probe_is_an_unavailable_row_not_an_exception(op_plugin):
    op_plugin("badprobe", flaky=dict(factory=f"{HERE}:RecordingBackend", priority=200,
                                     probe=f"{HERE}:raising_probe"))
    row = {s.name: s for s in ops.available_backends()}["flaky"]
    assert not row.available and row.reason == "probe failed: driver exploded"
    choice = ops.BackendChoice()
    _filter(torch.randn(1, 1, 4, 4, 4), choice)
    assert choice.name == BEST_CPU
    with pytest.raises(ValueError, match="backend 'flaky' is not available: probe failed: driver exploded"):
        _filter(torch.randn(1, 1, 4, 4, 4), "flaky")


@pytest.mark.parametrize(
    "factory,match",
    [
        ("broken_factory", r"op backend 'brokenplug:broken' .*broken_factory\(\) failed: RuntimeError"),
        ("not_a_backend", r"op 'broken' \(plugin 'brokenplug'.*built a 'object' that does not satisfy "
                          r"OpBackend: missing supports, bilateral3d$"),
        ("missing", r"factory of op 'brokenplug:broken'.*has no attribute 'missing'"),
    ],
)
def test_a_broken_backend_is_a_clear_error_naming_its_plugin(op_plugin, factory, match):
    op_plugin("brokenplug", broken=dict(factory=f"{HERE}:{factory}", priority=200))
    with pytest.raises(PluginError, match=match):
        _filter(torch.randn(1, 1, 4, 4, 4))


def test_a_registry_that_fails_to_load_is_not_hidden(op_plugin, monkeypatch):
    monkeypatch.setenv("VOXUDA_STRICT_PLUGINS", "1")
    op_plugin("strictplug", BadName=dict(factory=f"{HERE}:RecordingBackend"))
    with pytest.raises(PluginError, match="strictplug.*must be lowercase snake_case"):
        ops.available_backends()


def test_an_unknown_backend_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"backend 'nope' is unknown; known: \['cupy', 'numba', 'torch'\]"):
        ops.BackendChoice("nope")


def test_a_denoiser_resolves_its_backend_once_not_per_call(monkeypatch):
    calls = []
    resolve = backends.resolve_backend

    def counting(*args, **kwargs):
        calls.append(args[0])
        return resolve(*args, **kwargs)

    monkeypatch.setattr(backends, "resolve_backend", counting)
    den = ImprovedBilateralDenoiser()
    assert den.op_backend is None  # "auto" waits for the first input's device and dtype
    for _ in range(4):
        den(torch.randn(2, 1, 6, 6, 6))
    assert calls == ["auto"] and den.op_backend == BEST_CPU
    den(torch.randn(2, 1, 6, 6, 6, dtype=torch.float64))  # another kind of input: resolved once more
    den(torch.randn(3, 1, 6, 6, 6, dtype=torch.float64))  # the batch size is not part of the kind
    assert calls == ["auto", "auto"]


def test_a_named_backend_is_resolved_when_the_denoiser_is_built():
    from voxuda.denoisers import ImprovedBilateralDenoiserConfig

    den = ImprovedBilateralDenoiser(ImprovedBilateralDenoiserConfig(backend="torch"))
    assert den.op_backend == "torch"
    with pytest.raises(ValueError, match="backend 'nope' is unknown"):
        ImprovedBilateralDenoiser(ImprovedBilateralDenoiserConfig(backend="nope"))
