"""Estimated causal inference (Eqs. 4, 5, 2): remove the context's interference from a map.

The ECI modes are the entries of `ECI_WEIGHTINGS` (name -> `Weighting`): how each target
weights the maps of its context tokens in Eq. 4's estimate. Adding a mode: a function
(relevance [T, Q], valid [T, Q] bool) -> weights [T, Q] float32 and a line in `ECI_WEIGHTINGS`;
`tamx explain --eci-weights`, serve's controls and eval's tables read the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import TamxError

RELEVANCE_EPS = 1e-8


def relevance(
    context_logits: np.ndarray,
    context_classes: np.ndarray,
    target_classes: np.ndarray,
    visible: np.ndarray,
) -> np.ndarray:
    """Eq. 4's textual relevance r_t[k] = relu(h[q_k] . w[c_t]).

    context_logits: [Q, U] logits of every class at every context position;
    context_classes / target_classes: [Q] / [T] class indices into U;
    visible: [T, Q] bool, context token k precedes target t.
    A context token of the target's own class gets 0 (never subtract a token's own class).
    Returns [T, Q] float32.
    """
    r = np.maximum(context_logits[:, target_classes].T, 0.0)
    keep = visible & (context_classes[None, :] != target_classes[:, None])
    return np.where(keep, r, 0.0).astype(np.float32, copy=False)


def relevance_weights(r: np.ndarray) -> np.ndarray:
    """Eq. 4's weights r_t[k] / (sum_k r_t[k] + 1e-8): [T, Q]."""
    return r / (r.sum(axis=1, keepdims=True) + RELEVANCE_EPS)


def uniform_weights(valid: np.ndarray) -> np.ndarray:
    """ECI-mean: equal weights over each target's valid context tokens: [T, Q]."""
    counts = valid.sum(axis=1, keepdims=True)
    return valid / np.maximum(counts, 1).astype(np.float32)


@dataclass(frozen=True)
class Weighting:
    """A registered ECI mode. weights: (relevance [T, Q], valid [T, Q] bool: context token k
    precedes target t and is not of its class) -> [T, Q] float32, or None for no ECI (the maps
    pass unchanged); variant: its part of a default variant name ("" for none); label: its
    value in the ECI column of eval's tables."""

    weights: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    variant: str
    label: str


# name -> Weighting, in the order the CLI and serve list them.
ECI_WEIGHTINGS: dict[str, Weighting] = {
    "relevance": Weighting(lambda r, valid: relevance_weights(r), "eci", "yes"),
    "uniform": Weighting(lambda r, valid: uniform_weights(valid), "eci-mean", "mean"),
    "off": Weighting(None, "", "-"),
}


def weighted_modes() -> tuple[str, ...]:
    """The ECI modes that weight the context (every one but "off"): `--eci-weights`'s choices."""
    return tuple(name for name, entry in ECI_WEIGHTINGS.items() if entry.weights is not None)


def check_eci_mode(name: str) -> Weighting:
    """The registered ECI mode `name`, else a TamxError listing the valid names."""
    entry = ECI_WEIGHTINGS.get(name) if isinstance(name, str) else None
    if entry is None:
        raise TamxError(f"unknown ECI mode {name!r}; use one of {', '.join(ECI_WEIGHTINGS)}")
    return entry


def context_weights(name: str, r: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Eq. 4's weights [T, Q] of ECI mode `name` from the relevance r [T, Q] and the valid
    context tokens [T, Q] bool; a TamxError for an unknown mode, "off" or mismatched shapes."""
    entry = check_eci_mode(name)
    if entry.weights is None:
        raise TamxError(f"ECI mode {name!r} weights nothing; use one of {', '.join(weighted_modes())}")
    r, valid = np.asarray(r), np.asarray(valid)
    if r.ndim != 2 or r.shape != valid.shape or valid.dtype != bool:
        raise TamxError(
            f"ECI weights take relevance [T, Q] and a bool mask of the same shape, got {r.shape} and "
            f"{valid.shape} {valid.dtype}"
        )
    return entry.weights(r, valid)


def interference(weights: np.ndarray, context_maps: np.ndarray) -> np.ndarray:
    """Eq. 4's estimate E_t = sum_k weights[t, k] * A_k. context_maps: [Q, V]. Returns [T, V]."""
    return (weights @ context_maps).astype(np.float32, copy=False)


def least_squares_scale(maps: np.ndarray, estimate: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Eq. 5 in closed form: s_t = <A_t, E_t> / <E_t, E_t>, 0 where E_t is all zero.

    maps / estimate: [T, V]. Without `groups`: one scale per target, [T]. With groups [V] int
    (the image or video of every cell, 0..G-1; `tamx.layout.media_groups`): one scale per
    target and group, solved on that group's cells alone, [T, G] (docs/method.md: per image).
    """
    if groups is None:
        numerator = np.einsum("tv,tv->t", maps, estimate, dtype=np.float64)
        denominator = np.einsum("tv,tv->t", estimate, estimate, dtype=np.float64)
    else:
        count = int(groups.max()) + 1 if len(groups) else 0
        one_hot = np.zeros((len(groups), count), dtype=np.float64)
        one_hot[np.arange(len(groups)), groups] = 1.0
        numerator = (np.asarray(maps, np.float64) * estimate) @ one_hot
        denominator = np.square(np.asarray(estimate, np.float64)) @ one_hot
    scale = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=scale, where=denominator > 0)
    return scale.astype(np.float32)


def remove_interference(
    maps: np.ndarray, estimate: np.ndarray, scale: np.ndarray, groups: np.ndarray | None = None
) -> np.ndarray:
    """Eq. 2 before the filter: relu(A_t - s_t E_t): [T, V] float32 (s_t of each cell's group
    when `groups` [V] is given and scale is [T, G])."""
    per_cell = scale[:, None] if groups is None else scale[:, groups]
    return np.maximum(maps - per_cell * estimate, 0.0)
