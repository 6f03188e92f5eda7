"""Runs use the in-process executor.

The seven steps of one video are sequential anyway, and a process per step pays Python start-up,
imports and model loading for each (measured by ``benchmarks/bench_pipeline.py``). Parallelism
comes from running many videos (runs) at once instead.
"""

import dagster as dg

defs = dg.Definitions(executor=dg.in_process_executor)
