"""Input polarity at inference: map the user's tomogram to the contrast the run was trained on.

Training maps every subtomogram of known polarity to ``[data] canonical_polarity`` with
:func:`voxuda.data.transforms.polarity_factor` (an inversion, once, before normalisation; ``keep`` and
unknown polarity leave the data as it is). ``voxuda segment`` and ``voxuda evaluate`` reuse that very
function with the input's declared polarity (``--polarity``, default ``dark``: protein darker than the
background, the physical convention of ordinary underfocus tomograms), so a run trained with the shipped
``canonical_polarity = "bright"`` sees a dark tomogram inverted exactly as its dark target volumes were.

``run.json`` records the training polarity under ``"polarity"`` (:func:`polarity_record`); runs written
before that record fall back to ``config.toml``'s ``[data] canonical_polarity``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from voxuda.commands.options import POLARITIES
from voxuda.data.transforms import polarity_factor

__all__ = ["POLARITIES", "InputPolarity", "canonical_of_run", "polarity_record", "resolve_input_polarity"]

#: the physical convention: protein scatters more, so it is darker than ice in an underfocus tomogram
DEFAULT_POLARITY = "dark"


def polarity_record(canonical: str, source: Iterable[Any] = (), target: Iterable[Any] = ()) -> dict[str, Any]:
    """What ``run.json`` records: the canonical polarity and the polarities the train splits had on disk."""

    def seen(meta: Iterable[Any]) -> list[str]:
        return sorted({str(m.get("polarity") or "unknown") for m in meta if isinstance(m, Mapping)})

    return {"canonical": canonical, "source": seen(source), "target": seen(target)}


def canonical_of_run(record: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    """The run's ``canonical_polarity`` (``bright``, ``dark`` or ``keep``): run.json first, then config.toml;
    None when neither records it (a hand-made run folder)."""
    recorded = record.get("polarity")
    if isinstance(recorded, Mapping) and recorded.get("canonical") in ("bright", "dark", "keep"):
        return str(recorded["canonical"])
    data = config.get("data")
    value = data.get("canonical_polarity") if isinstance(data, Mapping) else None
    return str(value) if value in ("bright", "dark", "keep") else None


@attrs.frozen
class InputPolarity:
    """Whether to invert the input, and the one line that says why (None when nothing is inverted)."""

    invert: bool
    note: str | None


def resolve_input_polarity(polarity: str | None, canonical: str | None, invert: bool = False
                           ) -> InputPolarity:
    """Map the input's ``polarity`` to the run's ``canonical`` polarity as training did.

    ``invert=True`` is the manual override: the input is inverted once and ``polarity`` must not be given
    as well (the two would contradict each other). ``polarity=None`` means the default, ``dark``.
    """
    if invert:
        if polarity is not None:
            raise ValueError("--invert and --polarity both given; --invert overrides the polarity mapping, "
                             "so pass only one of them")
        return InputPolarity(True, "inverting the input contrast (--invert)")
    polarity = DEFAULT_POLARITY if polarity is None else polarity
    if polarity not in POLARITIES:
        raise ValueError(f"--polarity {polarity!r}: use one of {', '.join(POLARITIES)}")
    target = None if canonical in (None, "keep") else canonical
    known = "" if polarity == "unknown" else polarity
    if polarity_factor(known, target) == -1.0:
        return InputPolarity(True, f"inverting the input contrast: the input is {polarity} (--polarity) and "
                                   f"the run was trained on {target} (canonical_polarity)")
    return InputPolarity(False, None)
