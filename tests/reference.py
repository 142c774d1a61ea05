"""Plain float64 reference implementation of the Token Activation Map (TAM).

Written straight from shared/METHOD.md (Li et al., ICCV 2025, arXiv 2506.23270) for tests
that check the fast implementation. Clarity over speed: explicit loops, float64 throughout.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def rank_gaussian_filter_ref(grid: np.ndarray, k: int = 3) -> np.ndarray:
    """Rank Gaussian filter D, Eqs. 6-7, on one 2-D [H, W] array.

    Per cell: the k x k window (reflect padding via np.pad(mode="reflect")), sorted ascending
    into a_0..a_{k^2-1}; m = mean, sd = population std. m <= 0 -> 0; sd == 0 -> the value;
    else sigma = sd / m, g_j = exp(-(j - k^2//2)^2 / (2 sigma^2)) normalised to sum 1
    (if 2 sigma^2 underflows to 0: the median a_{k^2//2}); output sum_j g_j a_j.
    k must be an odd int >= 1. k == 1 is the identity on non-negative input; since the m <= 0
    rule comes first it is relu in general (D only ever sees ECI >= 0). Returns float64 [H, W].
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size must be an odd integer >= 1, got {k!r}")
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 2:
        raise ValueError(f"grid must be 2-D [H, W], got shape {grid.shape}")
    k = int(k)
    r = k // 2
    n = k * k
    centre = n // 2
    padded = np.pad(grid, r, mode="reflect")
    out = np.zeros(grid.shape, dtype=np.float64)
    for y in range(grid.shape[0]):
        for x in range(grid.shape[1]):
            a = np.sort(padded[y : y + k, x : x + k].reshape(-1))
            m = float(a.sum()) / n
            if m <= 0.0:
                out[y, x] = 0.0
                continue
            sd = math.sqrt(float(((a - m) ** 2).sum()) / n)
            if sd == 0.0:
                out[y, x] = a[centre]
                continue
            sigma = sd / m
            two_sigma_sq = 2.0 * sigma * sigma
            if two_sigma_sq == 0.0:
                out[y, x] = a[centre]
                continue
            g = np.array([math.exp(-((j - centre) ** 2) / two_sigma_sq) for j in range(n)])
            g = g / g.sum()  # g[centre] == 1, so the sum is >= 1
            out[y, x] = float((g * a).sum())
    return out


def explain_ref(
    hidden: np.ndarray,
    input_ids: np.ndarray,
    lm_rows: dict[int, np.ndarray],
    lm_bias: dict[int, float] | None,
    vision_blocks: list[tuple],
    answer_positions: list[int],
    context_positions: list[int],
    kernel_size: int = 3,
    eci: str = "relevance",
    filter: bool = True,
    candidates: np.ndarray | None = None,
    joint: bool = False,
) -> dict[str, np.ndarray]:
    """TAM for answer tokens, candidate tokens and prompt tokens (Eqs. 1, 2, 4, 5, 6-7).

    Eq. 1: A_t[v] = relu(h[v] . w[t]); Eq. 4: r[k] = relu(h[q_k] . w[t]) (0 if ids[q_k] == t),
    E = sum_k r[k] / (sum r + 1e-8) * A_{ids[q_k]}; Eq. 5: s = <A,E>/<E,E> (0 if E == 0);
    Eq. 2: ECI = relu(A - s E), TAM = relu(D(ECI)) with D per grid / per video frame.
    vision_blocks: (start, (T, H, W)) or (start, (T, H, W), media): blocks with one media key
    (tiles of one image, slices of one video) are one image, and Eq. 5's s is solved for each
    image on its own cells (docs/method.md); the default key is the block itself.
    scale is [n, G], one column per image in order of first appearance; `joint` solves one
    scale over all images together instead (the rule docs/method.md rejects, for comparison);
    interference is E [n, V] of every answer token.
    """
    if eci not in ("relevance", "uniform", "off"):
        raise ValueError(f"eci must be 'relevance', 'uniform' or 'off', got {eci!r}")
    hidden = np.asarray(hidden, dtype=np.float64)
    ids = [int(t) for t in np.asarray(input_ids).reshape(-1)]
    answers = [int(p) for p in answer_positions]
    context = [int(q) for q in context_positions]
    n, M = len(answers), len(context)
    if hidden.ndim != 2 or hidden.shape[0] != len(ids) - 1:
        raise ValueError("hidden must be [L-1, C] for input_ids of length L")
    for name, pos in (("answer", answers), ("context", context)):
        if any(b <= a for a, b in itertools.pairwise(pos)):
            raise ValueError(f"{name} positions must be strictly increasing")
    if answers and context and max(context) >= min(answers):
        raise ValueError("context positions must all precede every answer position")

    # Vision positions, block by block, row-major over (T, H, W); frames as (offset, H, W).
    blocks = []  # (start, offset into the vision vector, T, H, W)
    vision_pos: list[int] = []
    image_of_cell: list[int] = []
    images: dict[object, int] = {}
    for index, block in enumerate(vision_blocks):
        start, (T, H, W) = block[0], block[1]
        key = "all" if joint else block[2] if len(block) > 2 else ("block", index)
        if min(T, H, W) < 1:
            raise ValueError("vision block grids must be positive")
        blocks.append((int(start), len(vision_pos), int(T), int(H), int(W)))
        vision_pos.extend(range(int(start), int(start) + T * H * W))
        image_of_cell.extend([images.setdefault(key, len(images))] * (T * H * W))
    V = len(vision_pos)
    G = len(images)
    cell_image = np.array(image_of_cell, dtype=np.int64)
    if any(v < 0 or v >= hidden.shape[0] for v in vision_pos + context + answers[:-1]):
        raise ValueError("a position needing a hidden state is out of range")

    def logit(p: int, t: int) -> float:
        """h[p] . w[t] (+ bias[t])."""
        value = float(np.dot(hidden[p], np.asarray(lm_rows[t], dtype=np.float64)))
        return value + (float(lm_bias[t]) if lm_bias is not None else 0.0)

    cam_cache: dict[int, np.ndarray] = {}

    def cam(t: int) -> np.ndarray:
        """Eq. 1 over the whole vision vector: A_t[v] = relu(h[v] . w[t])."""
        if t not in cam_cache:
            cam_cache[t] = np.array([max(logit(v, t), 0.0) for v in vision_pos], dtype=np.float64)
        return cam_cache[t]

    def explain_one(t: int, ctx: list[int], mask: np.ndarray):
        """One token of class t with context positions ctx; cells where mask is False are 0.

        Returns (A, ECI, TAM, s, relevances over ctx).
        """
        A = cam(t) * mask
        rel = []
        for q in ctx:  # Eq. 4 relevance; never subtract the token's own class
            rel.append(0.0 if ids[q] == t else max(logit(q, t), 0.0))
        E = np.zeros(V, dtype=np.float64)
        if eci == "relevance":
            total = sum(rel)
            for q, r in zip(ctx, rel):
                E += r / (total + 1e-8) * (cam(ids[q]) * mask)
        elif eci == "uniform":
            valid = [q for q in ctx if ids[q] != t]
            for q in valid:
                E += (1.0 / len(valid)) * (cam(ids[q]) * mask)
        s = np.zeros(G)
        for g in range(G):  # Eq. 5 closed form, for every image on its own cells
            on = cell_image == g
            ee = float(np.dot(E[on], E[on]))
            s[g] = float(np.dot(A[on], E[on])) / ee if ee > 0.0 else 0.0
        refined = np.maximum(A - s[cell_image] * E, 0.0)  # Eq. 2
        tam = refined.copy()
        if filter:
            for _start, off, T, H, W in blocks:
                for f in range(T):  # every image / every video frame separately
                    lo = off + f * H * W
                    frame = refined[lo : lo + H * W].reshape(H, W)
                    tam[lo : lo + H * W] = np.maximum(rank_gaussian_filter_ref(frame, kernel_size), 0.0).reshape(-1)
            tam = tam * mask
        return A, refined, tam, s, rel, E

    if filter:  # validate k even when there is nothing to filter
        rank_gaussian_filter_ref(np.zeros((1, 1)), kernel_size)
    all_blocks = np.ones(V, dtype=np.float64)
    out = {k: np.zeros((n, V)) for k in ("cam", "eci", "tam")}
    out["scale"] = np.zeros((n, G))
    out["interference"] = np.zeros((n, V))
    out["text_relevance"] = np.zeros((n, M))
    out["answer_relevance"] = np.zeros((n, n))
    for i, P in enumerate(answers):
        ctx = context + answers[:i]
        A, refined, tam, s, rel, E = explain_one(ids[P], ctx, all_blocks)
        out["cam"][i], out["eci"][i], out["tam"][i], out["scale"][i] = A, refined, tam, s
        out["interference"][i] = E
        out["text_relevance"][i, :] = rel[:M]
        out["answer_relevance"][i, :i] = rel[M:]

    if candidates is not None:
        cand = np.asarray(candidates).astype(np.int64)
        if cand.ndim != 2 or cand.shape[0] != n:
            raise ValueError("candidates must be [n, K]")
        out["candidate_tam"] = np.zeros((n, cand.shape[1], V))
        for i in range(n):
            ctx = context + answers[:i]
            for j in range(cand.shape[1]):
                out["candidate_tam"][i, j] = explain_one(int(cand[i, j]), ctx, all_blocks)[2]

    out["prompt_tam"] = np.zeros((M, V))
    out["prompt_relevance"] = np.zeros((M, M))
    for k, q in enumerate(context):
        mask = np.zeros(V, dtype=np.float64)
        for start, off, T, H, W in blocks:
            if start < q:  # only the vision blocks before this prompt token
                mask[off : off + T * H * W] = 1.0
        _A, _r, tam, _s, rel, _E = explain_one(ids[q], context[:k], mask)
        out["prompt_tam"][k] = tam
        out["prompt_relevance"][k, :k] = rel
    return out


if __name__ == "__main__":
    e = math.exp
    # Filter by hand: constant grid, k=1 identity, negative mean, 1x1 grid, bad k.
    g = np.random.default_rng(0).normal(size=(4, 5))
    assert np.array_equal(rank_gaussian_filter_ref(np.full((3, 4), 2.5)), np.full((3, 4), 2.5))
    assert np.array_equal(rank_gaussian_filter_ref(np.abs(g), 1), np.abs(g))  # k=1: identity
    assert np.array_equal(rank_gaussian_filter_ref(g, 1), np.maximum(g, 0))  # ...m<=0 rule first
    assert np.array_equal(rank_gaussian_filter_ref(-np.abs(g) - 1, 3), np.zeros((4, 5)))
    assert np.array_equal(rank_gaussian_filter_ref(np.array([[7.0]]), 5), np.array([[7.0]]))
    for bad in (0, 2, -1, 3.0):
        try:
            rank_gaussian_filter_ref(g, bad)
            raise AssertionError(bad)
        except ValueError:
            pass
    # 3x3 values 1..9: centre window is symmetric about its median -> exactly 5.
    assert abs(rank_gaussian_filter_ref(np.arange(1.0, 10.0).reshape(3, 3))[1, 1] - 5.0) < 1e-12
    # Spike 9 at the centre of zeros. Centre: m=1, sd=sqrt(8), 2 sigma^2 = 16, a_8 = 9.
    spike = np.zeros((3, 3))
    spike[1, 1] = 9.0
    d = rank_gaussian_filter_ref(spike)
    want = 9 * e(-1) / (1 + 2 * (e(-1 / 16) + e(-1 / 4) + e(-9 / 16) + e(-1)))
    assert abs(d[1, 1] - want) < 1e-12, (d[1, 1], want)
    # Corner: reflect padding puts the spike 4 times in the window (5 zeros, 4 nines):
    # m=4, sd=sqrt(20), sigma^2=20/16, 2 sigma^2 = 2.5; weights on a_5..a_8 (d = 1..4).
    gw = [e(-((j - 4) ** 2) / 2.5) for j in range(9)]
    assert abs(d[0, 0] - 9 * sum(gw[5:]) / sum(gw)) < 1e-12
    # Edge (0,1): window rows [1,0,1], cols [0,1,2] -> spike twice (7 zeros, 2 nines):
    # m=2, sd=sqrt((7*4+2*49)/9)=sqrt(14), 2 sigma^2 = 2*14/4 = 7.
    gw = [e(-((j - 4) ** 2) / 7) for j in range(9)]
    assert abs(d[0, 1] - 9 * sum(gw[7:]) / sum(gw)) < 1e-12

    # Tiny random example: ids 0..L-1, image block (T=1,4x4) at 3, video (2,3,3) at 21.
    rng = np.random.default_rng(1)
    L, C, vocab = 48, 8, 12
    ids = rng.integers(0, vocab, size=L)
    hidden = rng.normal(size=(L - 1, C))
    rows = {t: rng.normal(size=C) for t in range(vocab)}
    bias = {t: float(rng.normal()) for t in range(vocab)}
    blocks = [(3, (1, 4, 4)), (21, (2, 3, 3))]
    ctx = [1, 2, 19, 20, 40, 41]
    ans = [43, 44, 45, 46, 47]
    ids[41] = ids[43]  # an own-class context token
    cands = rng.integers(0, vocab, size=(len(ans), 3))
    res = explain_ref(hidden, ids, rows, bias, blocks, ans, ctx, candidates=cands)
    for name, arr in res.items():
        assert arr.dtype == np.float64 and np.all(np.isfinite(arr)), name
        print(f"{name:18s} {arr.shape}")
    assert res["text_relevance"][0, 5] == 0.0 and np.all(res["tam"] >= 0)
    assert np.all(res["prompt_tam"][:2] == 0.0) and np.all(res["prompt_tam"][2:4, 16:] == 0.0)
    off = explain_ref(hidden, ids, rows, None, blocks, ans, ctx, eci="off", filter=False)
    assert np.array_equal(off["tam"], off["cam"]) and np.all(off["scale"] == 0)
    lone = explain_ref(hidden, ids, rows, bias, blocks, ans[:1], [], filter=False)
    assert np.array_equal(lone["eci"], lone["cam"]) and lone["prompt_tam"].shape == (0, 34)
    print("reference self-check OK")
