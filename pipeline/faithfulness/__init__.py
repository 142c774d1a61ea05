"""The faithfulness stage (model side): deletion and insertion curves of stored maps."""

from .stage import FaithfulnessReport, FaithfulnessSettings, faithfulness_run

__all__ = ["FaithfulnessReport", "FaithfulnessSettings", "faithfulness_run"]
