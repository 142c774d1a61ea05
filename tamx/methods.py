"""Map methods: one registry (`METHODS`: name -> `Method`) of the ways tamx turns a stored
sample's arrays into per-token maps (`tamx.records.Maps`, [N, V] per answer token).

The TAM family (CAM, ECI and the filter from the stored hidden states of a layer;
`ExplainSettings` picks the ECI mode, the filter and the layer: cam, eci, tam, tam_l-8, ...) and
the baselines from what encode recorded on request (tamx.baselines: attention, rollout,
gradient).
Adding a method (a logit lens at a layer, attention, rollout, gradient maps from stored
fields): a function (sample, settings) -> Maps and a line in `METHODS` naming the sample
fields it reads; `compute_maps` refuses a sample that lacks one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from . import defaults
from .baselines import attention_maps, gradient_maps, rollout_maps
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
    records: str = ""  # the encode option that records what it reads, where the default does not
    recorded_as: str = ""  # the sample's JSON field that says so (a check without loading arrays)
    layers: Callable[[Sample], list[int]] = lambda sample: []


# name -> Method.
METHODS: dict[str, Method] = {
    "tam": Method(
        lambda sample, settings: explain_sample(sample, replace(settings, method="tam")),
        ("hidden", "lm_head"),
        "token activation maps: CAM, ECI and the filter from a layer's hidden states (docs/method.md)",
        layers=lambda sample: [-1, *[layer for layer in sample.lens_layers or [] if layer != -1]],
    ),
    "attention": Method(
        attention_maps,
        ("attention",),
        "head-mean attention to the vision cells, averaged over the recorded layers",
        "tamx encode --attention",
        "attention_layers",
    ),
    "rollout": Method(
        rollout_maps,
        ("rollout",),
        "attention rollout (Abnar and Zuidema 2020)",
        "tamx encode --attention",
        "attention_layers",
    ),
    "gradient": Method(
        gradient_maps,
        ("gradient",),
        "Grad-CAM for a decoder at the recorded layer",
        "tamx encode --gradients LAYER",
        "gradient_layer",
        layers=lambda sample: [sample.gradient_layer],
    ),
}


# method -> its readable name in labels (figures, the report page)
TITLES = {"tam": "TAM", "attention": "attention (head mean)", "rollout": "rollout", "gradient": "Grad-CAM"}
LAYERED = ("tam", "gradient")  # the methods whose settings name a layer


def method_layer(settings: dict[str, Any]) -> tuple[str, int | None]:
    """The map method and layer (None where the method has none) of a variant's stored settings
    (`ExplainSettings.to_json`; method "tam" and layer -1 where not stored)."""
    method = str(settings.get("method", "tam"))
    return method, (int(settings.get("layer", -1)) if method in LAYERED else None)


def variant_label(settings: dict[str, Any]) -> str:
    """The readable label of a variant from its stored settings: "TAM", "CAM" (neither ECI nor
    filter), "TAM, layer -8", "attention (head mean)", "rollout", "Grad-CAM, layer -2"; another
    setting of the TAM family keeps its default name ("eci-median", "eci-median, layer -8")."""
    method, layer = method_layer(settings)
    title = TITLES.get(method, method)
    if method == "tam":
        try:
            name = ExplainSettings.from_json({**settings, "layer": -1}).variant_name()
        except (TamxError, TypeError, ValueError):
            name = "tam"  # settings this version cannot read: say the method alone
        title = {"tam": "TAM", "cam": "CAM"}.get(name, name)
    return title if layer is None or (method == "tam" and layer == -1) else f"{title}, layer {layer}"


def variant_title(name: str, settings: dict[str, Any]) -> str:
    """How figures and the report page head a variant stored as `name`: its label where `name`
    is its settings' default name ("tam_l-8" -> "TAM, layer -8"), else both ("last (TAM)")."""
    label = variant_label(settings)
    try:
        default = ExplainSettings.from_json(settings).variant_name()
    except (TamxError, TypeError, ValueError):
        default = None
    return label if name == default else f"{name} ({label})"


def default_filter(method: str) -> str:
    """The filter `tamx explain --method METHOD` uses unless told: the paper's for the TAM family,
    none for a baseline (its maps are what encode recorded)."""
    return defaults.FILTER if method == "tam" else "none"


def recorded_methods(sample: Sample) -> dict[str, list[int]]:
    """The methods whose fields `sample` holds (every name in their `needs`), in registry order,
    each with the layers it can be explained at: tam at the last (-1) and at those `tamx encode
    --layers` recorded, gradient at the one `--gradients` recorded, [] for attention and rollout."""
    return {
        name: method.layers(sample)
        for name, method in METHODS.items()
        if all(getattr(sample, field, None) is not None for field in method.needs)
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
            f"them; encode the sample again with them stored{f' (`{method.records}`)' if method.records else ''}"
        )
    return method.compute(sample, settings or ExplainSettings())
