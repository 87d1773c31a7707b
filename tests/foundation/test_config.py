"""Config structuring, overrides and errors."""

from __future__ import annotations

from typing import Literal

import attrs
import pytest

from voxuda.config import (
    ComponentRef,
    apply_overrides,
    component_fields,
    component_overrides,
    dump_toml,
    load_toml,
    parse_override,
    ref_field,
    structure,
    unstructure,
)
from voxuda.errors import ConfigError, PluginError


@attrs.define(kw_only=True)
class Inner:
    sigma: float = 1.0


@attrs.define(kw_only=True)
class Outer:
    steps: int = 10
    taps: tuple[float, ...] = (0.2, 0.2, 0.3, 0.3)
    mode: Literal["cosine", "mse"] = "cosine"
    inner: Inner = attrs.field(factory=Inner)
    denoiser: ComponentRef = ref_field("identity", kind="denoiser", help="teacher input denoiser")
    note: str | None = None


def test_structure_coerces_and_nests():
    cfg = structure(
        Outer,
        {
            "steps": 5,
            "taps": [0.1, 0.1, 0.4, 0.4],
            "inner": {"sigma": 2},
            "denoiser": {"name": "gaussian", "sigma": 1.5},
        },
    )
    assert cfg.steps == 5 and cfg.taps == (0.1, 0.1, 0.4, 0.4)
    assert cfg.inner.sigma == 2.0 and isinstance(cfg.inner.sigma, float)
    assert cfg.denoiser == ComponentRef("gaussian", {"sigma": 1.5})


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"method: unknown key 'stpes'; did you mean 'steps'\?"):
        structure(Outer, {"stpes": 3}, where="method")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": "ten"}, "cfg.steps: expected an integer"),
        ({"steps": True}, "cfg.steps: expected an integer"),
        ({"mode": "l1"}, "cfg.mode: 'l1' is not one of 'cosine', 'mse'"),
        ({"taps": 0.2}, "cfg.taps: expected a list"),
        ({"inner": {"sigma": "x"}}, "cfg.inner.sigma: expected a number"),
        ({"denoiser": {"sigma": 1}}, "needs a 'name' key"),
    ],
)
def test_wrong_types_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        structure(Outer, data, where="cfg")


def test_overrides_parse_as_toml_not_python():
    assert parse_override("method.ema_momentum=0.99") == (["method", "ema_momentum"], 0.99)
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a.b=true") == (["a", "b"], True)
    # not TOML: kept as a string, never evaluated
    assert parse_override("a.b=__import__('os')") == (["a", "b"], "__import__('os')")
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_apply_overrides_turns_component_name_into_table():
    data = {"method": {"name": "vox_uda", "noise": "ngm"}}
    out = apply_overrides(data, ["method.noise.n_samples=5", "method.ema_momentum=0.99"])
    assert out["method"]["noise"] == {"name": "ngm", "n_samples": 5}
    assert out["method"]["ema_momentum"] == 0.99
    assert data["method"]["noise"] == "ngm"  # input untouched


def test_round_trip_through_toml(tmp_path):
    cfg = structure(Outer, {"denoiser": {"name": "gaussian", "sigma": 1.0}})
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(unstructure(cfg)))
    assert structure(Outer, load_toml(path)) == cfg


