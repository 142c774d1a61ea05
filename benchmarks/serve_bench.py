"""Load benchmark of `tamx serve`: latency of a recomputed map under concurrent clients, against
the explain time of the same sample and setting measured in the same run.

One synthetic sample at Qwen2-VL-2B size (explain_bench's 640x480 image case, 391 vision
tokens, 60 answer tokens, bfloat16) in a run store; `tamx serve` started as its own process on
127.0.0.1 (a free port); clients are threads of this process, each with one keep-alive
connection, asking for `/api/runs/bench/samples/bench/live?kernel_size=5` (a setting that is
not stored, so the server recomputes it). Three phases:

  A. the target: --requests (500) from --clients (10) concurrent clients, server as shipped
     (recomputed maps cached, identical requests in flight share one computation);
  B. cache off (`--cache 0`), one client: every request recomputes (HTTP + explain + payload);
  C. cache off, --clients concurrent clients (in-flight sharing still on).

    python benchmarks/serve_bench.py               # all three phases
    python benchmarks/serve_bench.py --quick       # fewer requests in B and C

Latencies are wall-clock per request (time.perf_counter around the GET). Target: phase A's
p50 within 2x of the explain time, no error.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from explain_bench import CASES, make_sample  # noqa: E402 - after the path set-up

from tamx import ExplainSettings, create_run, explain_sample  # noqa: E402
from tamx.synthetic import synthetic_run_info  # noqa: E402

CASE = CASES[1]  # image 640x480 (1,17,23), 60 answer tokens
SETTINGS = ExplainSettings(kernel_size=5)
PATH = "/api/runs/bench/samples/bench/live?kernel_size=5"
TARGET_RATIO = 2.0


def explain_ms(sample, repeats: int) -> float:
    explain_sample(sample, SETTINGS)  # numba compiles here
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        explain_sample(sample, SETTINGS)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


class Server:
    """`python -m tamx.pipeline serve RUN --port 0 [--cache N]` in its own process."""

    def __init__(self, run: Path, cache: int | None = None) -> None:
        command = [sys.executable, "-m", "tamx.pipeline", "serve", str(run), "--port", "0"]
        if cache is not None:
            command += ["--cache", str(cache)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        line = self.process.stderr.readline()
        if "open http://" not in line:
            self.process.kill()
            raise RuntimeError(f"tamx serve did not start: {line}{self.process.stderr.read()}")
        self.url = line.split("open ", 1)[1].strip().rstrip("/")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(20)


def load(url: str, requests: int, clients: int) -> tuple[list[float], int, float]:
    """`requests` GETs spread over `clients` threads: latencies (ms), errors, wall seconds."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    per_client = [requests // clients + (1 if k < requests % clients else 0) for k in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(count: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as session:
            mine, bad = [], 0
            barrier.wait()
            for _ in range(count):
                started = time.perf_counter()
                response = session.get(PATH)
                mine.append((time.perf_counter() - started) * 1e3)
                bad += response.status_code != 200
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client, args=(n,)) for n in per_client]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return latencies, errors[0], time.perf_counter() - started


def report(name: str, latencies: list[float], errors: int, seconds: float, explain: float) -> float:
    p50, p99 = np.percentile(latencies, [50, 99])
    print(
        f"{name:<44} {len(latencies):>5} req  {errors:>3} err  {len(latencies) / seconds:>7.0f} req/s  "
        f"p50 {p50:>7.2f} ms ({p50 / explain:>5.2f}x)  p99 {p99:>7.2f} ms ({p99 / explain:>5.2f}x)  "
        f"max {max(latencies):>7.1f} ms"
    )
    return p50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="fewer requests in phases B and C")
    args = parser.parse_args()
    threads = {k: os.environ.get(k, "-") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpu(s); threads {threads}")
    with tempfile.TemporaryDirectory() as folder:
        run_path = Path(folder) / "bench"
        run = create_run(run_path, synthetic_run_info(vocab_size=151936, dtype="bfloat16"))
        sample = make_sample(CASE, sample_id="bench", media=True)
        run.write_sample(sample)
        stored = run.sample("bench")
        explain = explain_ms(stored, 15)
        print(f"sample: {CASE.name}, {CASE.n_answer} answer tokens; settings {SETTINGS.to_json()}")
        print(f"explain_sample (median of 15, in this process): {explain:.2f} ms\n")
        extra = 60 if args.quick else 200
        phases = [
            (f"A  cached, {args.clients} clients", None, args.requests, args.clients),
            ("B  cache off, 1 client", 0, extra // 2, 1),
            (f"C  cache off, {args.clients} clients", 0, extra, args.clients),
        ]
        results = {}
        for name, cache, requests, clients in phases:
            server = Server(run_path, cache)
            try:
                httpx.get(server.url + PATH, timeout=120)  # compiles numba in the server; fills the cache in A
                latencies, errors, seconds = load(server.url, requests, clients)
            finally:
                server.close()
            results[name] = (report(name, latencies, errors, seconds, explain), errors)
        p50, errors = results[phases[0][0]]
        ok = p50 <= TARGET_RATIO * explain and errors == 0
        print(f"\ntarget (A: p50 <= {TARGET_RATIO}x explain, no error): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
