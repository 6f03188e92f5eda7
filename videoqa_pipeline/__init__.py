"""videoqa_pipeline: turn raw videos into searchable, question-answerable knowledge with Dagster."""

__version__ = "0.1.0"
