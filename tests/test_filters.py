"""The rank Gaussian, median and Gaussian filters: reference agreement, edge cases, properties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tamx import TamxError, filter_grid, filter_maps
from tamx.filters import opencv_gaussian_sigma

from .reference import rank_gaussian_filter_ref

SHAPES = [(1, 1), (1, 9), (9, 1), (2, 2), (5, 7), (12, 4)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_rank_gaussian_agrees_with_reference(shape, k):
    grid = np.random.default_rng(k).gamma(0.5, size=shape).astype(np.float32)
    grid[grid < 0.3] = 0.0
    expected = rank_gaussian_filter_ref(grid.astype(np.float64), k)
    np.testing.assert_allclose(filter_grid(grid, "rank-gaussian", k), expected, rtol=1e-5, atol=1e-7)


def test_constant_window_returns_its_value():
    grid = np.full((4, 5), 2.5, dtype=np.float32)
    np.testing.assert_array_equal(filter_grid(grid), grid)
    assert np.isfinite(filter_grid(grid)).all()


def test_all_zeros_stay_zero():
    assert not filter_grid(np.zeros((6, 6), np.float32)).any()


def test_negative_inputs_follow_the_equations():
    grid = np.random.default_rng(0).normal(size=(6, 7)).astype(np.float32)
    out = filter_grid(grid)
    np.testing.assert_allclose(out, rank_gaussian_filter_ref(grid.astype(np.float64), 3), rtol=1e-5, atol=1e-7)
    all_negative = -np.abs(grid) - 0.1
    assert not filter_grid(all_negative).any(), "a window with mean <= 0 outputs 0"


@pytest.mark.parametrize("shape", [(1, 8), (8, 1)])
def test_single_row_and_column_grids(shape):
    grid = np.arange(8, dtype=np.float32).reshape(shape) + 1
    out = filter_grid(grid)
    assert out.shape == shape
    np.testing.assert_allclose(out, rank_gaussian_filter_ref(grid.astype(np.float64), 3), rtol=1e-6)


def test_kernel_size_one_is_the_identity_on_maps():
    grid = np.random.default_rng(1).random((5, 6)).astype(np.float32)
    for name in ("rank-gaussian", "median", "gaussian"):
        np.testing.assert_array_equal(filter_grid(grid, name, 1), grid)


@pytest.mark.parametrize("k", [0, 2, 4, -3, 2.0, True])
def test_even_or_invalid_kernel_size_is_an_error(k):
    with pytest.raises(TamxError, match="kernel size"):
        filter_grid(np.ones((3, 3)), "rank-gaussian", k)


def test_unknown_filter_is_an_error():
    with pytest.raises(TamxError, match="unknown filter 'box'"):
        filter_grid(np.ones((3, 3)), "box")


def test_a_spike_of_salt_noise_is_suppressed():
    grid = np.zeros((7, 7), np.float32)
    grid[3, 3] = 100.0
    # A smoothed median: the lone spike keeps only the weight of the top rank (~6%).
    assert filter_grid(grid).max() < 0.1 * 100.0
    assert not filter_grid(grid, "median").any()


@pytest.mark.parametrize("k", [3, 5])
def test_median_matches_scipy_with_mirror_padding(k):
    grid = np.random.default_rng(2).random((9, 11)).astype(np.float32)
    expected = scipy.ndimage.median_filter(grid, size=k, mode="mirror")
    np.testing.assert_array_equal(filter_grid(grid, "median", k), expected)


@pytest.mark.parametrize("k", [3, 5])
def test_gaussian_matches_opencv(k):
    cv2 = pytest.importorskip("cv2")
    grid = np.random.default_rng(3).random((9, 11)).astype(np.float32)
    expected = cv2.GaussianBlur(grid, (k, k), opencv_gaussian_sigma(k), borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(filter_grid(grid, "gaussian", k), expected, rtol=1e-5, atol=1e-6)


def test_frames_are_filtered_separately():
    rng = np.random.default_rng(4)
    frames = [rng.random((4, 5)).astype(np.float32), rng.random((3, 3)).astype(np.float32)]
    flat = np.concatenate([f.ravel() for f in frames])[None].repeat(3, 0)
    table = np.array([[0, 4, 5], [20, 3, 3]])
    out = filter_maps(flat, table)
    for row in out:
        np.testing.assert_allclose(row[:20].reshape(4, 5), filter_grid(frames[0]), rtol=1e-6)
        np.testing.assert_allclose(row[20:].reshape(3, 3), filter_grid(frames[1]), rtol=1e-6)


grids = arrays(
    np.float32,
    st.tuples(st.integers(1, 7), st.integers(1, 7)),
    elements=st.floats(0, 1e3, width=32, allow_subnormal=False),
)


@settings(max_examples=60, deadline=None)
@given(grid=grids, k=st.sampled_from([1, 3, 5]), scale=st.floats(1e-3, 1e3))
def test_scale_equivariance(grid, k, scale):
    scaled = (grid * np.float32(scale)).astype(np.float32)
    np.testing.assert_allclose(
        filter_grid(scaled, "rank-gaussian", k), filter_grid(grid, "rank-gaussian", k) * scale, rtol=1e-4, atol=1e-30
    )


def _numba_rank_gaussian(maps: np.ndarray, frames: np.ndarray, k: int = 3) -> np.ndarray:
    """The numba kernel's rank Gaussian (the window function, which serves k > 3), in float64."""
    from tamx import filter_kernels, filters

    return filter_kernels._filter_frames(maps.astype(np.float64), frames, k, filters._NO_WEIGHTS, filters.RANK_GAUSSIAN)


