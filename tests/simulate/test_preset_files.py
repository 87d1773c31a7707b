"""Preset files: round trip, byte-identical simulation, base/from resolution, one-line errors, cache key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, replace
from pathlib import Path

import pytest

from voxuda.errors import ConfigError
from voxuda.simulate import simulate_benchmark
from voxuda.simulate.preset_file import FIELD_CHECKS, load_preset_file, preset_to_toml, spec_digest
from voxuda.simulate.presets import PRESETS, get_preset
from voxuda.simulate.spec import DomainSpec


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "benchmark.json"
    }


def test_every_domain_field_has_a_check() -> None:
    assert set(FIELD_CHECKS) == {f.name for f in fields(DomainSpec)}


@pytest.mark.parametrize("name", list(PRESETS))
def test_dumped_builtin_reads_back_equal(name: str, tmp_path: Path) -> None:
    path = _write(tmp_path / f"{name}.toml", preset_to_toml(PRESETS[name]))
    loaded = load_preset_file(path)
    assert loaded.domains == PRESETS[name].domains
    builtin = PRESETS[name]
    assert (loaded.name, loaded.box, loaded.description) == (name, builtin.box, builtin.description)
    assert loaded.origin == str(path) and spec_digest(loaded) == spec_digest(PRESETS[name])


def test_dumped_tiny_simulates_byte_identically(tmp_path: Path) -> None:
    path = _write(tmp_path / "tiny_copy.toml", preset_to_toml(PRESETS["tiny"]))
    builtin = simulate_benchmark("tiny", tmp_path / "builtin", seed=3, progress=False, workers=2)
    copy = simulate_benchmark(str(path), tmp_path / "copy", seed=3, progress=False, workers=2)
    a, b = _digests(builtin), _digests(copy)
    assert len([k for k in a if k.endswith(".mrc")]) == 2 * (24 + 3 * 24)
    assert a == b  # every volume, label and the manifest
    meta_a = json.loads((builtin / "benchmark.json").read_text())
    meta_b = json.loads((copy / "benchmark.json").read_text())
    assert meta_a.pop("preset_file") == "" and meta_b.pop("preset_file") == str(path)
    assert meta_a == meta_b


def test_base_override_from_and_single_target(tmp_path: Path) -> None:
    _write(tmp_path / "shift.toml", """
base = "quick"
description = "insitu only, cleaner source"
[source]
snr_choices = [0.38]
[[targets]]
name = "insitu_ribosome"
[[targets]]
name = "insitu_cleaner"
from = "insitu_ribosome"
snr = [0.05, 0.1]
""")
    p = get_preset(str(tmp_path / "shift.toml"))
    quick = PRESETS["quick"]
    assert p.name == "shift" and p.box == 32 and p.description == "insitu only, cleaner source"
    assert p.source == replace(quick.source, snr_choices=(0.38,))
    assert p.targets == (quick.targets[0], replace(quick.targets[0], name="insitu_cleaner", snr=(0.05, 0.1)))
    # a file can be the base of another (relative to it), and [target] is the one-target shorthand
    _write(tmp_path / "one.toml", """
base = "shift.toml"
name = "one"
[target]
name = "noisier"
from = "source"
snr_choices = [0.05]
""")
    one = load_preset_file(tmp_path / "one.toml")
    assert one.source == p.source
    assert one.targets == (replace(p.source, name="noisier", snr_choices=(0.05,)),)
    # without [[targets]] the base's targets are kept
    _write(tmp_path / "keep.toml", 'base = "quick"\n[source]\nsnr_choices = [0.1]\n')
    assert load_preset_file(tmp_path / "keep.toml").targets == quick.targets


def test_full_file_without_base(tmp_path: Path) -> None:
    p = load_preset_file(_write(tmp_path / "mine.toml", """
