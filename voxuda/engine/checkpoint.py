"""Checkpoints: atomic writes and ``weights_only`` loads.

A checkpoint is a plain dict of tensors, numbers, strings and containers, so that ``torch.load(...,
weights_only=True)`` can read it without unpickling arbitrary objects:

``{"format": "voxuda-checkpoint", "version": 1, "step": int, "method": state_dict, "optimizer": ...,
"scheduler": ..., "sampler": ..., "rng": {"torch", "generator", "python", "numpy", "cuda"?: tensors},
"best": {"score": float, "step": int}, "selection": str}``

Writes go to a temporary file in the same folder, are fsync-ed and then ``os.replace``-d, so a crash leaves
either the previous complete checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxuda.atomic import atomic_open
from voxuda.errors import ConfigError

FORMAT = "voxuda-checkpoint"
VERSION = 1


def save_atomic(payload: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temp file beside ``path``, fsync, then atomically replace ``path``
    (:func:`voxuda.atomic.atomic_open`: the file gets the umask's mode)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return path


#: sentences of torch's loading errors that advise turning ``weights_only`` off or allow-listing a class
#: (never shown to users: that advice is how a malicious checkpoint runs code), or that point at torch's docs
_TORCH_ADVICE = ("weights only load failed", "weights_only", "trust", "safe_globals", "allowlist",
                 "file an issue", "documentation", "in pytorch 2.", "two options")


def load_error_detail(exc: BaseException) -> str:
    """What went wrong when ``torch.load(..., weights_only=True)`` failed, without torch's advice to retry
    with ``weights_only=False``: e.g. ``Unsupported global: GLOBAL posix.system was not an allowed global by
    default`` or the unpickler's complaint about a truncated file."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # torch emboldens its advice with terminal escapes
    pieces = [re.sub(r"^(\(\d\)\s*)?(WeightsUnpickler error:\s*)?", "", p.strip()).strip(" .:")
              for p in re.split(r"\n+|(?<=\.)\s+", text)]
    kept = [p for p in pieces if p and not any(a in p.lower() for a in _TORCH_ADVICE)]
    detail = "; ".join(kept[:2])[:300]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def load_weights_only(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a foreign, truncated or code-carrying file raises one
    :class:`ConfigError` line that never suggests disabling ``weights_only``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file, or one with pickled objects (refused)
        raise ConfigError(f"{path}: not a readable checkpoint ({load_error_detail(exc)}); voxuda loads only "
                          "plain tensor checkpoints, such as those it writes") from exc


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check its format marker."""
    path = Path(path)
    payload = load_weights_only(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a voxuda checkpoint")
    return payload


def capture_rng(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Every random state a run uses, as tensors (so ``weights_only`` loading works)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()  # the legacy (MT19937) tuple: numpy's global generator is one
    if not isinstance(np_state, tuple):
        raise TypeError(f"numpy's global random state is a {type(np_state).__name__}, not MT19937's tuple")
    state = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "python": torch.tensor([version, *internal], dtype=torch.int64),
        "python_gauss": torch.tensor([float("nan") if gauss is None else gauss], dtype=torch.float64),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": torch.tensor([int(np_state[2]), int(np_state[3]), ], dtype=torch.int64),
        "numpy_gauss": torch.tensor([float(np_state[4])], dtype=torch.float64),
    }
    if torch.cuda.is_available():
        states = torch.cuda.get_rng_state_all()
        state["cuda"] = torch.stack(states) if states else torch.empty(0)
    return state


def restore_rng(state: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    """Inverse of :func:`capture_rng`. RNG states are CPU byte tensors whatever device the checkpoint was
    mapped to (a resume on CUDA loads the checkpoint onto the GPU)."""
    state = {key: value.cpu() for key, value in state.items()}
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    py = state["python"].tolist()
    gauss = float(state["python_gauss"][0])
    random.setstate((int(py[0]), tuple(int(v) for v in py[1:]), None if gauss != gauss else gauss))
    pos, has_gauss = (int(v) for v in state["numpy_pos"].tolist())
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, pos, has_gauss, float(state["numpy_gauss"][0])))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]):
        torch.cuda.set_rng_state_all(list(state["cuda"]))
