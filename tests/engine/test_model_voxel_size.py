"""The voxel size ``voxuda segment`` resamples to is the one the reported model was trained at."""

from __future__ import annotations

from types import SimpleNamespace

from voxuda.engine.run_record import data_record
from voxuda.methods.dann import DANN
from voxuda.methods.source_only import SourceOnly
from voxuda.segment.model import _model_voxel_size


def _data(source: float, target: float) -> SimpleNamespace:
    split = lambda size: SimpleNamespace(meta=[{"voxel_size": size}] * 3)  # noqa: E731
    return SimpleNamespace(source_train=split(source), target_train=split(target))


def test_source_only_records_the_source_voxel_size_and_adapters_the_target() -> None:
    data = _data(10.0, 10.9)
    source_only = data_record(data, sees_target=SourceOnly.sees_target)
    adapted = data_record(data, sees_target=DANN.sees_target)
    assert source_only["voxel_size"] == 10.0 and adapted["voxel_size"] == 10.9
    assert source_only["target_voxel_size"] == adapted["target_voxel_size"] == 10.9
    # segment reads the model's size first (not the target's, which a source-only run also records)
    assert _model_voxel_size({"data": source_only}, {}) == 10.0
    assert _model_voxel_size({"data": adapted}, {}) == 10.9
