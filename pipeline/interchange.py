"""The import and export stages: single-sample safetensors files in and out of a run."""

from __future__ import annotations

import os
from collections.abc import Sequence

from tamx import create_run, open_run
from tamx.errors import DiskFullError, TamxError
from tamx.interchange import InterchangeError, import_sample, sample_bytes
from tamx.records import Maps, RunInfo, Sample
from tamx.store import check_compatible

from .files import write_bytes, writing
from .outcomes import Outcome, StageReport


def import_files(
    files: Sequence[str | os.PathLike], run_path: str | os.PathLike, overwrite: bool = False
) -> StageReport:
    """Import sample files into a run, creating it from the first file's model if needed: the
    report lists sample ids imported (done) and skipped (already in the run), and failed files."""
    report = StageReport()
    run = None
    for file in files:
        try:
            sample, info, maps = import_sample(file)  # the whole file, checked before anything is written
            with writing(f"sample {sample.id!r} into {run_path}"):
                if run is None:
                    run = create_run(run_path, info, exist_ok=True)
                else:
                    check_compatible(run.info, info, run.url)
                if sample.id in run and not overwrite:
                    report.add(Outcome.skipped(sample.id))
                    continue
                run.write_sample(sample, overwrite=overwrite)
                if maps is not None:
                    run.write_maps(sample.id, maps, overwrite=True)
            report.add(Outcome.done(sample.id))
        except DiskFullError:
            raise  # every later file would fail the same way: stop here
        except InterchangeError as exc:
            report.add(Outcome.failed(str(file), exc.problem))  # the report names the file
        except TamxError as exc:
            report.add(Outcome.failed(str(file), str(exc)))
    return report


def export_file(
    run_path: str | os.PathLike, out: str | os.PathLike, sample_id: str | None = None, variant: str | None = None
) -> str:
    """Export one sample (and one of its variants, default "tam" if stored) to `out`; returns its id."""
    run = open_run(run_path)
    if sample_id is None:
        ids = run.sample_ids()
        if len(ids) != 1:
            raise TamxError(f"{run_path} holds {len(ids)} samples; choose one with --sample ({', '.join(ids[:5])} ...)")
        sample_id = ids[0]
    sample = run.sample(sample_id)
    variants = run.variants(sample_id)
    if variant is None:
        variant = "tam" if "tam" in variants else (variants[0] if len(variants) == 1 else None)
    maps = run.maps(sample_id, variant) if variant is not None else None
    if maps is not None and maps.deferred:  # a run explained before explain stored them
        from tamx.explain import complete_maps

        complete_maps(sample, maps)
    export_sample(out, sample, run.info, maps)
    return sample_id


def export_sample(path: str | os.PathLike, sample: Sample, info: RunInfo, maps: Maps | None = None) -> None:
    """Write one sample (and optionally one maps variant) to the safetensors file `path`, atomically."""
    write_bytes(path, sample_bytes(sample, info, maps))
