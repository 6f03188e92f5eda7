"""Allow ``python -m videoqa_pipeline.cli``."""

from videoqa_pipeline.cli import main

if __name__ == "__main__":
    main()
