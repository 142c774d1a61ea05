"""The explain stage: compute maps for the samples of a run and store them as a variant."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from tamx import ExplainSettings, Run, VisionBlock, explain_sample, open_run
from tamx.errors import DiskFullError, TamxError
from tamx.explain import load_kernels
from tamx.layout import frame_table

from .files import writing
from .outcomes import Outcome, StageReport


@dataclass(kw_only=True)
class ExplainReport(StageReport):
    """What an explain run did (sample ids done, skipped because already stored, failed), the
    variant it stored, and the incomplete samples (data without a commit) it could not explain."""

    variant: str = ""
    incomplete: list[str] = field(default_factory=list)


COMPILED_FILTER_FROM = 50  # samples from which a run filters with numba (the same maps; docs/method.md)


def explain_one(run: Run, sample_id: str, settings: ExplainSettings, variant: str, overwrite: bool) -> Outcome:
    """Explain one stored sample and store its maps; a done or skipped outcome (TamxError if it cannot)."""
    version = run.sample_version(sample_id)  # read first: a rewrite from here on refuses the maps
    stored = run.maps_settings(sample_id, variant)
    if stored is not None and not overwrite:
        if stored == settings.to_json():
            return Outcome.skipped(sample_id)
        raise TamxError(
            f"sample {sample_id!r}: variant {variant!r} is stored with other settings ({stored}); "
            "pass --overwrite to replace it or --variant to store these beside it"
        )
    # Every map a reader will ask for is stored now, so that reading the run computes nothing.
    maps = explain_sample(run.sample(sample_id, media=False), settings, variant)
    with writing(f"the maps {variant!r} of sample {sample_id!r} in {run.url}"):
        run.write_maps(sample_id, maps, overwrite=True, sample_version=version)
    return Outcome.done(sample_id)


def keep_freed_memory() -> bool:
    """Let this process's allocator keep the memory explain frees, for the next sample's arrays.

    Each sample allocates and frees some 10 MB; glibc hands the top of its heap back to the
    system past a threshold that the freed arrays cross, and every sample then pays page faults
    for fresh memory (a quarter of `tamx explain`'s time on one thread, benchmarks/explain_bench.py).
    A trim threshold of 256 MB and an mmap threshold of 32 MB (glibc's largest) keep it. For a
    batch process such as `tamx explain`; glibc only (elsewhere nothing changes). Returns
    whether it applied.
    """
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this Python runs on
    except (OSError, AttributeError):  # C libraries without mallopt
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_trim_threshold, 256 << 20)) and bool(mallopt(m_mmap_threshold, 32 << 20))


_worker_run: Run | None = None  # the run a pool worker explains, opened once per process


def _worker_init(run_url: str) -> None:
    """Open the run once per worker process (a forked one gets a file system of its own)."""
    global _worker_run
    _worker_run = open_run(run_url, mode="a")


def _safe_explain(run: Run | None, sample_id: str, settings: ExplainSettings, variant: str, overwrite: bool) -> Outcome:
    """explain_one with tamx's errors as a failed outcome (in a pool worker, `run` None means its own)."""
    try:
        return explain_one(run if run is not None else _worker_run, sample_id, settings, variant, overwrite)
    except DiskFullError:
        raise  # every later sample would fail the same way: stop the run
    except TamxError as exc:
        return Outcome.failed(sample_id, str(exc))


def _dask_explain(run_url: str, sample_id: str, settings: ExplainSettings, variant: str, overwrite: bool) -> Outcome:
    """One sample on a Dask worker: the run is opened from its URL (cheap: one small read)."""
    return _safe_explain(open_run(run_url, mode="a"), sample_id, settings, variant, overwrite)


def _dask_results(
    address: str, run: Run, sample_ids: Sequence[str], settings: ExplainSettings, variant: str, overwrite: bool
) -> Iterator[Outcome]:
    """The same per-sample work on an existing Dask distributed cluster, in completion order."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise TamxError("--dask needs Dask distributed: pip install 'tamx[dask]'") from None
    try:
        client = Client(address, timeout=10)
    except (OSError, TimeoutError, ValueError) as exc:
        raise TamxError(f"cannot reach the Dask scheduler at {address} ({exc}); check the address") from None
    with client:
        futures = client.map(
            _dask_explain, [run.url] * len(sample_ids), sample_ids, settings=settings, variant=variant,
            overwrite=overwrite, pure=False,
        )  # fmt: skip
        for future in as_completed(futures):
            yield future.result()


def _results(
    run: Run,
    sample_ids: Sequence[str],
    settings: ExplainSettings,
    variant: str,
    overwrite: bool,
    workers: int,
    compiled: bool = False,
) -> Iterator[Outcome]:
    """Explain the samples in this process, or on `workers` worker processes; in order.

    One BLAS thread per process: one sample per core. On Linux the workers are forked after
    this process has loaded the numba kernels (a non-default filter), so they start in milliseconds with everything
    loaded (spawned ones took 0.6 s each to import and load; threads shared the GIL and reached
    1.5x on 2 cores where forked processes reach 2x: benchmarks/explain_bench.py). Elsewhere
    (macOS, Windows: fork is unsafe or missing) they are spawned. `compiled`: filter with the
    default filter's numba twin (the same maps), loaded here once.
    """
    from threadpoolctl import threadpool_limits

    workers = min(workers, len(sample_ids))  # a process per sample at most
    if compiled:  # many samples to explain: numba's start-up pays (COMPILED_FILTER_FROM)
        load_kernels(settings, compiled=True)  # before the workers fork: they inherit the kernels
    with threadpool_limits(1, "blas"):
        if workers <= 1:
            for sample_id in sample_ids:
                yield _safe_explain(run, sample_id, settings, variant, overwrite)
            return
        from concurrent.futures import ProcessPoolExecutor  # here: 0.03 s of a one-sample run's start-up
        from multiprocessing import get_context

        load_kernels(settings)
        fork = sys.platform.startswith("linux")
        # a spawned worker's numpy fixes its BLAS threads from these variables as it loads
        saved = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        os.environ.update(dict.fromkeys(saved, "1"))
        try:
            context = get_context("fork" if fork else "spawn")
            with ProcessPoolExecutor(workers, context, _worker_init, (run.url,)) as pool:
                futures = [pool.submit(_safe_explain, None, s, settings, variant, overwrite) for s in sample_ids]
                try:
                    for future in futures:
                        yield future.result()
                finally:  # a full disk, Ctrl-C: do not start the samples still queued
                    for future in futures:
                        future.cancel()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def check_kernel_fits(run: Run, sample_ids: Sequence[str], settings: ExplainSettings) -> None:
    """Refuse, before any work, a filter window wider than every image or frame grid it would filter.

    Past the grid the window only repeats reflected cells, and the filter sorts k^2 values per
    cell (a typo such as 101 on a 17 x 23 grid takes minutes per sample). 3 always passes.
    """
    k = settings.kernel_size
    if settings.filter == "none" or k <= 3:
        return
    widest, where = 0, ""
    for sample_id in sample_ids:
        blocks = [VisionBlock.from_json(b) for b in run.sample_attrs(sample_id)["vision_blocks"]]
        for _, height, width in frame_table(blocks).tolist():
            if max(height, width) > widest:
                widest, where = max(height, width), f"{height}x{width} in sample {sample_id!r}"
        if k <= widest:
            return
    if sample_ids:
        largest = max(3, widest if widest % 2 else widest - 1)
        raise TamxError(
            f"--kernel-size {k} is wider than every vision grid it would filter (the largest is {where}); "
            f"use an odd size up to {largest}"
        )


def check_recorded(run: Run, sample_ids: Sequence[str], settings: ExplainSettings) -> None:
    """Refuse once, before any work, a method or layer that the samples' encode did not record,
    naming the encode option that records it."""
    from tamx.methods import METHODS

    method = METHODS[settings.method]
    lacking = []
    for sample_id in sample_ids:
        try:
            attrs = run.sample_attrs(sample_id)
        except TamxError:
            continue  # a damaged sample fails on its own in the loop
        no_method = bool(method.recorded_as) and attrs.get(method.recorded_as) is None
        layers = [-1, *(attrs.get("lens_layers") or [])]
        if no_method or (settings.method == "tam" and settings.layer not in layers):
            lacking.append(sample_id)
    if not lacking:
        return
    shown = ", ".join(repr(s) for s in lacking[:5]) + (" ..." if len(lacking) > 5 else "")
    if settings.method == "tam":
        what, option = f"the states of layer {settings.layer}", f"tamx encode --layers -1,{settings.layer}"
    else:
        what, option = f"what map method {settings.method!r} reads", method.records
    raise TamxError(f"{len(lacking)} sample(s) ({shown}) have no {what} recorded; encode them again with `{option}`")


def recorded_layer(run: Run, sample_ids: Sequence[str], settings: ExplainSettings) -> ExplainSettings:
    """`settings` with the layer Grad-CAM was recorded at (`tamx encode --gradients LAYER`) for
    the gradient method, so that its variant is named and stored by it ("gradient_l-2"); a
    TamxError when the samples hold it at different layers. Other methods: `settings` itself."""
    if settings.method != "gradient":
        return settings
    layers: dict[int, list[str]] = {}
    for sample_id in sample_ids:
        try:
            layer = run.sample_attrs(sample_id).get("gradient_layer")
        except TamxError:
            continue  # a damaged sample fails on its own in the loop
        if layer is not None:
            layers.setdefault(layer, []).append(sample_id)
    if len(layers) > 1:
        shown = "; ".join(f"layer {layer}: {', '.join(ids[:3])}" for layer, ids in sorted(layers.items()))
        raise TamxError(
            f"the samples hold Grad-CAM at different layers ({shown}); explain each group apart with --samples"
        )
    return replace(settings, layer=next(iter(layers))) if layers else settings


def check_no_conflict(run: Run, sample_ids: Sequence[str], settings: ExplainSettings, variant: str) -> int:
    """Refuse once, before any work, a variant name already stored with other settings.

    The message names the samples, the stored settings and the ones asked for, and how to go on.
    Returns how many of the samples have the variant stored with these settings (to be skipped).
    """
    asked = settings.to_json()
    clashes: dict[str, dict] = {}
    same = 0
    for sample_id in sample_ids:
        try:
            stored = run.maps_settings(sample_id, variant)
        except TamxError:
            continue  # a damaged sample fails on its own in the loop, beside the others
        if stored is not None and stored != asked:
            clashes[sample_id] = stored
        same += stored == asked
    if not clashes:
        return same
    shown = ", ".join(repr(s) for s in list(clashes)[:5]) + (" ..." if len(clashes) > 5 else "")
    stored_as = next(iter(clashes.values()))
    raise TamxError(
        f"variant {variant!r} is stored with other settings ({_settings_text(stored_as)}) than asked "
        f"({_settings_text(asked)}) in {len(clashes)} sample(s) ({shown}); pass --overwrite to replace it "
        "or --variant NAME to store these beside it"
    )


def _settings_text(settings: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in settings.items())


def explain_run(
    run_path: str | os.PathLike,
    settings: ExplainSettings | None = None,
    variant: str | None = None,
    sample_ids: Sequence[str] | None = None,
    workers: int = 1,
    overwrite: bool = False,
    wrap: Callable[[Iterator[Outcome], int], Iterator[Outcome]] | None = None,
    dask: str | None = None,
    refuse_other_settings: bool = False,
) -> ExplainReport:
    """Explain samples of a run (default: all complete ones) into `variant` (default: the
    settings' name, `ExplainSettings.variant_name`, with the recorded layer for the gradient
    method: "gradient_l-2"; the report names it).

    A sample that fails is reported and the others go on; `wrap` may wrap the result
    stream (a progress bar). Samples whose variant is stored with the same settings are skipped.
    `workers` > 1 forks this process on Linux: from a server or another program with busy
    threads, keep `workers` at 1 or use `dask`. `dask`: the address of a Dask distributed
    scheduler to run the samples on instead of `workers` local processes (the workers must
    reach the run's path or URL). A sample whose variant is stored with other settings fails
    (unless `overwrite`); with `refuse_other_settings` (the command line) the whole call is
    refused once instead, before any sample, naming them.
    """
    settings = settings or ExplainSettings()
    run = open_run(run_path, mode="a")
    known = run.sample_ids()
    if sample_ids is None:
        sample_ids = known
    unknown = [s for s in sample_ids if s not in known]
    if unknown:
        raise TamxError(f"{run_path} has no complete sample(s) {', '.join(unknown)}; `tamx info {run_path}` lists them")
    settings = recorded_layer(run, list(sample_ids), settings)
    variant = variant or settings.variant_name()
    check_kernel_fits(run, list(sample_ids), settings)
    check_recorded(run, list(sample_ids), settings)
    stored = 0  # samples that will be skipped, as far as known
    if refuse_other_settings and not overwrite:
        stored = check_no_conflict(run, list(sample_ids), settings, variant)
    report = ExplainReport(variant=variant, incomplete=run.incomplete_ids() if sample_ids is known else [])
    if dask:
        results = _dask_results(dask, run, list(sample_ids), settings, variant, overwrite)
    else:
        compiled = len(sample_ids) - stored >= COMPILED_FILTER_FROM
        results = _results(run, list(sample_ids), settings, variant, overwrite, workers, compiled)
    for outcome in wrap(results, len(sample_ids)) if wrap else results:
        report.add(outcome)
    return report