name = "mine"
box = 24
[source]
model = "fourier"
polarity = "dark"
classes = { pseudo_protein_a = 1.0, proteasome_like = 2 }
splits = { train = 4, val = 2 }
snr_choices = [0.1]
[[targets]]
name = "t"
model = "projection"
polarity = "dark"
classes = { pseudo_protein_a = 1.0 }
splits = { train = 3, test = 2 }
snr = [0.02, 0.04]
"""))
    assert p.box == 24 and p.source.name == "source"
    assert p.source.classes == (("pseudo_protein_a", 1.0), ("proteasome_like", 2.0))
    assert p.targets[0] == DomainSpec("t", "projection", "dark", (("pseudo_protein_a", 1.0),),
                                      (("train", 3), ("test", 2)), snr=(0.02, 0.04))


_BAD = [
    ('base = "quick"\n[source]\nsnr_choice = [0.1]', "source.snr_choice", "did you mean 'snr_choices'"),
    ('base = "quick"\n[source]\nsnr_choices = [0.0]', "source.snr_choices", "must be > 0"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\nsnr = [0.05, 0.01]',
     "targets[0] (insitu_ribosome).snr", "low > high"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\nsnr = [0.0, 0.01]',
     "targets[0] (insitu_ribosome).snr", "must be > 0"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\nclasses = { ribosome_4v5 = 1.0 }',
     "targets[0] (insitu_ribosome).classes", "did you mean 'ribosome_4v5d'"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\nneighbour_classes = ["tric"]',
     "targets[0] (insitu_ribosome).neighbour_classes", "unknown class 'tric'"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\nmodel = "projector"',
     "targets[0] (insitu_ribosome).model", "must be 'fourier' or 'projection'"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\npolarity = "white"',
     "targets[0] (insitu_ribosome).polarity", "must be 'bright' or 'dark'"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\nsplits = {}',
     "targets[0] (insitu_ribosome).splits", "is empty"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\nsplits = { train = 0 }',
     "targets[0] (insitu_ribosome).splits", "count of 'train' must be >= 1"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\nvoxel_size = "10"',
     "targets[0] (insitu_ribosome).voxel_size", "must be a range [low, high]"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\nneighbours = [1.5, 2]',
     "targets[0] (insitu_ribosome).neighbours", "must be an integer"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\nsame_class_neighbours = 1',
     "targets[0] (insitu_ribosome).same_class_neighbours", "must be true or false"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\ntilt_range = [-95, 60]',
     "targets[0] (insitu_ribosome).tilt_range", "-90 < low < high < 90"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\noutlier_probability = 1.5',
     "targets[0] (insitu_ribosome).outlier_probability", "must be <= 1"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\ngain = [0, 2]',
     "targets[0] (insitu_ribosome).gain", "must be > 0"),
    ('base = "quick"\n[[targets]]\nname = "insitu_ribosome"\nsnr_choices = [0.05]',
     "targets[0] (insitu_ribosome).snr_choices", "no effect with model = 'projection'"),
    ('base = "quick"\n[source]\nbfactor = [1.0, 2.0]', "source (source).bfactor",
     "no effect with model = 'fourier'"),
    ('base = "quick"\n[source]\ndefocus_um = [3.0, 6.0]', "source (source).defocus_um", "one defocus"),
    ('base = "quick"\n[[targets]]\nname = "brand_new"\nsnr = [0.1, 0.2]', "targets[0] (brand_new).model",
     "missing"),
    ('base = "quick"\n[[targets]]\nname = "x"\nfrom = "insitu_ribosom"', "targets[0] (x).from",
     "did you mean 'insitu_ribosome'"),
    ('base = "quick"\n[[targets]]\nname = "insitu ribosome"\nfrom = "insitu_ribosome"',
     "targets[0] (insitu ribosome).name", "folder name"),
    ('base = "quick"\n[[targets]]\nname = "t"\nfrom = "source"\n[[targets]]\nname = "t"\nfrom = "source"',
     "targets", "'t' is used twice"),
    ('base = "quik"', "base", "did you mean 'quick'"),
    ('base = "quick"\nsoruce = {}', "soruce", "did you mean 'source'"),
    ('base = "quick"\nbox = 33.0', "box", "must be an integer"),
    ('box = 32\n[source]\nmodel = "fourier"', "source.polarity", "missing"),
    ('base = "quick"\n[target]\nname = "a"\nfrom = "source"\n[[targets]]\nname = "b"\nfrom = "source"',
     "target", "either one [target]"),
    ("box = = 3", "invalid TOML", ""),
]


@pytest.mark.parametrize(("text", "where", "problem"), _BAD, ids=[w for _, w, _ in _BAD])
def test_bad_preset_file_is_one_line_naming_the_field(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = _write(tmp_path / "bad.toml", text + "\n")
    with pytest.raises(ConfigError) as e:
        get_preset(str(path))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {where}")
    assert problem in msg


def test_base_cycle_and_missing_files(tmp_path: Path) -> None:
    _write(tmp_path / "a.toml", 'base = "b.toml"\n')
    _write(tmp_path / "b.toml", 'base = "a.toml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_preset_file(tmp_path / "a.toml")
    with pytest.raises(ConfigError, match="preset file not found"):
        get_preset(str(tmp_path / "nope.toml"))
    _write(tmp_path / "c.toml", 'base = "gone.toml"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: base: preset file .*gone\.toml.* not found"):
        load_preset_file(tmp_path / "c.toml")


def test_unknown_builtin_name_suggests_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'appearance'"):
        get_preset("apearance")


_SMALL = """
name = "small"
base = "tiny"
box = 16
[source]
splits = {{ train = 2, val = 1 }}
[[targets]]
name = "purified_thin_ice"
splits = {{ train = 2, test = 1 }}
snr = [{lo}, 0.1]
"""


def test_editing_a_preset_file_resimulates_a_comment_does_not(tmp_path: Path) -> None:
    path = _write(tmp_path / "small.toml", _SMALL.format(lo=0.03))
    out = simulate_benchmark(str(path), tmp_path / "data", seed=0, progress=False, workers=1)
    first = _digests(out)
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["preset"] == "small" and meta["preset_file"] == str(path)
    stamp = (out / "manifest.csv").stat().st_mtime_ns
    _write(path, "# a comment\n" + _SMALL.format(lo=0.03))
    simulate_benchmark(str(path), out, seed=0, progress=False, workers=1)
    assert (out / "manifest.csv").stat().st_mtime_ns == stamp  # same content: cached
    _write(path, _SMALL.format(lo=0.05))
    simulate_benchmark(str(path), out, seed=0, progress=False, workers=1)
    again = _digests(out)
    assert json.loads((out / "benchmark.json").read_text())["spec_digest"] != meta["spec_digest"]
    changed = {k for k in first if first[k] != again[k]}
    assert changed and all(k.startswith(("purified_thin_ice/", "manifest")) for k in changed)
