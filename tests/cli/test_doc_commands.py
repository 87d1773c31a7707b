"""Every ``voxuda`` command line in README.md, docs/*.md and the shipped configs' headers runs as written.

Discovery is automatic: every ``docs/*.md`` page is read, so a new page is covered as soon as it exists.
Commands are taken from fenced ``bash``/``sh``/``shell``/``console`` blocks (in ``console`` blocks only the
``$ `` lines; output lines are not commands), with ``\\`` continuations joined, comments dropped and chains
(``&&``, ``;``, ``|``) split; a command is a segment starting with ``voxuda`` (after ``VAR=value``
assignments) or the part after ``-m voxuda`` (``torchrun``, ``python -m``). Config headers contribute their
``voxuda ...`` comment lines.

Checks, for every command:

* it parses (the real ``voxuda`` parser; a usage error fails the test with argparse's message);
* the files it names in the repository (``configs/...``, ``plugins/...``) exist, and suite, preset and method
  names are known;
* it runs, in a scratch folder, in the order the page gives, so that a chain (segment -> pick -> extract)
  uses what the previous command wrote. Cheap commands run for real on tiny data. Expensive ones get a
  dry check instead: ``train`` validates its config with every ``--set`` (and ``--init-from``) and then
  leaves a stand-in run at its ``--out``; ``benchmark`` runs with ``--dry-run`` (the expanded plan, nothing
  trained); ``simulate`` resolves its preset and leaves the tiny test dataset at its ``--out``.
  ``@pytest.mark.slow`` runs the smoke config's header command and the README's ``simulate`` for real.

**Stand-ins.** Some commands name what the reader brings: their tomogram, a run they trained, their own
suite file. Those names are listed below (``STANDINS``), and a page can declare more with an HTML
comment: ``<!-- doc-test: tomogram NAME -->``, ``<!-- doc-test: run NAME -->`` or
``<!-- doc-test: user-file NAME -->``, ``<!-- doc-test: labelled NAME -->`` or
``<!-- doc-test: dataset NAME -->``.
A tomogram stand-in is a 64 x 96 x 80 tomogram of *dark* particles at 10 Å; a run stand-in is a small
source-only U-Net trained on such particles (``canonical_polarity = "bright"``) whose ``[data]`` points at
the tiny test dataset; a labelled stand-in is a folder of four ``X.mrc`` + ``X_label.mrc`` pairs (what
``voxuda manifest`` reads); a dataset stand-in is the tiny test dataset (a simulated dataset the page
refers to without simulating it); a user file is only parsed (commands naming one are not run).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.segment.conftest import planted, trained_run  # noqa: F401  (fixtures used by the stand-ins)
from tests.segment.synthetic import write_mrc
from voxuda.cli import COMMANDS, build_parser, main
from voxuda.config import dump_toml, load_toml

ROOT = Path(__file__).resolve().parents[2]
FENCES = {"bash", "sh", "shell", "console"}
SEPARATORS = {"&&", "||", ";", "|", "&"}
#: what the reader brings, by name (see the module doc); pages add theirs with <!-- doc-test: KIND NAME -->
STANDINS: dict[str, set[str]] = {
    "tomogram": {"tomogram.mrc", "TOMO.mrc", "tomo.mrc"},
    "run": {"runs/vu", "runs/vox_uda", "runs/mt"},
    "user-file": {"run.toml", "my_suite.toml", "my_anatomy.toml"},
    "labelled": {"data/my_labelled", "data/polnet"},
    "dataset": {"data/quick"},
}
#: commands trained or simulated only in the slow test; dry-checked otherwise
EXPENSIVE = {"train", "simulate", "benchmark"}
#: repository folders whose paths, when a command names them as inputs, must exist
REPO_FOLDERS = ("configs/", "plugins/", "voxuda/", "benchmarks/", "scripts/")
#: options naming something a command writes (never required to exist)
OUTPUT_OPTIONS = {"--out", "-o", "--output", "--probabilities", "--write-doc", "--figure"}


@dataclass(frozen=True)
class DocCommand:
    """One ``voxuda`` invocation found in a document."""

    where: str  # "docs/segment.md:12"
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: voxuda {shlex.join(self.argv)}"


@dataclass
class Page:
    """A document, its commands and its declared stand-ins."""

    path: Path
    commands: list[DocCommand] = field(default_factory=list)
    standins: dict[str, set[str]] = field(default_factory=dict)


# -- extraction ----------------------------------------------------------------------------------------------
def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def config_files() -> list[Path]:
    return sorted((ROOT / "voxuda" / "configs").rglob("*.toml"))


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def fenced_lines(text: str) -> Iterator[tuple[int, str, str]]:
    """``(line number, fence language, line)`` of every line inside a fenced block."""
    language: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            language = None if language is not None else stripped[3:].strip().lower() or "text"
            continue
        if language is not None:
            yield number, language, line


def shell_lines(text: str) -> Iterator[tuple[int, str]]:
    """Command lines of shell/console blocks, continuations joined, console prompts stripped."""
    pending: list[str] = []
    start = 0
    for number, language, line in fenced_lines(text):
        if language not in FENCES:
            continue
        if not pending:
            if language == "console":
                if not line.lstrip().startswith("$ "):
                    continue
                line = line.lstrip()[2:]
            start = number
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        pending.append(line)
        yield start, " ".join(part.strip() for part in pending)
        pending = []


def voxuda_argvs(line: str) -> list[list[str]]:
    """The ``voxuda`` invocations on one shell line (argv after ``voxuda``)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.commenters = "#"
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            segments.append([])
        else:
            segments[-1].append(token)
    found = []
    for words in segments:
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]  # VAR=value prefixes
        if words[:1] == ["voxuda"]:
            found.append(words[1:])
        elif "-m" in words:
            at = words.index("-m")
            if words[at + 1:at + 2] == ["voxuda"]:
                found.append(words[at + 2:])
    return found


