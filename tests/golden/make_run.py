"""Write tests/golden/run-2.0: a small schema-2.0 run, with the code of the commit it is run at.

It was made with the tamx of commit c7c2239 (before the records split), so that
tests/test_records.py proves the runs that code wrote still read, explain, render and rewrite
to the same bytes:

    git worktree add --detach /tmp/golden c7c2239
    cd /tmp/golden && PYTHONPATH=/tmp/golden python /path/to/tests/golden/make_run.py OUT
"""

import shutil
import sys

import numpy as np

from tamx.explain import ExplainSettings, explain_sample
from tamx.store import create_run
from tamx.synthetic import synthetic_run_info, synthetic_sample


def golden_samples():
    a = synthetic_sample(
        "img", grids=[(1, 4, 5)], n_answer=4, n_context=5, hidden_size=16, top_k=3, dtype="bfloat16", bias=True, seed=1
    )
    a.answer_logprobs = np.linspace(-2, 0, 4, dtype=np.float32)
    a.meta = {"question": "what?", "source": "golden"}
    b = synthetic_sample(
        "vid", grids=[(2, 3, 4)], n_answer=3, n_context=4, hidden_size=16, top_k=0, dtype="float16", seed=2
    )
    b.candidate_ids = None
    return [a, b]


def golden_maps(sample):
    cam = ExplainSettings(eci="off", filter="none", candidates=False)
    return {"tam": explain_sample(sample), "cam": explain_sample(sample, cam, variant="cam", defer=True)}


if __name__ == "__main__":
    out = sys.argv[1]
    shutil.rmtree(out, ignore_errors=True)
    run = create_run(out, synthetic_run_info())
    for sample in golden_samples():
        run.write_sample(sample)
        for maps in golden_maps(sample).values():
            run.write_maps(sample.id, maps)
