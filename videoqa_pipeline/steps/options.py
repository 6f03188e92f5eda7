"""The processing options the stages take (defined in :mod:`videoqa_pipeline.options`)."""

from videoqa_pipeline.options import ProcessingOptions

__all__ = ["ProcessingOptions"]