def page(path: Path) -> Page:
    text = path.read_text(encoding="utf-8")
    result = Page(path)
    for kind, name in re.findall(r"<!--\s*doc-test:\s*(tomogram|run|user-file)\s+(\S+)\s*-->", text):
        result.standins.setdefault(kind, set()).add(name)
    if path.suffix == ".toml":
        names = "|".join(map(re.escape, COMMANDS))
        pattern = re.compile(rf"#.*?\bvoxuda ((?:{names})\b.*)$")
        for number, line in enumerate(text.splitlines(), start=1):
            match = pattern.search(line)
            if match:
                where = f"{_relative(path)}:{number}"
                result.commands.append(DocCommand(where, tuple(shlex.split(match[1]))))
        return result
    for number, line in shell_lines(text):
        for argv in voxuda_argvs(line):
            result.commands.append(DocCommand(f"{_relative(path)}:{number}", tuple(argv)))
    return result


PAGES = [page(p) for p in (*documents(), *config_files())]
COMMAND_LINES = [c for p in PAGES for c in p.commands]


def standin_names(p: Page, kind: str) -> set[str]:
    return STANDINS[kind] | p.standins.get(kind, set())


# -- the extractor itself ---------------------------------------------------------------------------------
def test_extraction_rules() -> None:
    text = "\n".join([
        "```bash",
        "voxuda simulate --preset tiny \\",
        "    --out data/t   # a comment",
        "voxuda plugins; voxuda describe vox_uda && echo done",
        "OMP_NUM_THREADS=2 torchrun --nproc-per-node 2 -m voxuda train --config c.toml",
        "pip install -e .",
        "```",
        "```console",
        "$ voxuda pick labels.mrc -o picks.star",
        "voxuda: note: this is output",
        "```",
        "```python",
        "voxuda segment not a shell line",
        "```",
    ])
    lines = list(shell_lines(text))
    argvs = [argv for _, line in lines for argv in voxuda_argvs(line)]
    assert argvs == [
        ["simulate", "--preset", "tiny", "--out", "data/t"],
        ["plugins"],
        ["describe", "vox_uda"],
        ["train", "--config", "c.toml"],
        ["pick", "labels.mrc", "-o", "picks.star"],
    ]
    assert lines[0][0] == 2 and lines[-1][0] == 9


