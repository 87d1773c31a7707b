"""``[data] alignment`` in the run config: registry kind, defaults, one-line errors."""

from __future__ import annotations

import pytest

from voxuda.api import describe, list_components
from voxuda.config import component_fields
from voxuda.engine.run_config import DataConfig, run_config_from_dict
from voxuda.errors import ConfigError


def test_aligners_are_a_registered_kind() -> None:
    names = {spec.name for spec in list_components("aligner")}
    assert names >= {"none", "detrend", "spectrum_match"}
    fields = {f.name: f.default for f in describe("spectrum_match", kind="aligner")[0].fields}
    assert fields == {"detrend": True, "order": 1, "max_gain": 10.0}


def test_alignment_field_declares_its_kind() -> None:
    assert [(key, kind, ref.name) for key, kind, ref in component_fields(DataConfig())] == [
        ("alignment", "aligner", "none")]


def test_valid_alignment_tables_are_accepted() -> None:
    table = {"name": "spectrum_match", "max_gain": 4}
    config = run_config_from_dict({"data": {"root": "/x", "alignment": table}})
    assert config.data.alignment.params == {"max_gain": 4}


@pytest.mark.parametrize(
    ("alignment", "words"),
    [
        ("spectrum_mach", "did you mean 'spectrum_match'"),
        ({"name": "detrend", "ordr": 1}, "unknown key 'ordr'"),
        ({"name": "detrend", "order": 3}, "3 is not one of"),
        ({"name": "spectrum_match", "max_gain": 0.5}, "max_gain must be at least 1"),
        ({"name": "spectrum_match", "detrend": "yes"}, "expected true or false"),
    ],
)
def test_bad_alignment_is_one_line_naming_the_key(alignment: object, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        run_config_from_dict({"data": {"root": "/x", "alignment": alignment}})
    message = str(info.value)
    assert message.startswith("data.alignment: ") and words in message and "\n" not in message
