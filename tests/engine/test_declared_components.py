"""A config field holding a component is checked and recorded by its declared kind, whatever its name.

The method below names its denoiser ``teacher_filter``: neither "denoiser" nor "noise" nor "backbone" is in
the name, so a check or a record that guessed the kind from the name would skip it.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import torch

from voxuda import hookimpl, plugins
from voxuda.config import ComponentRef, load_toml, ref_field
from voxuda.engine.run_config import run_config_from_dict
from voxuda.engine.trainer import train
from voxuda.errors import ConfigError
from voxuda.methods.base import SourceBatch, StepOutput, TargetBatch
from voxuda.methods.segmentation import BaseMethodConfig, SegmentationMethod
from voxuda.testing import tiny_run_data


@attrs.define
class FilteredSourceConfig(BaseMethodConfig):
    """Source-only training on filtered source volumes."""

    teacher_filter: ComponentRef = ref_field(
        "gaussian", kind="denoiser", help="filter in front of the student (its name does not say 'denoiser')")


class FilteredSource(SegmentationMethod):
    """The student is trained on ``teacher_filter(source)``."""

    config: FilteredSourceConfig

    def __init__(self, config: FilteredSourceConfig) -> None:
        super().__init__(config)
        self.teacher_filter = self.build_sub("teacher_filter")

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        logits, _ = self.student(self.teacher_filter(source.volume))
        loss, parts = self.seg_loss(logits, source.label)
        return StepOutput(loss=loss, losses={"seg": float(loss.detach()), **parts})


@pytest.fixture
def filtered_source(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Register ``filtered_source`` as a plugin method for one test."""

    def voxuda_register_methods(register):  # type: ignore[no-untyped-def]
        register("filtered_source", factory=f"{__name__}:FilteredSource",
                 config=f"{__name__}:FilteredSourceConfig")

    plugin = types.SimpleNamespace(voxuda_register_methods=hookimpl(voxuda_register_methods))
    monkeypatch.setattr(plugins, "_extra_plugins", [*plugins._extra_plugins, ("declared_test", plugin)])
    plugins.reset()
    yield
    plugins.reset()


def _run_dict(method: dict[str, object], root: Path, **evaluation: object) -> dict[str, object]:
    return {
        "method": {"name": "filtered_source", "backbone": {"name": "unet3d", "widths": [4, 8]}, **method},
        "data": {"root": str(root), "box": 8},
        "trainer": {"steps": 1, "batch_size": 2, "progress": False, "num_threads": 1},
        "evaluation": {"batch_size": 2, "split": "", **evaluation},
    }


@pytest.mark.parametrize(
    ("teacher_filter", "message"),
    [
        ("gausian", "method.teacher_filter: unknown denoiser 'gausian'; did you mean 'gaussian'?"),
        ("ngm", "method.teacher_filter: unknown denoiser 'ngm'"),  # a noise model: the kind is checked too
        ({"name": "gaussian", "sigmaa": 1.0},
         "method.teacher_filter: denoiser 'gaussian': unknown key 'sigmaa'"),
    ],
)
def test_a_component_field_is_checked_whatever_its_name(
    filtered_source: None, tmp_path: Path, teacher_filter: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        run_config_from_dict(_run_dict({"teacher_filter": teacher_filter}, tmp_path))


def test_a_validators_component_is_checked_before_the_run(tmp_path: Path) -> None:
    validator = {"name": "target_agreement", "view": "denoised", "denoiser": "gausian"}
    with pytest.raises(ConfigError, match="evaluation.validator.denoiser: unknown denoiser 'gausian'"):
        run_config_from_dict({"data": {"root": str(tmp_path)}, "evaluation": {"validator": validator}})


def test_a_component_field_is_recorded_whatever_its_name(filtered_source: None, tmp_path: Path) -> None:
    smoothing = {"name": "gaussian", "sigma": 2.0}
    validator = {"name": "target_agreement", "view": "denoised", "denoiser": smoothing}
    config = run_config_from_dict(
        _run_dict({"teacher_filter": {"name": "gaussian", "sigma": 0.5}}, tmp_path / "no_dataset",
                  validator=validator))
    out = tmp_path / "run"
    train(config, out, data=tiny_run_data(8))

    resolved = load_toml(out / "config.toml")
    assert resolved["method"]["teacher_filter"] == {"name": "gaussian", "sigma": 0.5, "truncate": 3.0}
    assert resolved["evaluation"]["validator"]["denoiser"] == {**smoothing, "truncate": 3.0}

    components = json.loads((out / "run.json").read_text(encoding="utf-8"))["components"]
    assert components["teacher_filter"]["kind"] == "denoiser"
    assert components["teacher_filter"]["config"] == {"name": "gaussian", "sigma": 0.5, "truncate": 3.0}
    assert components["validator.denoiser"]["config"]["sigma"] == 2.0  # the validator's own sub-component
    assert components["backbone"]["config"]["widths"] == [4, 8]


def test_build_sub_records_what_it_built_and_refuses_undeclared_fields(filtered_source: None) -> None:
    from voxuda.api import build_method

    method = build_method({"name": "filtered_source", "in_channels": 2, "teacher_filter": "identity"})
    records = method.components()
    assert set(records) == {"backbone", "teacher_filter"}
    assert records["teacher_filter"]["config"] == {"name": "identity"}
    assert records["backbone"]["config"]["in_channels"] == 2  # the parameters build_sub added
    with pytest.raises(LookupError, match="no set component field 'noise'.*backbone, teacher_filter"):
        method.build_sub("noise")
    frozen = method.build_sub("backbone", frozen=True)
    assert isinstance(frozen, torch.nn.Module)
    assert not any(p.requires_grad for p in frozen.parameters())