def test_every_page_with_commands_is_found() -> None:
    """Guards the discovery: the pages known to hold commands yield them (an empty extraction would pass
    every check below vacuously)."""
    counts = {_relative(p.path): len(p.commands) for p in PAGES}
    assert counts["README.md"] >= 8
    for name in ("docs/segment.md", "docs/training.md", "docs/benchmark.md", "docs/distributed.md",
                 "voxuda/configs/smoke.toml", "voxuda/configs/vox_uda.toml"):
        assert counts[name] >= 1, name
    for p in PAGES:
        text = p.path.read_text(encoding="utf-8")
        if p.path.suffix == ".md" and re.search(r"```(bash|console)\n(\$ )?voxuda ", text):
            assert p.commands, _relative(p.path)


# -- static checks: parse, names, repository files ----------------------------------------------------------
def _parse(command: DocCommand, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    try:
        return build_parser().parse_args(list(command.argv))
    except SystemExit as exc:
        if exc.code == 0:  # --help / --version
            return None
        pytest.fail(f"{command}: usage error: {capsys.readouterr().err.strip()}")


def _inputs(command: DocCommand) -> list[str]:
    """Arguments that name inputs (not the value of an output option)."""
    argv, names = list(command.argv), []
    for i, token in enumerate(argv):
        if token.startswith("-") or (i and argv[i - 1] in OUTPUT_OPTIONS):
            continue
        names.append(token.split("=", 1)[1] if "=" in token else token)
    return names


@pytest.mark.parametrize("command", COMMAND_LINES, ids=str)
def test_command_parses_and_names_what_exists(command: DocCommand, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    args = _parse(command, capsys)
    if args is None:
        return
    for name in _inputs(command):
        if name.startswith(REPO_FOLDERS):
            assert (ROOT / name).exists(), f"{command}: {name} does not exist in the repository"
    name = command.argv[0]
    if name == "benchmark" and not args.report_from and not str(args.suite).endswith(".toml"):
        from voxuda.bench.suite import builtin_suites

        assert args.suite in builtin_suites(), f"{command}: unknown suite {args.suite!r}"
    if name == "simulate" and not str(args.preset).endswith(".toml"):
        from voxuda.simulate.presets import PRESETS

        assert args.preset in PRESETS, f"{command}: unknown preset {args.preset!r}"
    for item in getattr(args, "overrides", None) or getattr(args, "sets", None) or []:
        key, _, value = item.partition("=")
        if key == "method.name":
            from voxuda.api import list_components

            assert value in {s.name for s in list_components("method")}, f"{command}: unknown method"


# -- running the pages ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def standin_tomogram(planted, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The planted tomogram with its protein dark (the physical convention the docs assume)."""
    import mrcfile

    bright, _ = planted
    with mrcfile.open(bright) as mrc:
        dark = -np.array(mrc.data)
    return write_mrc(tmp_path_factory.mktemp("standin") / "tomogram.mrc", dark)


@pytest.fixture(scope="module")
def standin_run(trained_run, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The segment tests' trained run, as a run trained on canonical-bright data of the tiny dataset."""
    folder = tmp_path_factory.mktemp("standin") / "run"
    shutil.copytree(trained_run, folder)
    config = load_toml(folder / "config.toml")
    config["data"].update({"root": str(tiny_dataset), "canonical_polarity": "bright"})
    config["evaluation"] = {"batch_size": 4}
    config["trainer"] = {"device": "cpu", "num_threads": 1, "progress": False}
    (folder / "config.toml").write_text(dump_toml(config), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def standin_labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small volume/label pairs side by side, as a user's own labelled subtomograms would be."""
    folder = tmp_path_factory.mktemp("standin") / "labelled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        write_mrc(folder / f"sub{i}.mrc", rng.normal(size=(16, 16, 16)).astype(np.float32))
        write_mrc(folder / f"sub{i}_label.mrc", (rng.random((16, 16, 16)) > 0.9).astype(np.int8))
    return folder


def _place(source: Path, name: str, cwd: Path) -> None:
    target = cwd / name
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy(source, target)


def _dry_train(command: DocCommand, args, cwd: Path, run: Path) -> None:  # type: ignore[no-untyped-def]
    """Validate the config with every override (no data read), resolve --init-from, leave a stand-in run."""
    from voxuda.commands.train import command_overrides, parent_checkpoint
    from voxuda.engine.run_config import load_run_config

    config = load_run_config(args.config, command_overrides(args))
    data = config.data
    if data.preset and not data.target_root:  # the domains must be ones the preset simulates
        from voxuda.simulate.presets import get_preset

        simulated = {d.name for d in get_preset(data.preset).domains}
        for option in ("source_domain", "target_domain"):
            value = getattr(data, option)
            assert value in simulated, f"{command}: data.{option} = {value!r}; {data.preset} has {simulated}"
    if args.init_from:
        parent_checkpoint(args.init_from)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    _place(run, str(out), cwd)


def _run_page(p: Page, cwd: Path, tomogram: Path, run: Path, dataset: Path, labelled: Path,
              capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run every command of ``p`` in ``cwd``; returns what was only dry-checked (for the report)."""
    monkeypatch.chdir(cwd)
    for folder in ("configs", "plugins"):
        (cwd / folder).symlink_to(ROOT / folder)
    for name in standin_names(p, "tomogram"):
        _place(tomogram, name, cwd)
    for name in standin_names(p, "run"):
        _place(run, name, cwd)
    for name in standin_names(p, "labelled"):
        _place(labelled, name, cwd)
    for name in standin_names(p, "dataset"):
        _place(dataset, name, cwd)
    dry = []
    for command in p.commands:
        args = _parse(command, capsys)
        if args is None:
            continue
        argv, name = list(command.argv), command.argv[0]
        if set(_inputs(command)) & standin_names(p, "user-file"):
            dry.append(f"{command} (names a user file: parsed only)")
            continue
        if "cuda" in (getattr(args, "device", None) or "") and not torch.cuda.is_available():
            dry.append(f"{command} (asks for CUDA: parsed only)")
            continue
        if name == "export" and args.format == "onnx" and importlib.util.find_spec("onnx") is None:
            dry.append(f"{command} (needs the optional onnx extra, not installed: parsed only)")
            continue
        if name == "train":
            _dry_train(command, args, cwd, run)
            dry.append(f"{command} (config validated, stand-in run at --out)")
            continue
        if name == "simulate" and not (args.list_presets or args.dump_preset):
            from voxuda.simulate.presets import get_preset

            get_preset(args.preset)
            if args.out:  # later commands of the page read the dataset it writes: the tiny one stands in
                _place(dataset, args.out, cwd)
            dry.append(f"{command} (preset resolved, stand-in dataset at --out)")
            continue
        if name == "benchmark" and args.report_from:
            dry.append(f"{command} (report from finished suites: parsed only)")
            continue
        if name == "benchmark" and not (args.list or args.dry_run):
            argv.append("--dry-run")
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, f"{command}: exit {code}: {captured.err.strip()[-600:]}"
    return dry


@pytest.mark.parametrize("p", [p for p in PAGES if p.commands], ids=lambda p: _relative(p.path))
def test_page_runs_as_written(p: Page, standin_tomogram: Path, standin_run: Path, tiny_dataset: Path,
                              standin_labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    dry = _run_page(p, tmp_path, standin_tomogram, standin_run, tiny_dataset, standin_labelled, capsys,
                    monkeypatch)
    ran = len(p.commands) - len(dry)
    print(f"{_relative(p.path)}: {ran} run for real, {len(dry)} dry-checked:", *dry, sep="\n  ")


# -- the expensive ones, for real ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("where", ["voxuda/configs/smoke.toml", "README.md"])
def test_expensive_commands_for_real(where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The smoke config's header trains as written (simulating the tiny preset); the README's ``simulate``
    writes the quick preset."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    wanted = {"voxuda/configs/smoke.toml": "train", "README.md": "simulate"}[where]
    commands = [c for p in PAGES if _relative(p.path) == where for c in p.commands if c.argv[0] == wanted]
    assert commands
    for command in commands:
        assert main([*command.argv, "--no-progress"]) == 0, capsys.readouterr().err