def test_missing_and_broken_toml_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: config file not found"):
        load_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("a = [1,\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_toml(bad)


def test_shared_checks_reject_nan_and_out_of_range_values() -> None:
    """voxuda.checks: the validators every config uses; NaN compares false both ways and must not pass."""
    import types

    from voxuda.checks import at_least_one, non_negative, positive, unit_interval

    field = types.SimpleNamespace(name="lr")
    for check, good, bad, words in (
        (non_negative, (0.0, 2.5), (-1e-9, float("nan")), "must not be negative"),
        (positive, (1e-12, 3), (0.0, -1, float("nan")), "must be positive"),
        (at_least_one, (1, 7), (0, float("nan")), "must be at least 1"),
        (unit_interval, (0.0, 0.5, 1.0), (-0.1, 1.01, float("nan")), r"must lie in \[0, 1\]"),
    ):
        for value in good:
            check(None, field, value)
        for value in bad:
            with pytest.raises(ValueError, match=f"lr {words}"):
                check(None, field, value)
    from voxuda.engine.run_config import TrainerConfig

    with pytest.raises(ValueError, match="lr must be positive"):
        TrainerConfig(lr=float("nan"))


def test_shared_checks_for_optional_values_ints_fractions_sequences_and_choices() -> None:
    """The validators that replaced per-module copies (noise, denoisers, backbones) keep their rules."""
    import types

    import numpy as np

    from voxuda.checks import (
        each_non_negative,
        fraction_below_one,
        non_negative_int,
        non_negative_or_none,
        one_of,
        positive,
        positive_or_none,
        widths,
    )

    field = types.SimpleNamespace(name="x")
    for check, good, bad in (
        (positive_or_none, (None, 0.5), (0.0, -1.0, float("nan"))),
        (non_negative_or_none, (None, 0, 3), (-1, float("nan"))),
        (non_negative_int, (0, 4, np.int64(2)), (-1, 1.5, True, "2")),
        (fraction_below_one, (0.0, 0.244), (1.0, -0.1, float("nan"))),
        (each_non_negative, ((0.2, 0.3), ()), ((0.1, -0.1), (float("nan"),))),
        (widths, ((8, 16), (8, 16, 32)), ((8,), (8, 0))),
        (one_of("source", "target"), ("source", "target"), ("Source", None)),
        (positive, (1, 2.5, np.float32(0.1)), (True, "1", float("inf"))),
    ):
        for value in good:
            check(None, field, value)
        for value in bad:
            with pytest.raises(ValueError, match="^x "):
                check(None, field, value)


def test_a_component_field_must_declare_its_kind() -> None:
    with pytest.raises(TypeError, match="kind"):
        ref_field("identity", help="no kind")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="'denoisr' is not a component kind"):
        ref_field("identity", kind="denoisr", help="misspelt kind")


@attrs.define(kw_only=True)
class Section:
    filter: ComponentRef = ref_field("gaussian", kind="denoiser", help="a denoiser")
    regulariser: ComponentRef | None = ref_field(None, kind="noise_model", help="optional")


@attrs.define(kw_only=True)
class Whole:
    method: ComponentRef = ref_field("source_only", kind="method", help="the method", ce_weight=0.5)
    section: Section = attrs.field(factory=Section)
    steps: int = 3


def test_component_fields_walk_declared_kinds_and_nested_tables() -> None:
    found = component_fields(Whole())
    assert found == [
        ("method", "method", ComponentRef("source_only", {"ce_weight": 0.5})),
        ("section.filter", "denoiser", ComponentRef("gaussian")),
    ]  # the unset optional ref is left out; a set one is found
    found = component_fields(Whole(section=Section(regulariser="ngm")))  # type: ignore[arg-type]
    assert found[-1] == ("section.regulariser", "noise_model", ComponentRef("ngm"))
    assert component_fields(ComponentRef("x")) == [] and component_fields({"a": 1}) == []


def test_a_component_field_without_a_declared_kind_is_refused() -> None:
    @attrs.define
    class HandWritten:
        teacher_filter: ComponentRef = attrs.field(default=ComponentRef("gaussian"))

    with pytest.raises(PluginError, match="HandWritten.teacher_filter holds a component but declares no"):
        component_fields(HandWritten())


def test_component_overrides_split_set_items_by_component() -> None:
    items = ["input_denoiser.sigma=2", "alignment.order=1", "input_denoiser.name=gaussian"]
    assert component_overrides(items, ("input_denoiser", "alignment"), "segment") == {
        "input_denoiser": {"sigma": 2, "name": "gaussian"}, "alignment": {"order": 1}}
    for item in ("method.lr=1", "input_denoiser=2", "alignment.order=1"):
        with pytest.raises(ConfigError, match=r"evaluate accepts only input_denoiser\.KEY=VALUE$"):
            component_overrides([item], ("input_denoiser",), "evaluate")
