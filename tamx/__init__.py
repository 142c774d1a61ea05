"""tamx: Token Activation Maps for vision-language models, torch-free core.

Open a run store with `open_run`, explain a sample with `explain_sample`; the stages and
the `tamx` command line live in the `pipeline` package.
"""

from .errors import SampleError, StoreError, TamxError
from .explain import ExplainSettings, explain_sample
from .filters import filter_grid, filter_maps
from .records import SCHEMA_VERSION, LMHead, Maps, Media, RunInfo, Sample, VisionBlock
from .store import Run, create_run, open_run

__version__ = "0.1.0"


def show(run, sample_id: str, variant=None, height: int = 720):
    """The interactive report page of one sample, displayed inline in Jupyter (`tamx.report.show`)."""
    from .report import show as show_page  # opencv and jinja2 load only when a page is wanted

    return show_page(run, sample_id, variant=variant, height=height)


__all__ = [
    "SCHEMA_VERSION",
    "ExplainSettings",
    "LMHead",
    "Maps",
    "Media",
    "Run",
    "RunInfo",
    "Sample",
    "SampleError",
    "StoreError",
    "TamxError",
    "VisionBlock",
    "__version__",
    "create_run",
    "explain_sample",
    "filter_grid",
    "filter_maps",
    "open_run",
    "show",
]
