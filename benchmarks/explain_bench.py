"""Benchmark of `tamx.explain_sample` at Qwen2-VL-2B size, against a naive numpy TAM and the matmul floor.

Synthetic samples (hidden size 1536, vocabulary 151936, bfloat16 hidden states, top-3
candidates, 20 prompt tokens) for one 640x480 image and a 10-frame video; then end to end:
a run of such samples on disk, `tamx explain` as a whole process with --workers 1 and 2,
against a plain vectorised numpy TAM run in-process over the same samples (one .npz each)
and against the floor (reading the sample objects' bytes + the two unavoidable products).

    cd /work/wt-bench && python benchmarks/explain_bench.py            # full run
    python benchmarks/explain_bench.py --quick                          # ~1 minute, 20 samples
    python benchmarks/explain_bench.py --no-cases --samples 200         # the end-to-end part only
    python benchmarks/explain_bench.py --samples 500 --repeats 15 --profile

Timings are medians of interleaved repeats (time.perf_counter) after a warm-up call, so
numba's compile time is excluded and machine noise hits every method alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Run from a checkout without installing: `python benchmarks/explain_bench.py`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tamx
import tamx.explain as tamx_explain
from tamx import ExplainSettings, Sample, create_run, explain_sample, open_run
from tamx.synthetic import synthetic_run_info, synthetic_sample

HIDDEN_SIZE = 1536  # Qwen2-VL-2B
VOCAB_SIZE = 151936  # Qwen2-VL's vocabulary: token ids are spread like a real run's
N_CONTEXT = 20  # prompt text tokens
TOP_K = 3
DTYPE = "bfloat16"
ANSWERS_ONLY = ExplainSettings(candidates=False, prompt=False)
TARGET_MS = 15.0  # whole explain of the 391 x 128 case
TARGET_FLOOR_RATIO = 2.0


@dataclass(frozen=True)
class Case:
    """One benchmark input: vision grids (T, H, W) and the number of answer tokens."""

    name: str
    grids: tuple[tuple[int, int, int], ...]
    n_answer: int

    @property
    def vision_size(self) -> int:
        return sum(t * h * w for t, h, w in self.grids)


CASES = (
    Case("image 640x480 (1,17,23)", ((1, 17, 23),), 20),
    Case("image 640x480 (1,17,23)", ((1, 17, 23),), 60),
    Case("image 640x480 (1,17,23)", ((1, 17, 23),), 128),
    Case("video 10 frames (5,16,16)", ((5, 16, 16),), 60),
    Case("video 10 frames (10,16,16)", ((10, 16, 16),), 60),
)
STORE_CASE = CASES[2]


def make_sample(case: Case, seed: int = 0, sample_id: str = "bench", media: bool = False) -> Sample:
    """A synthetic sample of `case` at Qwen2-VL-2B size, stored as a real encode would (bfloat16)."""
    return synthetic_sample(
        sample_id=sample_id,
        grids=case.grids,
        n_answer=case.n_answer,
        n_context=N_CONTEXT,
        hidden_size=HIDDEN_SIZE,
        vocab_size=VOCAB_SIZE,
        top_k=TOP_K,
        dtype=DTYPE,
        seed=seed,
        media=media,
    )


# ---------------------------------------------------------------------------- naive numpy TAM


def decode_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 stored as uint16 bits -> float32."""
    return (np.ascontiguousarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def rank_gaussian_numpy(grid: np.ndarray, k: int = 3) -> np.ndarray:
    """Eqs. 6-7 on one [H, W] frame, vectorised: reflect pad, k x k windows, sort, rank Gaussian."""
    n, centre = k * k, (k * k) // 2
    padded = np.pad(grid, k // 2, mode="reflect")
    windows = np.sort(sliding_window_view(padded, (k, k)).reshape(*grid.shape, n), axis=-1)
    mean = windows.mean(axis=-1)
    sd = windows.std(axis=-1)
    ranks_sq = ((np.arange(n) - centre) ** 2).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        two_sigma_sq = 2.0 * (sd / mean) ** 2
        weights = np.exp(-ranks_sq / two_sigma_sq[..., None])
    weights[..., centre] = 1.0  # sd == 0 (a constant window) leaves only the median: its value
    out = (weights * windows).sum(axis=-1) / weights.sum(axis=-1)
    return np.where(mean > 0, out, 0.0).astype(np.float32)


def naive_tam(sample: Sample, kernel_size: int = 3) -> np.ndarray:
    """TAM of every answer token written straight from docs/method.md, one token at a time: [N, V] float32.

    Per answer token i: A_i = relu(Hv @ w[a_i]); for each context token k (prompt text and
    earlier answers) its map A_k = relu(Hv @ w[ids[q_k]]) and r_i[k] = relu(h[q_k] . w[a_i])
    (0 for the own class); E_i, the closed-form s_i, relu(A_i - s_i E_i), then the rank
    Gaussian filter per image / video frame.
    """
    assert sample.hidden_dtype == DTYPE and sample.lm_head.bias is None
    hidden = decode_bfloat16(sample.hidden)
    head = decode_bfloat16(sample.lm_head.rows)
    row = {int(t): head[i] for i, t in enumerate(sample.lm_head.ids)}
    ids = sample.input_ids
    v_pos = np.concatenate([np.arange(b.start, b.stop) for b in sample.vision_blocks])
    hv = hidden[v_pos]
    frames, offset = [], 0
    for block in sample.vision_blocks:
        t, h, w = block.grid
        for _ in range(t):
            frames.append((offset, h, w))
            offset += h * w
    answers = sample.answer_positions.tolist()
    context = sample.context_positions.tolist()
    out = np.zeros((len(answers), len(v_pos)), dtype=np.float32)
    for i, p in enumerate(answers):
        a_i = int(ids[p])
        cam = np.maximum(hv @ row[a_i], 0.0)
        ctx = context + answers[:i]
        maps, rel = [], []
        for q in ctx:
            maps.append(np.maximum(hv @ row[int(ids[q])], 0.0))
            rel.append(0.0 if ids[q] == a_i else max(float(hidden[q] @ row[a_i]), 0.0))
        estimate = np.zeros(len(v_pos), dtype=np.float32)
        total = sum(rel)
        for r, a_k in zip(rel, maps):
            estimate += np.float32(r / (total + 1e-8)) * a_k
        ee = float(estimate @ estimate)
        scale = float(cam @ estimate) / ee if ee > 0 else 0.0
        eci = np.maximum(cam - np.float32(scale) * estimate, 0.0)
        for off, h, w in frames:
            grid = eci[off : off + h * w].reshape(h, w)
            out[i, off : off + h * w] = np.maximum(rank_gaussian_numpy(grid, kernel_size), 0.0).ravel()
    return out


def check_naive_agrees(sample: Sample, tam: np.ndarray) -> float:
    """Assert the naive TAM equals tamx's to 1e-4 of the largest value; return the relative error."""
    naive = naive_tam(sample)
    error = float(np.max(np.abs(naive - tam)) / max(float(np.max(np.abs(tam))), 1e-30))
    assert error <= 1e-4, f"sample {sample.id}: naive TAM differs from tamx by {error:.2e} (relative)"
    return error


# ---------------------------------------------------------------------------- the matmul floor


@dataclass
class FloorInputs:
    """The float32 operands of the two unavoidable products, decoded before timing."""

    vision: np.ndarray  # [V, C]
    classes: np.ndarray  # [U, C]: every class tamx needs a map of
    context: np.ndarray  # [Q, C]: prompt text + every answer but the last
    answer_rows: np.ndarray  # [N, C]: the LM row of each answer token

    def run(self) -> None:
        self.vision @ self.classes.T
        self.context @ self.answer_rows.T


def floor_inputs(sample: Sample, settings: ExplainSettings) -> FloorInputs:
    """Operands for the classes `settings` makes tamx use (answer, context, candidate, prompt ids)."""
    hidden = decode_bfloat16(sample.hidden)
    ids = sample.input_ids
    answers, context = sample.answer_positions, sample.context_positions
    parts = [ids[answers], ids[context]]  # context maps enter E_i; prompt ids are the same ids
    if settings.candidates and sample.candidate_ids is not None:
        parts.append(sample.candidate_ids.ravel())
    classes = np.unique(np.concatenate(parts))
    head = sample.lm_head
    v_pos = np.concatenate([np.arange(b.start, b.stop) for b in sample.vision_blocks])
    pool = np.union1d(context, answers[:-1])
    return FloorInputs(
        vision=np.ascontiguousarray(hidden[v_pos]),
        classes=decode_bfloat16(head.rows[np.searchsorted(head.ids, classes)]),
        context=np.ascontiguousarray(hidden[pool]),
        answer_rows=decode_bfloat16(head.rows[np.searchsorted(head.ids, ids[answers])]),
    )


# ---------------------------------------------------------------------------- timing


def interleaved_times(methods: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each method in each of `repeats` rounds; each round runs them all, in a rotated order."""
    names = list(methods)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            methods[name]()
            times[name].append(time.perf_counter() - start)
    return times


@dataclass
class CaseResult:
    case: Case
    classes: int  # U of the default settings
    answer_classes: int  # U of the answers-only settings
    context_size: int  # Q
    error: float
    times: dict[str, list[float]]  # seconds of every repeat

    def seconds(self, statistic: Callable[[list[float]], float] = statistics.median) -> dict[str, float]:
        return {name: statistic(values) for name, values in self.times.items()}


def bench_case(case: Case, repeats: int) -> CaseResult:
    sample = make_sample(case)
    floor = floor_inputs(sample, ExplainSettings())
    floor_answers = floor_inputs(sample, ANSWERS_ONLY)
    # Warm-up: numba compiles (or loads its cache) here; also the honesty check.
    maps = explain_sample(sample)
    explain_sample(sample, ANSWERS_ONLY)
    error = check_naive_agrees(sample, maps.final)
    floor.run()
    floor_answers.run()
    methods = {
        "tamx": lambda: explain_sample(sample),
        "tamx-answers": lambda: explain_sample(sample, ANSWERS_ONLY),
        "naive": lambda: naive_tam(sample),
        "floor": floor.run,
        "floor-answers": floor_answers.run,
    }
    times = interleaved_times(methods, repeats)
    return CaseResult(case, len(floor.classes), len(floor_answers.classes), len(floor.context), error, times)


PROFILED_STEPS = (
    "decode_hidden",
    "activation_maps",
    "class_logits",
    "relevance",
    "relevance_weights",
    "interference",
    "least_squares_scale",
    "remove_interference",
    "filter_maps",
    "_explain_targets",
)
TARGET_STEPS = PROFILED_STEPS[3:9]  # the steps called inside _explain_targets


def profile_steps(sample: Sample, settings: ExplainSettings, repeats: int) -> list[tuple[str, float]]:
    """Median seconds per explain_sample call spent in each helper tamx.explain calls (wrapped with timers)."""
    names = [name for name in PROFILED_STEPS if hasattr(tamx_explain, name)]
    saved = {name: getattr(tamx_explain, name) for name in names}
    spent = dict.fromkeys(names, 0.0)

    def timed(name: str, func: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    explain_sample(sample, settings)
    rounds: list[dict[str, float]] = []
    try:
        for name in names:
            setattr(tamx_explain, name, timed(name, saved[name]))
        for _ in range(repeats):
            spent.update(dict.fromkeys(names, 0.0))
            start = time.perf_counter()
            explain_sample(sample, settings)
            total = time.perf_counter() - start
            targets = spent.get("_explain_targets", 0.0)
            steps = {name: value for name, value in spent.items() if name != "_explain_targets"}
            inside = sum(value for name, value in steps.items() if name in TARGET_STEPS)
            rounds.append(
                {
                    "total": total,
                    **steps,
                    "_explain_targets: rest (cam gather, masks)": targets - inside,
                    "explain_sample: rest (unique, LM rows, outputs)": total - targets - (sum(steps.values()) - inside),
                }
            )
    finally:
        for name, func in saved.items():
            setattr(tamx_explain, name, func)
    return [(name, statistics.median(r[name] for r in rounds)) for name in rounds[0]]


def profile_case(case: Case, repeats: int) -> list[tuple[str, float, float]]:
    """Milliseconds per step of tamx.explain for `case`: (step, default settings, answers only)."""
    sample = make_sample(case)
    default = profile_steps(sample, ExplainSettings(), repeats)
    answers = dict(profile_steps(sample, ANSWERS_ONLY, repeats))
    return [(name, 1e3 * value, 1e3 * answers.get(name, 0.0)) for name, value in default]


# ---------------------------------------------------------------------------- end to end


def rank_gaussian_frames(maps: np.ndarray, k: int = 3) -> np.ndarray:
    """rank_gaussian_numpy over a stack of frames [T, H, W] at once."""
    n, centre, pad = k * k, (k * k) // 2, k // 2
    padded = np.pad(maps, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    windows = np.sort(sliding_window_view(padded, (k, k), axis=(1, 2)).reshape(*maps.shape, n), axis=-1)
    mean, sd = windows.mean(axis=-1), windows.std(axis=-1)
    ranks_sq = ((np.arange(n) - centre) ** 2).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        weights = np.exp(-ranks_sq / (2.0 * (sd / mean) ** 2)[..., None])
    weights[..., centre] = 1.0
    out = (weights * windows).sum(axis=-1) / weights.sum(axis=-1)
    return np.where(mean > 0, out, 0.0).astype(np.float32)


def numpy_reference(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """docs/method.md's TAM of every answer token in plain vectorised numpy (two products, ECI with
    relevance weights, rank Gaussian per frame): what a user would write without tamx. [N, V]."""
    hidden = decode_bfloat16(arrays["hidden"])
    head_ids, head = arrays["lm_head_ids"], arrays["lm_head_rows"]
    ids, answers, context = arrays["input_ids"], arrays["answer_positions"], arrays["context_positions"]
    starts, grids = arrays["vision_starts"], arrays["vision_grids"]
    v_pos = np.concatenate([np.arange(s, s + t * h * w) for s, (t, h, w) in zip(starts, grids)])
    pool = np.union1d(context, answers[:-1])
    classes, pool_class = np.unique(np.concatenate([ids[answers], ids[pool]]), return_inverse=True)
    answer_class, pool_class = pool_class[: len(answers)], pool_class[len(answers) :]
    w = decode_bfloat16(head[np.searchsorted(head_ids, classes)])
    maps = np.maximum(hidden[v_pos] @ w.T, 0.0)  # [V, U]
    logits = hidden[pool] @ w[answer_class].T  # [Q, N]
    visible = pool[:, None] < answers[None, :]  # causal: what precedes the answer token
    same = ids[pool][:, None] == ids[answers][None, :]
    r = np.where(visible & ~same, np.maximum(logits, 0.0), 0.0)  # [Q, N]
    weights = (r / (r.sum(axis=0, keepdims=True) + 1e-8)).astype(np.float32)
    estimate = (maps[:, pool_class] @ weights).T  # [N, V]
    cam = maps[:, answer_class].T
    ee = np.einsum("nv,nv->n", estimate, estimate)
    scale = np.where(ee > 0, np.einsum("nv,nv->n", cam, estimate) / np.where(ee > 0, ee, 1), 0.0)
    eci = np.maximum(cam - scale[:, None].astype(np.float32) * estimate, 0.0)
    out, offset = np.zeros_like(eci), 0
    for t, h, w_ in grids:
        for _ in range(t):
            frame = eci[:, offset : offset + h * w_].reshape(-1, h, w_)
            out[:, offset : offset + h * w_] = np.maximum(rank_gaussian_frames(frame), 0.0).reshape(len(eci), -1)
            offset += h * w_
    return out


def reference_arrays(sample: Sample) -> dict[str, np.ndarray]:
    """What the numpy reference reads from its own file per sample (bf16 as uint16 bits)."""
    head = sample.lm_head.subset(sample.needed_token_ids())
    return {
        "hidden": sample.hidden,
        "input_ids": sample.input_ids,
        "answer_positions": sample.answer_positions,
        "context_positions": sample.context_positions,
        "lm_head_ids": head.ids,
        "lm_head_rows": head.rows,
        "vision_starts": np.array([b.start for b in sample.vision_blocks]),
        "vision_grids": np.array([b.grid for b in sample.vision_blocks]),
    }


@dataclass
class EndToEndResult:
    samples: int
    build_s: float
    store_mb: float
    files_per_sample: float
    files_per_variant: float
    error: float
    seconds: dict[str, tuple[float, float]]  # label -> (wall, CPU) seconds
    one_ratios: list[float]  # the one-sample run / python -c "import numpy", side by side, each round


REFERENCE = "numpy reference (in-process, answers' TAM)"
IDLE = "tamx explain, nothing to do (process start-up + listing)"
ONE = "tamx explain of one sample (start-up, 1 sample)"
NUMPY = 'python -c "import numpy" (baseline for the one-sample run)'
TARGET_ONE_RATIO = 2.5  # the one-sample run / python -c "import numpy" (issue 25)
TARGET_RUN_RATIO = 1.5  # tamx explain --workers 2 / the floor (issue 25)
FLOOR = "floor (read bytes + 2 products)"
NAIVE_SAMPLES = 5  # the per-token reference takes ~1.7 s a sample: timed on a few, scaled to the run


def reader_sample(path: Path, sample_id: str) -> Sample:
    return open_run(path).sample(sample_id, media=False)


def tamx_process(run: Path, workers: int, variant: str, overwrite: bool = True) -> tuple[float, float]:
    """Wall seconds of `tamx explain RUN --workers W` as a whole process (start-up included)."""
    command = [sys.executable, "-m", "tamx.pipeline", "explain", str(run), "--workers", str(workers)]
    command += ["--variant", variant, "--quiet"] + (["--overwrite"] if overwrite else [])
    return timed_process(command)


def timed_process(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one command."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


class Clock:
    """Wall and CPU seconds of the code run inside `with clock:` blocks, summed."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu

    def total(self) -> tuple[float, float]:
        return self.wall, self.cpu


def bench_end_to_end(n_samples: int, folder: Path, process_repeats: int = 3) -> EndToEndResult:
    """A run of `n_samples` STORE_CASE samples on disk: `tamx explain` as a process (workers 1
    and 2) vs the in-process numpy reference over the same samples (one .npy file set each)
    vs the floor (reading the sample objects' bytes + the two products of the default classes)."""
    path, ref = folder / "run", folder / "reference"
    run = create_run(path, synthetic_run_info(vocab_size=VOCAB_SIZE, dtype=DTYPE))
    ref.mkdir()
    start = time.perf_counter()
    step = max(1, n_samples // 5)
    for i in range(n_samples):
        sample = make_sample(STORE_CASE, seed=1000 + i, sample_id=f"s{i:05d}", media=True)
        run.write_sample(sample)
        np.savez(ref / f"{sample.id}.npz", **reference_arrays(sample))
        if (i + 1) % step == 0 or i + 1 == n_samples:
            print(f"  end to end: wrote {i + 1}/{n_samples} samples ({time.perf_counter() - start:.1f} s)", flush=True)
    build = time.perf_counter() - start
    ids = run.sample_ids()
    files = folder_files(path / "samples") / n_samples
    seconds: dict[str, tuple[float, float]] = {}  # label -> (wall, CPU) seconds

    # the numpy reference, checked against tamx on the first sample
    first = make_sample(STORE_CASE, seed=1000, sample_id=ids[0])
    error = float(np.max(np.abs(numpy_reference(reference_arrays(first)) - explain_sample(first).final)))
    error /= max(float(np.max(np.abs(explain_sample(first).final))), 1e-30)
    assert error <= 1e-4, f"the numpy reference differs from tamx by {error:.1e}"
    with Clock() as clock:
        for sample_id in ids:
            with np.load(ref / f"{sample_id}.npz") as data:
                numpy_reference({name: data[name] for name in data.files})
    seconds[REFERENCE] = clock.total()
    subset = ids[: min(len(ids), NAIVE_SAMPLES)]
    with Clock() as clock:
        for sample_id in subset:
            naive_tam(reader_sample(path, sample_id))
    scale = len(ids) / len(subset)
    seconds[f"naive per-token numpy (docs/method.md; {len(subset)} samples timed, scaled)"] = (
        clock.wall * scale,
        clock.cpu * scale,
    )

    # the floor: the sample objects' bytes, then the two products of tamx's default classes
    reader = open_run(path)
    clock = Clock()
    for sample_id in ids:
        with clock:
            (path / "samples" / sample_id / "sample.0").read_bytes()
        operands = floor_inputs(reader.sample(sample_id, media=False), ExplainSettings())
        with clock:
            operands.run()
    seconds[FLOOR] = clock.total()

    # the processes, interleaved `process_repeats` times (medians): the machine may be shared
    one = ["explain", str(path), "--samples", ids[0], "--variant", "bench-one", "--overwrite", "--quiet"]
    processes: dict[str, Callable[[], tuple[float, float]]] = {
        f"tamx explain --workers {w} (process)": lambda w=w: tamx_process(path, w, f"bench-w{w}") for w in (1, 2)
    }
    processes["tamx explain --workers 1 --no-candidates --no-prompt (process)"] = lambda: tamx_answers_only(path)
    processes[IDLE] = lambda: tamx_process(path, 1, "bench-w1", False)
    processes[ONE] = lambda: timed_process([sys.executable, "-m", "tamx.pipeline", *one])
    processes[NUMPY] = lambda: timed_process([sys.executable, "-c", "import numpy"])
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in processes}
    for r in range(process_repeats):
        for label, command in processes.items():
            runs[label].append(command())
        elapsed = time.perf_counter() - start
        print(f"  end to end: processes, round {r + 1}/{process_repeats} ({elapsed:.0f} s)", flush=True)
    for label, times in runs.items():
        seconds[label] = (statistics.median(t[0] for t in times), statistics.median(t[1] for t in times))
    ratios = [o[0] / n[0] for o, n in zip(runs[ONE], runs[NUMPY])]
    variants = folder_files(path / "samples" / ids[-1] / "maps") / 3  # bench-w1, -w2, -answers
    return EndToEndResult(n_samples, build, folder_mb(path), files, variants, error, seconds, ratios)


def tamx_answers_only(run: Path) -> tuple[float, float]:
    command = [sys.executable, "-m", "tamx.pipeline", "explain", str(run), "--no-candidates", "--no-prompt"]
    return timed_process([*command, "--variant", "bench-answers", "--overwrite", "--quiet"])


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def folder_files(path: Path) -> int:
    return sum(1 for f in path.rglob("*") if f.is_file())


# ---------------------------------------------------------------------------- report


def machine_lines() -> list[str]:
    """nproc, CPU, numpy and its BLAS, numba threads, thread variables."""
    cpu = platform.processor() or "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas_text = f"{blas.get('name')} {blas.get('version')}"
        config = blas.get("openblas configuration")
        if config:
            blas_text += f" ({' '.join(config.split()[2:])})"
    except Exception as exc:  # show_config's layout is not an API
        blas_text = f"unknown ({type(exc).__name__})"
    import numba

    env = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}
    env_text = ", ".join(f"{k}={v}" for k, v in env.items() if v is not None) or "none set"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"machine: nproc={affinity} (cpu_count={os.cpu_count()}), {cpu}, {platform.system()} {platform.machine()}",
        f"python {platform.python_version()}, numpy {np.__version__}, BLAS: {blas_text}",
        f"numba {numba.__version__}: {numba.get_num_threads()} threads; thread variables: {env_text}",
        f"tamx {tamx.__version__} from {Path(tamx.__file__).parent}",
    ]


