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
]
