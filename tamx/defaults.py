"""The one source of tamx's defaults, in a module that imports nothing (the command line
reads it at start-up; `ExplainSettings`, the filters and the stages take their defaults here)."""

FILTER = "rank-gaussian"  # Eqs. 6-7
KERNEL_SIZE = 3  # the filter's window, k x k
ECI = "relevance"  # Eq. 4's weights
VIDEO_FRAMES = 8  # frames sampled per video by `tamx encode`
MAX_NEW_TOKENS = 64  # the answer's length limit when `tamx encode` generates it
TOP_K = 3  # candidates `tamx encode` keeps per answer step
