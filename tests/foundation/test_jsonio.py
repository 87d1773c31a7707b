"""voxuda.jsonio.read_json: a missing record file has a default, a broken one is an error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxuda.errors import ConfigError
from voxuda.jsonio import read_json


def test_a_record_is_read_and_a_missing_file_gives_the_default(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"step": 3, "flags": ["upper bound"]}', encoding="utf-8")
    assert read_json(path) == {"step": 3, "flags": ["upper bound"]}
    assert read_json(tmp_path / "absent.json", default={}) == {}
    assert read_json(tmp_path / "absent.json", default=None) is None
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "absent.json")


@pytest.mark.parametrize("content", [b'{"step": 3', b"\xff\xfe\x00not json", b""])
def test_a_malformed_file_is_an_error_naming_it_even_with_a_default(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"run\.json: not valid JSON .*restore or delete the file"):
        read_json(path, default={})


def test_the_top_level_type_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "invocations.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"invocations\.json: expected a JSON object, found list"):
        read_json(path)
    assert read_json(path, expect=list) == [1, 2]
    assert read_json(path, expect=None) == [1, 2]
