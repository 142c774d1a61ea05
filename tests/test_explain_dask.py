"""`tamx explain RUN --dask ADDRESS`: the per-sample work on a Dask cluster equals a local run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from tamx.pipeline.cli import main

from tamx import open_run

distributed = pytest.importorskip("distributed", reason="--dask needs dask[distributed] (pip install -e '.[test]')")


@pytest.mark.slow
def test_explain_on_a_local_cluster_of_two_processes_equals_a_local_run(run_path, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_path, copy)
    assert CliRunner().invoke(main, ["explain", str(run_path), "--quiet"]).exit_code == 0
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        result = CliRunner().invoke(main, ["explain", str(copy), "--dask", cluster.scheduler_address, "--quiet"])
        assert result.exit_code == 0, result.output
    local, remote = open_run(run_path), open_run(copy)
    for sample_id in local.sample_ids():
        assert remote.variants(sample_id) == ["tam"]
        for name, value in local.maps(sample_id).arrays().items():
            np.testing.assert_array_equal(getattr(remote.maps(sample_id), name), value)


@pytest.mark.slow
def test_an_unreachable_scheduler_is_a_one_line_error(run_path):  # distributed retries for 10 s
    result = CliRunner().invoke(main, ["explain", str(run_path), "--dask", "tcp://127.0.0.1:9", "--quiet"])
    assert result.exit_code == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output
