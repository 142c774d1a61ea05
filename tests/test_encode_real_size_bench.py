"""benchmarks/encode_real_size.py stays alive: its command line on tiny widths prints every row it promises."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2-vl-2b", "llava-1.5-7b"])
def test_encode_real_size_prints_time_and_memory_rows(tmp_path, family):
    pytest.importorskip("transformers")
    pytest.importorskip("PIL")
    out = tmp_path / "bench.json"
    command = [sys.executable, "benchmarks/encode_real_size.py", "--family", family, "--size", "tiny"]
    command += ["--depth", "1", "--lengths", "3,5", "--batch-sizes", "1,2", "--repeats", "1", "--json", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    assert "DEPTH-REDUCED: 1/" in text and "448x448 image" in text
    # one time row per (answer length, batch size), one memory row per answer length
    time_rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[+-][\d.]+%", text, re.M)
    assert sorted((int(n), int(b)) for n, b in time_rows) == [(3, 1), (3, 2), (5, 1), (5, 2)]
    memory_rows = re.findall(r"^\s+(\d+)(?:\s+-?[\d.]+){8}\s*$", text, re.M)
    assert [int(n) for n in memory_rows] == [3, 5]
    assert re.search(r"capture overhead <= 5% at batch 1: worst [+-][\d.]+% \((met|MISSED)\)", text)
    measured = json.loads(out.read_text())
    assert {(r["length"], r["batch"]) for r in measured["times"]["rows"]} == {(3, 1), (3, 2), (5, 1), (5, 2)}
    cells = {(c["mode"], c["length"]): c for c in measured["memory"]}
    assert set(cells) == {(m, n) for m in ("plain", "tamx", "authors") for n in (3, 5)}
    assert all(c["new_tokens"] == n for (_, n), c in cells.items())  # every mode made the forced length
    assert cells[("tamx", 5)]["stored_bytes"] > cells[("tamx", 3)]["stored_bytes"] > 0
