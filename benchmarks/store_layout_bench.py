"""Which layout for a sample: zarr v3 sharding (one shard per array) vs one packed object per
record with an offsets table (what the schema-2 store writes). Counts files and times writes
and reads of Qwen2-VL-2B-sized samples (391 vision x 128 answer tokens, C = 1536, bf16).

    python benchmarks/store_layout_bench.py            # 40 samples, 3 rounds
    python benchmarks/store_layout_bench.py --quick    # 10 samples, 2 rounds

Both layouts compress every chunk with zstd (the store's level) and checksum it with crc32c; times are
medians over rounds, each round writing then reading every sample (page cache warm for reads).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tamx import create_run, open_run
from tamx.records import sample_values
from tamx.store import ZSTD_LEVEL
from tamx.synthetic import synthetic_run_info, synthetic_sample


def make(i: int):
    return synthetic_sample(
        f"s{i:04d}",
        grids=[(1, 17, 23)],
        n_answer=128,
        n_context=20,
        hidden_size=1536,
        vocab_size=151936,
        top_k=3,
        dtype="bfloat16",
        seed=i,
        media=True,
    )


def zarr_sharded_write(folder: Path, samples) -> None:
    import zarr
    from zarr.codecs import Crc32cCodec, ZstdCodec

    for sample in samples:
        group = zarr.open_group(str(folder / sample.id), mode="w")
        for name, value in sample_values(sample).items():
            if not isinstance(value, np.ndarray):
                continue
            value = np.ascontiguousarray(value)
            array = group.create_array(
                name.replace(".", "_"),
                shape=value.shape,
                dtype=value.dtype,
                shards=value.shape or None,  # the whole array is one shard object
                chunks=value.shape or None,
                compressors=(ZstdCodec(level=ZSTD_LEVEL), Crc32cCodec()),
                config={"write_empty_chunks": True},
            )
            if value.size:
                array[...] = value


def zarr_sharded_read(folder: Path, ids) -> None:
    import zarr

    for sample_id in ids:
        group = zarr.open_group(str(folder / sample_id), mode="r")
        for name in group.array_keys():
            np.asarray(group[name][...])


def packed_write(folder: Path, samples) -> None:
    run = create_run(folder, synthetic_run_info(vocab_size=151936, dtype="bfloat16"))
    for sample in samples:
        run.write_sample(sample)


def packed_read(folder: Path, ids) -> None:
    run = open_run(folder)
    for sample_id in ids:
        run.sample(sample_id)


def files_per_sample(folder: Path, n: int) -> float:
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.name != "tamx-run.json") / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.samples or (10 if args.quick else 40)
    rounds = args.rounds or (2 if args.quick else 3)
    samples = [make(i) for i in range(n)]
    ids = [s.id for s in samples]
    mb = sum(v.nbytes for s in samples for v in sample_values(s).values() if isinstance(v, np.ndarray)) / 2**20
    layouts = {
        "zarr v3 sharding": (zarr_sharded_write, zarr_sharded_read),
        "packed (tamx schema 2)": (packed_write, packed_read),
    }
    times = {name: {"write": [], "read": []} for name in layouts}
    files = {}
    with tempfile.TemporaryDirectory(prefix="tamx-layout-") as tmp:
        for r in range(rounds):
            for name, (write, read) in layouts.items():
                folder = Path(tmp) / f"{r}-{name.split()[0]}"
                start = time.perf_counter()
                write(folder, samples)
                times[name]["write"].append(time.perf_counter() - start)
                start = time.perf_counter()
                read(folder, ids)
                times[name]["read"].append(time.perf_counter() - start)
                files[name] = files_per_sample(folder, n)
                shutil.rmtree(folder)
    print(f"{n} samples, {mb / n:.2f} MiB of arrays each; medians of {rounds} rounds")
    print()
    print("| layout | files per sample | write ms/sample | read ms/sample | write MiB/s | read MiB/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in layouts:
        w, rd = statistics.median(times[name]["write"]), statistics.median(times[name]["read"])
        print(f"| {name} | {files[name]:.0f} | {1e3 * w / n:.1f} | {1e3 * rd / n:.1f} | {mb / w:.0f} | {mb / rd:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
