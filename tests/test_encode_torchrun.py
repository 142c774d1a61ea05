"""torchrun: two CPU ranks (gloo) shard a manifest into one store; the result equals a single-process run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import tamx

from .test_encode_core import ROOT, _env, tamx_cli
from .tiny_models import write_image

pytest.importorskip("torch")
pytest.importorskip("PIL", reason="transformers' image processors need Pillow (pip install pillow)")


@pytest.mark.slow
def test_two_ranks_equal_one_process(tiny_model_dir, tmp_path):
    path = tiny_model_dir("qwen2_vl")
    rows = []
    for i in range(5):
        image = write_image(tmp_path / f"img{i}.png", 40 + 10 * i, 90 - 10 * i, seed=i)
        content = [{"type": "image", "image": image}, {"type": "text", "text": f"Describe picture {i}."}]
        rows.append({"id": f"s{i}", "messages": [{"role": "user", "content": content}]})
    manifest = tmp_path / "inputs.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    common = ["encode", "--model", str(path), "--manifest", str(manifest), "--max-new-tokens", "6", "--quiet"]
    common += ["--device", "cpu", "--dtype", "fp32"]
    single = tamx_cli(*common, "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533"]
    command += ["-m", "tamx.pipeline", *common, "--out", str(tmp_path / "ranks")]
    ranks = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert ranks.returncode == 0, ranks.stderr
    one, two = tamx.open_run(tmp_path / "single"), tamx.open_run(tmp_path / "ranks")
    assert one.sample_ids() == two.sample_ids() == [r["id"] for r in rows]
    assert one.info.to_json() == two.info.to_json()
    shards = {two.sample(s).meta["rank"]["rank"] for s in two.sample_ids()}
    assert shards == {0, 1} and {one.sample(s).meta["rank"]["world_size"] for s in one.sample_ids()} == {1}
    for sample_id in one.sample_ids():
        a, b = one.sample(sample_id), two.sample(sample_id)
        for name in ("input_ids", "answer_positions", "context_positions", "candidate_ids"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert a.vision_blocks == b.vision_blocks
        np.testing.assert_allclose(a.hidden_float32(), b.hidden_float32(), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(a.lm_head.ids, b.lm_head.ids)
        np.testing.assert_array_equal(a.lm_head.rows, b.lm_head.rows)
