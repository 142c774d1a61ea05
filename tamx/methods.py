"""Map methods: one registry (`METHODS`: name -> `Method`) of the ways tamx turns a stored
sample's arrays into per-token maps (`tamx.records.Maps`, [N, V] per answer token).

Today the one method is the TAM family (CAM, ECI and the filter from the stored last-layer
hidden states; `ExplainSettings` picks the ECI mode and the filter: cam, eci, tam, ...).
Adding a method (a logit lens at a layer, attention, rollout, gradient maps from stored
fields): a function (sample, settings) -> Maps and a line in `METHODS` naming the sample
fields it reads; `compute_maps` refuses a sample that lacks one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import TamxError
from .explain import ExplainSettings, explain_sample
from .records import Maps, Sample


@dataclass(frozen=True)
class Method:
    """A registered method. compute: (sample, settings) -> Maps of every answer token;
    needs: the `Sample` fields it reads; summary: one line for listings."""

    compute: Callable[[Sample, ExplainSettings], Maps]
    needs: tuple[str, ...]
    summary: str


# name -> Method.
METHODS: dict[str, Method] = {
    "tam": Method(
        lambda sample, settings: explain_sample(sample, settings),
        ("hidden", "lm_head"),
        "token activation maps: CAM, ECI and the filter from the last layer's hidden states (docs/method.md)",
    ),
}


def check_method(name: str) -> Method:
    """The registered method `name`, else a TamxError listing the valid names."""
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        raise TamxError(f"unknown map method {name!r}; use one of {', '.join(METHODS)}")
    return method


def compute_maps(name: str, sample: Sample, settings: ExplainSettings | None = None) -> Maps:
    """The maps of method `name` for `sample` (settings: default ExplainSettings()); a TamxError
    for an unknown method or a sample without a field the method reads."""
    method = check_method(name)
    missing = [field for field in method.needs if getattr(sample, field, None) is None]
    if missing:
        raise TamxError(
            f"sample {getattr(sample, 'id', '?')!r} has no {', '.join(missing)}: map method {name!r} reads "
            "them; encode the sample again with them stored"
        )
    return method.compute(sample, settings or ExplainSettings())