def _frames_of(shapes: list[tuple[int, int]]) -> np.ndarray:
    offsets = np.cumsum([0] + [h * w for h, w in shapes])
    return np.array([[offset, h, w] for offset, (h, w) in zip(offsets.tolist(), shapes)])


@pytest.mark.slow  # 120 hypothesis examples, ~40 s here; every small grid below stays in the default suite
@settings(max_examples=120, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 7), st.integers(1, 7)), min_size=1, max_size=4),
    count=st.integers(1, 3),
    data=st.data(),
)
def test_the_numpy_3x3_rank_gaussian_equals_the_numba_kernel(shapes, count, data):
    """The default filter runs in numpy (no numba at start-up): it must give the numba window
    function's results to 1e-12 (all but numpy's own exp is the same arithmetic in the same
    order), over random maps of several frames of any shape (1 x 1, 1 x N, N x 1: the reflect
    padding of one cell repeats it), zeros, negative and tiny values included."""
    from tamx.filters import rank_gaussian_3x3

    frames = _frames_of(shapes)
    size = int(frames[-1, 0] + frames[-1, 1] * frames[-1, 2])
    maps = data.draw(
        arrays(
            np.float32,
            (count, size),
            elements=st.one_of(
                st.just(0.0),
                st.floats(-1e30, 1e30, allow_subnormal=False).map(np.float32),
                st.floats(-1e-30, 1e-30, allow_subnormal=False).map(np.float32),
            ),
        )
    )
    expected = _numba_rank_gaussian(maps, frames)
    np.testing.assert_allclose(rank_gaussian_3x3(maps, frames), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("height", range(1, 7))
@pytest.mark.parametrize("width", range(1, 7))
def test_the_numpy_3x3_rank_gaussian_equals_the_numba_kernel_on_every_small_grid(height, width):
    """Every grid shape up to 6 x 6 (1 x N and N x 1 included), in three frames of 40 maps, a
    quarter of the cells 0 and some negative; and filter_maps' float32 result is the same."""
    from tamx.filters import rank_gaussian_3x3

    rng = np.random.default_rng(height * 7 + width)
    frames = _frames_of([(height, width)] * 3)
    maps = rng.gamma(0.7, size=(40, 3 * height * width)).astype(np.float32)
    maps[rng.random(maps.shape) < 0.25] = 0.0
    maps[rng.random(maps.shape) < 0.05] *= -1
    expected = _numba_rank_gaussian(maps, frames)
    np.testing.assert_allclose(rank_gaussian_3x3(maps, frames), expected, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(filter_maps(maps, frames), expected.astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(grid=grids, k=st.sampled_from([3, 5]))
def test_output_within_window_min_and_max(grid, k):
    out = filter_grid(grid, "rank-gaussian", k)
    padded = np.pad(grid, k // 2, mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k))
    low, high = windows.min(axis=(2, 3)), windows.max(axis=(2, 3))
    assert np.all(out >= low * (1 - 1e-6) - 1e-30) and np.all(out <= high * (1 + 1e-6) + 1e-30)


def _adaptive_median_ref(grid: np.ndarray, k: int) -> np.ndarray:
    """Plain adaptive median: windows 3..k over reflect padding, stage A then stage B."""
    half = k // 2
    padded = np.pad(grid, half, mode="reflect") if half else grid
    out = np.empty_like(grid)
    for y in range(grid.shape[0]):
        for x in range(grid.shape[1]):
            z = grid[y, x]
            result = z
            for s in range(3, k + 1, 2):
                r = s // 2
                window = padded[y + half - r : y + half + r + 1, x + half - r : x + half + r + 1]
                low, median, high = window.min(), np.sort(window.ravel())[s * s // 2], window.max()
                result = median
                if low < median < high:
                    result = z if low < z < high else median
                    break
            out[y, x] = result
    return out


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 9), (12, 4)])
@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_adaptive_median_agrees_with_reference(shape, k):
    rng = np.random.default_rng(k + shape[0])
    grid = rng.random(shape).astype(np.float32)
    grid[rng.random(shape) < 0.2] = 0.0
    grid[rng.random(shape) < 0.1] = 1.0
    np.testing.assert_array_equal(filter_grid(grid, "adaptive-median", k), _adaptive_median_ref(grid, k))


def test_adaptive_median_by_hand():
    # Centre: window 1 2 3 4 6 7 8 9 100, median 6 lies strictly inside: the impulse 100 becomes 6.
    # (0, 1) = 2 lies strictly inside its reflect-padded window (1 .. 100): kept.
    # (0, 0) = 1 is its window's minimum (1 2 2 4 4 100 100 100 100): replaced by the median 4.
    grid = np.array([[1, 2, 3], [4, 100, 6], [7, 8, 9]], dtype=np.float32)
    out = filter_grid(grid, "adaptive-median", 3)
    assert out[1, 1] == 6.0 and out[0, 1] == 2.0 and out[0, 0] == 4.0


def test_adaptive_median_grows_its_window_over_a_cluster():
    # A 3x3 cluster of zeros: its 3x3 median is an impulse (0 = min = max), so k = 5 looks at
    # the 5x5 window: nine zeros and 1..16 sorted, median (index 12) = 4, and z = 0 is the min.
    grid = np.zeros((5, 5), dtype=np.float32)
    ring = [(y, x) for y in range(5) for x in range(5) if not (1 <= y <= 3 and 1 <= x <= 3)]
    for value, (y, x) in enumerate(ring, start=1):
        grid[y, x] = value
    assert filter_grid(grid, "adaptive-median", 3)[2, 2] == 0.0
    assert filter_grid(grid, "adaptive-median", 5)[2, 2] == 4.0


def test_adaptive_median_is_a_cli_filter_choice():
    from tamx.pipeline.cli import explain

    choices = next(p for p in explain.params if p.name == "filter_name").type.choices
    assert "adaptive-median" in choices


@pytest.mark.slow  # compiles the kernels into an empty cache: ~15 s
def test_a_new_process_loads_the_compiled_kernels_from_numba_cache(tmp_path):
    """Every `tamx explain` is a new process: it must find the kernels numba cached, not compile them
    again (a kernel that captured another jitted function missed the cache every time: seconds a run)."""
    import os
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from tamx import explain_sample, filter_kernels, filters\n"
        "from tamx.synthetic import synthetic_sample\n"
        "for name in filters.FILTERS:\n"
        "    filters.filter_maps(np.ones((2, 12), np.float32), np.array([[0, 3, 4]]), name, 3)\n"
        "explain_sample(synthetic_sample('a', dtype='bfloat16'))\n"
        "filters.load_compiled_3x3()\n"
        "twin = (filter_kernels._rank_gaussian_3x3_exponent, filter_kernels._rank_gaussian_3x3_finish)\n"
        "for kernel in (filter_kernels._filter_frames, *twin):\n"
        "    print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]  # fmt: skip
    first, second = ([tuple(map(int, line.split())) for line in r.stdout.splitlines()] for r in runs)
    assert all(misses >= 1 for _, misses in first)  # the first process compiled them (an empty cache)
    assert second == [(1, 0)] * 3  # the second loaded them: one signature, every filter


@pytest.mark.parametrize("height", range(1, 8))
def test_the_compiled_3x3_rank_gaussian_is_bit_identical_to_the_numpy_code(height):
    """Runs of many samples filter with the numba twin of the numpy filter (no numba import for
    a small run): every bit of every map must be the same either way, or a map would depend on
    the size of the run it was computed in. Every grid up to 7 x 7, in three frames of 20 maps,
    zeros of both signs, negative, tiny, huge, infinite and NaN values included (a NaN map cell
    is NaN either way)."""
    from tamx.filters import rank_gaussian_3x3

    rng = np.random.default_rng(height)
    specials = np.array([0.0, -0.0, 1e-38, -1e-38, 1e-45, 3e38, -3e38, np.inf, -np.inf, np.nan], dtype=np.float32)
    for width in range(1, 8):
        frames = _frames_of([(height, width), (width, height), (height, width)])
        size = 3 * height * width
        maps = (rng.gamma(0.7, size=(20, size)) * 10.0 ** rng.integers(-30, 30, size=(20, 1))).astype(np.float32)
        maps[rng.random(maps.shape) < 0.25] = 0.0
        maps[rng.random(maps.shape) < 0.05] *= -1
        rare = rng.random(maps.shape) < 0.03
        maps[rare] = rng.choice(specials, size=int(rare.sum()))
        with np.errstate(all="ignore"):
            numpy_maps = rank_gaussian_3x3(maps, frames, compiled=False)
            compiled_maps = rank_gaussian_3x3(maps, frames, compiled=True)
        nan = np.isnan(numpy_maps)  # NaN in the same cells; its sign bit is the arithmetic's own
        np.testing.assert_array_equal(np.isnan(compiled_maps), nan)
        np.testing.assert_array_equal(compiled_maps[~nan].view(np.int64), numpy_maps[~nan].view(np.int64))
