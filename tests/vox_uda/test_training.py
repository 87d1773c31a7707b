"""End to end: the default vox_uda config learns, and every ablation config of the suite trains a few steps
through the engine's trainer (tiny 16^3 volumes, a tiny U-Net)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from voxuda.api import component_config
from voxuda.methods.vox_uda import VoxUDAConfig
from voxuda.ops.backends.cupy_backend import probe as cupy_probe

from .helpers import TINY_BACKBONE, ablation_method_table, load_suite, merge, tiny_domains, tiny_method, train

HAVE_DENOISERS = importlib.util.find_spec("voxuda.denoisers.bilateral") is not None
ENTRIES = load_suite()["ablation"]


def _needs_filters(table: dict[str, Any]) -> bool:
    names = {str(v.get("name") if isinstance(v, dict) else v) for v in table.values()}
    return bool(names & {"bilateral", "improved_bilateral", "gaussian"})


def _skip_without_denoisers(table: dict[str, Any]) -> None:
    if _needs_filters(table) and not HAVE_DENOISERS:
        pytest.skip("voxuda.denoisers (bilateral filters) is not in this build yet")


def test_suite_covers_the_paper_ablations() -> None:
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in ENTRIES:
        groups.setdefault(entry["group"], []).append(entry)
    configs = {e["name"]: component_config("method", ablation_method_table(e))[1] for e in ENTRIES}
    assert all(isinstance(c, VoxUDAConfig) for c in configs.values())

    def values(group: str, get: Any) -> list[Any]:
        return [get(configs[e["name"]]) for e in groups[group]]

    assert values("components", lambda c: c.teacher_denoiser.name) == ["improved_bilateral", "identity",
                                                                         "bilateral"]
    assert values("con_weights", lambda c: c.tap_weights) == [
        (0.1, 0.1, 0.4, 0.4), (0.2, 0.2, 0.3, 0.3), (0.3, 0.3, 0.2, 0.2), (0.4, 0.4, 0.1, 0.1)]
    assert values("ngm_samples", lambda c: c.noise.params["n_samples"]) == [5, 10, 15, 20]
    assert values("filter_rate", lambda c: c.noise.params["filter_rate"]) == [0.084, 0.178, 0.244, 0.422]
    assert values("sigma_d", lambda c: c.teacher_denoiser.params["sigma_spatial"]) == [100, 120, 140, 160]
    assert values("sigma_r", lambda c: c.teacher_denoiser.params["sigma_range"]) == [0.8, 1.0, 1.2, 1.4]
    assert {values("sigma_r", lambda c: c.teacher_denoiser.name)[0]} == {"improved_bilateral"}
    off = {e["name"]: configs[e["name"]] for e in groups["loss_terms"]}
    assert off["off_con"].w_con == 0 and off["off_dis"].w_dis == 0 and off["off_pseudo"].pseudo_weight == 0
    assert off["off_noise"].noise.name == "none"
    # the base noise parameters survive a partial that only changes n_samples
    assert configs["ngm_n05"].noise.params["filter_rate"] == 0.244


def test_merge_replaces_a_component_table_of_another_name() -> None:
    base = {"method": {"noise": {"name": "ngm", "n_samples": 10}, "w_con": 1.0}}
    assert merge(base, {"method": {"noise": {"name": "none"}}})["method"]["noise"] == {"name": "none"}
    merged = merge(base, {"method": {"noise": {"name": "ngm", "n_samples": 5}, "w_dis": 0.0}})["method"]
    assert merged == {"noise": {"name": "ngm", "n_samples": 5}, "w_con": 1.0, "w_dis": 0.0}


def test_default_config_source_loss_goes_down() -> None:
    table = ablation_method_table({"file": "full.toml"})
    _skip_without_denoisers(table)
    table["backbone"] = dict(TINY_BACKBONE)
    torch.manual_seed(0)
    method = tiny_method(**{k: v for k, v in table.items() if k not in ("name", "backbone")})
    outs = train(method, steps=24, lr=3e-3)
    seg = [o.losses["seg"] for o in outs]
    first, last = sum(seg[:4]) / 4, sum(seg[-4:]) / 4
    assert last < 0.85 * first, seg
    assert all(math.isfinite(o.losses["total"]) for o in outs)
    assert {"con", "dis", "pseudo"} <= set(outs[-1].losses)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_ablation_trains_with_the_trainer(entry: dict[str, Any], tmp_path: Path) -> None:
    from voxuda.engine.data import DomainSplit, RunData
    from voxuda.engine.run_config import run_config_from_dict
    from voxuda.engine.trainer import train as run_training

    table = ablation_method_table(entry)
    _skip_without_denoisers(table)
    table["backbone"] = dict(TINY_BACKBONE)
    source, label, target, _ = tiny_domains(seed=1)
    data = RunData(source_train=DomainSplit(source, label), target_train=DomainSplit(target, None))
    config = run_config_from_dict({
        "seed": 0, "method": table, "data": {"root": str(tmp_path / "unused"), "box": 16},
        "trainer": {"steps": 3, "batch_size": 2, "lr": 3e-3, "progress": False, "num_threads": 1},
        "evaluation": {"selection": "last", "split": ""},
    })
    result = run_training(config, tmp_path / "run", data=data)
    assert result.completed and result.step == 3
    run_json = (tmp_path / "run" / "run.json").read_text(encoding="utf-8")
    assert '"noise"' in run_json and '"teacher_denoiser"' in run_json
    record = json.loads(run_json)  # the op backend the method's bilateral filters ran on; none if none ran
    method = record["config"]["method"]
    ran = [method["student_input_denoiser"]["name"]]
    if method["pseudo_weight"] > 0:  # the teacher (and its input filter) only runs for pseudo-labels
        ran.append(method["teacher_denoiser"]["name"])
    uses_op = bool(set(ran) & {"bilateral", "improved_bilateral"})
    best_cpu = "numba" if importlib.util.find_spec("numba") else "torch"
    best = "cupy" if torch.cuda.is_available() and cupy_probe()[0] else best_cpu  # device "auto" picks CUDA
    assert record["op_backend"] == (best if uses_op else None)
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8")
    assert "pseudo_keep_fraction" in metrics or table.get("pseudo_weight") == 0.0


def test_shipped_run_config_is_valid_and_spells_out_the_defaults() -> None:
    """configs/vox_uda.toml must load as a run config, and its [method] must equal the code's defaults
    (apart from the sub-component parameters it writes out), so the file documents the real defaults."""
    from voxuda.config import load_toml
    from voxuda.engine.run_config import run_config_from_dict

    path = Path(__file__).resolve().parents[2] / "configs" / "vox_uda.toml"
    config = run_config_from_dict(load_toml(path))
    written = component_config("method", config.method)[1]
    default = VoxUDAConfig()
    for field in ("w_seg", "w_con", "w_dis", "pseudo_weight", "tap_weights", "consistency", "ema_momentum",
                  "confidence_threshold", "augment", "predict_with", "grl_schedule", "discriminator_mode"):
        assert getattr(written, field) == getattr(default, field), field
    assert written.noise.name == default.noise.name == "ngm"
    assert written.teacher_denoiser.name == default.teacher_denoiser.name
    ngm = component_config("noise_model", written.noise)[1]
    assert ngm == component_config("noise_model", "ngm")[1]  # the written NGM parameters are the defaults


def test_the_appearance_config_is_the_measured_suite_row() -> None:
    """configs/vox_uda_appearance.toml must load as a run config and hold the settings of the suite row it
    cites (appearance_long's vox_uda_colour_split_noisyonly, the eleventh try, which met issue 15's bar), so
    that the file and the measurement cannot drift."""
    from voxuda.bench.suite import expand, load_suite
    from voxuda.config import load_toml
    from voxuda.engine.run_config import run_config_from_dict

    path = Path(__file__).resolve().parents[2] / "configs" / "vox_uda_appearance.toml"
    written = load_toml(path)
    run_config_from_dict(written)
    suite = load_suite("appearance_long")
    plan = next(p for p in expand(suite, targets=["appear_insitu"], data_root=Path("data/appearance"))
                if p.label == "vox_uda_colour_split_noisyonly")
    measured = plan.config
    assert written["method"] == measured["method"]
    assert written["method"]["w_seg"] == 0.0 and written["method"]["w_seg_noisy"] == 1.0
    for key in ("steps", "batch_size", "lr", "schedule", "warmup", "eval_every"):
        assert written["trainer"][key] == measured["trainer"][key], key
    for key in ("preset", "box", "canonical_polarity", "alignment", "target_domain"):
        assert written["data"][key] == measured["data"][key], key
    assert written["evaluation"]["selection"] == measured["evaluation"]["selection"] == "target_combined"
