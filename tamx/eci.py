"""Estimated causal inference (Eqs. 4, 5, 2): remove the context's interference from a map."""

from __future__ import annotations

import numpy as np

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
