"""``voxuda export RUN --format torchscript|onnx [--out FILE]``: the run's predictor as a standalone model.

The exported network is ``method.predictor()`` of the run (the network the method reports: a mean teacher's
or Vox-UDA's teacher, AdaBN's student with target statistics), loaded exactly as ``voxuda segment`` loads it.
It maps ``(N, 1, D, H, W)`` float32 windows, prepared as training prepared its subtomograms (polarity mapped
to the run's canonical one, then normalised per window), to logits ``(N, K, D, H, W)``; every edge must be a
multiple of the network's down-sampling factor. A JSON file beside the model (``FILE.json``) records that
preprocessing. Both files are written to temporary names and renamed into place; the export is then checked
against the run's predictor on a random input and the largest logit difference is printed.

ONNX needs the optional ``onnx`` package (``pip install "voxuda[onnx]"``, which adds ``onnxruntime`` for the
check); the legacy TorchScript-based exporter is used, so ``onnxscript`` is not needed.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import warnings
from pathlib import Path
from typing import Any

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}
ONNX_OPSET = 17


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("run", metavar="RUN_DIR_OR_CHECKPOINT",
        help="a training run folder (best.pt, else last.pt) or a .pt file")
    add("--format", choices=FORMATS, default="torchscript",
        help="torchscript (default; torch.jit.load) or onnx (needs the onnx extra)")
    add("-o", "--out", dest="output", metavar="FILE",
        help="file to write (default: RUN_DIR/model.torchscript.pt or RUN_DIR/model.onnx)")
    add("--patch", type=int, metavar="N",
        help="edge of the example window the export is traced with (default: the run's data.box, else 32)")


def default_output(run_dir: Path, fmt: str) -> Path:
    return run_dir / f"model{SUFFIX[fmt]}"


def example_edge(model: Any, patch: int | None) -> int:
    """The traced window edge: ``patch``, else the run's box, rounded up to the down-sampling factor."""
    from voxuda.errors import ConfigError

    data = model.config.get("data") if isinstance(model.config.get("data"), dict) else {}
    edge = int(patch if patch is not None else data.get("box", 32))
    if edge < 1 or edge % model.divisor:
        raise ConfigError(f"--patch {edge}: must be a positive multiple of {model.divisor} (the network "
                          "down-samples by that factor)")
    return edge


def torchscript_bytes(predictor: Any, example: Any) -> bytes:
    """``torch.jit.trace`` of ``predictor`` on ``example``, serialised. The backbones' shape checks turn
    into constants when traced (TracerWarning), which is why the exported model documents the multiple."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning on shape checks; trace's own deprecation notice
        traced = torch.jit.trace(predictor, example)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def contiguous_layout(module: Any) -> Any:
    """A copy of ``module`` whose weights and activations use the contiguous memory layout.

    The ONNX exporter cannot trace a ``channels_last_3d`` conversion ("onnx memory_format support is not
    implemented"), which the U-Net applies by default for CPU speed (docs/performance.md); ONNX has no memory
    layouts anyway, and the values are the same up to float rounding. Backbones expose their layout as a
    ``memory_format`` attribute.
    """
    import copy

    import torch

    clone = copy.deepcopy(module)
    for sub in clone.modules():
        if hasattr(sub, "memory_format"):
            sub.memory_format = torch.contiguous_format
    return clone.to(memory_format=torch.contiguous_format)


def onnx_bytes(predictor: Any, example: Any) -> bytes:
    """ONNX (opset 17) with dynamic batch and spatial axes."""
    import torch

    from voxuda.errors import ConfigError

    if importlib.util.find_spec("onnx") is None:
        raise ConfigError('--format onnx needs the onnx package: pip install "voxuda[onnx]"')
    axes = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(contiguous_layout(predictor), (example,), buffer,  # type: ignore[arg-type]  # stub: paths only
                          dynamo=False,
                          opset_version=ONNX_OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": axes, "logits": axes})
    return buffer.getvalue()


def exported_logits(data: bytes, fmt: str, x: Any) -> Any:
    """Logits of the exported model on ``x`` (a CPU tensor); None for ONNX without ``onnxruntime``."""
    import torch

    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still supported
            return torch.jit.load(io.BytesIO(data), map_location="cpu")(x)
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def model_card(model: Any, fmt: str, edge: int) -> dict[str, Any]:
    """What a user of the exported file must do to its input (the JSON beside it)."""
    method = model.config.get("method") if isinstance(model.config.get("method"), dict) else {}
    return {
        "format": fmt,
        "run": str(model.run_dir),
        "checkpoint": str(model.checkpoint),
        "method": method.get("name"),
        "input": "(N, 1, D, H, W) float32; D, H, W multiples of 'divisor'",
        "output": "(N, num_classes, D, H, W) logits",
        "divisor": model.divisor,
        "traced_edge": edge,
        "num_classes": model.num_classes,
        "normalization": model.normalization,
        "normalization_scope": "each window over its own voxels, as training normalised each subtomogram",
        "canonical_polarity": model.canonical_polarity,
        "polarity_note": "invert the input once, before normalising, when its protein contrast differs from "
                         "canonical_polarity (voxuda segment --polarity does this)",
        "voxel_size": model.voxel_size,
        "alignment": (model.alignment or {}).get("aligner"),
    }


def run(args: argparse.Namespace) -> int:
    import torch

    from voxuda.bench.io import write_bytes, write_json
    from voxuda.segment.model import load_model

    model = load_model(args.run, "cpu")
    out = Path(args.output) if args.output else default_output(model.run_dir or Path("."), args.format)
    _check_output(out)
    edge = example_edge(model, args.patch)
    predictor = model.predictor.eval()
    example = torch.randn(1, 1, edge, edge, edge, generator=torch.Generator().manual_seed(0))
    data = torchscript_bytes(predictor, example) if args.format == "torchscript" else onnx_bytes(
        predictor, example)
    check = torch.randn(2, 1, edge, edge, edge, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = predictor(check)
    got = exported_logits(data, args.format, check)
    write_bytes(out, data)
    card = {**model_card(model, args.format, edge)}
    if got is not None:
        card["check_max_abs_logit_difference"] = float((got - expected).abs().max())
    write_json(out.with_name(out.name + ".json"), card)
    difference = (f"max |logit difference| {card['check_max_abs_logit_difference']:.2e} on a random input"
                  if got is not None else "not checked (onnxruntime is not installed)")
    print(f"voxuda: exported the {card['method']} run's predictor ({args.format}) to {out}; {difference}")
    return 0


def _check_output(out: Path) -> None:
    from voxuda.errors import ConfigError

    if out.is_dir():
        raise ConfigError(f"{out}: --out is a folder; give a file name such as {out / 'model.onnx'}")
    if not out.parent.is_dir():
        raise ConfigError(f"{out}: output folder {out.parent} does not exist; create it first")


__all__ = ["FORMATS", "add_arguments", "run", "default_output", "torchscript_bytes", "onnx_bytes"]