def ms(seconds: float) -> str:
    return f"{1e3 * seconds:.1f}" if seconds >= 0.01 else f"{1e3 * seconds:.2f}"


def per_token(seconds: float, n: int) -> str:
    return f"{1e3 * seconds / n:.3f}"


def case_table(results: list[CaseResult], statistic: Callable[[list[float]], float]) -> list[str]:
    lines = [
        "| case | V | N | U (default / answers) | tamx default | tamx answers only | naive numpy | "
        "floor (default U) | floor (answers U) | naive / tamx answers | tamx / floor | tamx answers / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        s, n = res.seconds(statistic), res.case.n_answer

        def cell(name: str, s: dict[str, float] = s, n: int = n) -> str:
            return f"{ms(s[name])} ({per_token(s[name], n)})"

        lines.append(
            f"| {res.case.name} | {res.case.vision_size} | {n} | {res.classes} / {res.answer_classes} | "
            f"{cell('tamx')} | {cell('tamx-answers')} | {cell('naive')} | {cell('floor')} | "
            f"{cell('floor-answers')} | {s['naive'] / s['tamx-answers']:.0f}x | "
            f"{s['tamx'] / s['floor']:.1f}x | {s['tamx-answers'] / s['floor-answers']:.1f}x |"
        )
    return lines


def end_to_end_table(res: EndToEndResult) -> list[str]:
    reference, floor = res.seconds[REFERENCE], res.seconds[FLOOR]
    lines = [
        f"| {res.samples} samples on disk, {STORE_CASE.vision_size} x {STORE_CASE.n_answer}, {DTYPE} "
        f"({res.store_mb:.0f} MiB) | wall s | CPU s | wall ms/sample | reference / this (wall, CPU) "
        "| this / floor (wall, CPU) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, (wall, cpu) in res.seconds.items():
        lines.append(
            f"| {label} | {wall:.2f} | {cpu:.2f} | {1e3 * wall / res.samples:.1f} | "
            f"{reference[0] / wall:.1f}x, {reference[1] / cpu:.1f}x | {wall / floor[0]:.1f}x, {cpu / floor[1]:.1f}x |"
        )
    w1 = res.seconds["tamx explain --workers 1 (process)"]
    w2 = res.seconds["tamx explain --workers 2 (process)"]
    idle, one, numpy_import = res.seconds[IDLE], res.seconds[ONE], res.seconds[NUMPY]
    speed_up = w1[0] / w2[0]
    one_ratio, run_ratio = statistics.median(res.one_ratios), w2[0] / floor[0]
    steady = [
        (w, (t[0] - one[0]) / (res.samples - 1), (t[1] - one[1]) / (res.samples - 1)) for w, t in ((1, w1), (2, w2))
    ]
    lines += [
        "",
        f"Targets (wall): tamx --workers 2 >= 5x the numpy reference: {reference[0] / w2[0]:.1f}x "
        f"({'met' if reference[0] / w2[0] >= 5 else 'MISSED'}); within 2x of the floor: {w2[0] / floor[0]:.1f}x "
        f"({'met' if w2[0] / floor[0] <= 2 else 'MISSED'}); workers 2 >= 1.8x workers 1: {speed_up:.2f}x "
        f"({'met' if speed_up >= 1.8 else 'MISSED'}).",
        f'Issue 25 (wall): one-sample run / python -c "import numpy", side by side: {1e3 * one[0]:.0f} / '
        f"{1e3 * numpy_import[0]:.0f} ms, median ratio {one_ratio:.2f}x (rounds: "
        f"{', '.join(f'{r:.2f}' for r in res.one_ratios)}) vs <= {TARGET_ONE_RATIO}x: "
        f"{'met' if one_ratio <= TARGET_ONE_RATIO else 'MISSED'}; --workers 2 / floor {run_ratio:.2f}x vs <= "
        f"{TARGET_RUN_RATIO}x: {'met' if run_ratio <= TARGET_RUN_RATIO else 'MISSED'}.",
        "Beyond start-up (the 'nothing to do' row subtracted), per sample, wall / CPU ms: "
        + "; ".join(
            f"workers {w}: {1e3 * (t[0] - idle[0]) / res.samples:.1f} / {1e3 * (t[1] - idle[1]) / res.samples:.1f}"
            for w, t in ((1, w1), (2, w2))
        )
        + f"; floor {1e3 * floor[0] / res.samples:.1f} / {1e3 * floor[1] / res.samples:.1f}; "
        f"numpy reference {1e3 * reference[0] / res.samples:.1f} / {1e3 * reference[1] / res.samples:.1f}.",
        "Beyond the one-sample run (start-up subtracted), per further sample, wall / CPU ms: "
        + "; ".join(f"workers {w}: {1e3 * wall:.1f} / {1e3 * cpu:.1f}" for w, wall, cpu in steady)
        + f"; workers 2 / workers 1 {steady[0][1] / steady[1][1]:.2f}x, workers 2 / floor "
        f"{steady[1][1] / (floor[0] / res.samples):.1f}x.",
        f"Files: {res.files_per_sample:.1f} per sample before the variants below, {res.files_per_variant:.1f} per "
        f"variant (store built in {res.build_s:.0f} s; reference vs tamx TAM: max relative difference "
        f"{res.error:.1e}).",
    ]
    return lines


def target_lines(results: list[CaseResult]) -> list[str]:
    target = next((r for r in results if r.case == STORE_CASE), None)
    if target is None:
        return []
    s = target.seconds()
    whole, ratio = 1e3 * s["tamx"], s["tamx"] / s["floor"]
    return [
        f"Targets ({target.case.vision_size} x {target.case.n_answer}, default explain): "
        f"{whole:.1f} ms vs <= {TARGET_MS:.0f} ms: {'met' if whole <= TARGET_MS else 'MISSED'}; "
        f"tamx / floor {ratio:.1f}x vs <= {TARGET_FLOOR_RATIO:.0f}x: "
        f"{'met' if ratio <= TARGET_FLOOR_RATIO else 'MISSED'}.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats and a 20-sample store (under a minute)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per case (default 9, quick 3)")
    parser.add_argument("--samples", type=int, default=None, help="samples in the store (default 200, quick 20)")
    parser.add_argument("--no-store", action="store_true", help="skip the end-to-end part")
    parser.add_argument("--no-cases", action="store_true", help="skip the per-case in-process part")
    parser.add_argument("--profile", action="store_true", help="also time the steps of tamx.explain (391 x 128)")
    parser.add_argument(
        "--process-repeats", type=int, default=None, help="rounds of the timed processes (default 5, quick 3)"
    )
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 9)
    n_samples = args.samples or (20 if args.quick else 200)

    header = machine_lines()
    for line in header:
        print(line)
    print(
        f"inputs: synthetic, C={HIDDEN_SIZE}, vocab={VOCAB_SIZE}, {DTYPE} hidden states, top-{TOP_K} candidates, "
        f"{N_CONTEXT} prompt tokens; median of {repeats} interleaved repeats after a warm-up",
        flush=True,
    )
    started = time.perf_counter()
    results = []
    for case in () if args.no_cases else CASES:
        res = bench_case(case, repeats)
        results.append(res)
        s = res.seconds()
        print(
            f"  {case.name}, N={case.n_answer}: tamx {ms(s['tamx'])} ms, answers only {ms(s['tamx-answers'])} ms, "
            f"naive {ms(s['naive'])} ms, floor {ms(s['floor'])} / {ms(s['floor-answers'])} ms "
            f"(naive vs tamx TAM: max relative difference {res.error:.1e})",
            flush=True,
        )
    profile = profile_case(STORE_CASE, max(2 * repeats, 7)) if args.profile else []
    store = None
    if not args.no_store:
        with tempfile.TemporaryDirectory(prefix="tamx-bench-") as folder:
            store = bench_end_to_end(n_samples, Path(folder), args.process_repeats or (3 if args.quick else 5))

    print()
    print("## Explain benchmark")
    print()
    for line in header:
        print(f"- {line}")
    print(
        f"- inputs: synthetic Qwen2-VL-2B size (C={HIDDEN_SIZE}, vocab {VOCAB_SIZE}, {DTYPE}), top-{TOP_K} candidates, "
        f"{N_CONTEXT} prompt tokens; V vision tokens, N answer tokens, U classes with a map"
    )
    print(f"- median of {repeats} interleaved repeats; ms per sample (ms per answer token)")
    print(
        "- tamx default: answers + candidates + prompt maps; answers only: candidates=False, prompt=False; "
        "naive: per-token numpy of docs/method.md (answers only); floor: float32 [V,C]x[U,C]^T + [Q,C]x[N,C]^T"
    )
    if results:
        print()
        for line in case_table(results, statistics.median):
            print(line)
        print()
        print(f"Best of {repeats} (the machine's capability when nothing else runs; same columns):")
        print()
        for line in case_table(results, min):
            print(line)
        print()
        for line in target_lines(results):
            print(line)
    if profile:
        print()
        print(
            f"| tamx step, {STORE_CASE.vision_size} x {STORE_CASE.n_answer} (timed helpers of tamx.explain, medians) "
            "| ms, default | ms, answers only |"
        )
        print("|---|---:|---:|")
        for label, default, answers in profile:
            print(f"| {label} | {default:.2f} | {answers:.2f} |")
    if store is not None:
        print()
        for line in end_to_end_table(store):
            print(line)
        print(
            "(processes include start-up, reading, explaining and writing every variant; the reference and the "
            "floor run in this process; the machine's cores may be shared with other work: see nproc above)"
        )
    print()
    print(f"total benchmark time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
