"""A separate process using the storage layer, driven by the multi-process tests.

Usage: ``python -m videoqa_pipeline_tests.storage._worker MODE ARG [VIDEO_ID]``

* ``join HOME VIDEO_ID``: join the embedded server under HOME, write one scene row for VIDEO_ID,
  print a JSON line ``{"pid", "url", "rows"}``, then wait for a line on stdin and exit normally
  (so the atexit release runs).
* ``hold HOME``: join, print the JSON line, then sleep until killed.
* ``migrate URL GO_FILE``: wait until GO_FILE exists, run ``ensure_schema`` on URL, print the
  applied versions as JSON and exit.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from videoqa_pipeline.storage.database import DatabaseSettings, get_database
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.storage.tables import read_partition, replace_partition


def _join(home: Path, video_id: str | None) -> None:
    database = get_database(DatabaseSettings(url=None, home=home, pool_size=2))
    database.ensure_schema()
    rows = 0
    if video_id:
        frame = pd.DataFrame(
            {
                "scene_index": [0],
                "start_seconds": [0.0],
                "end_seconds": [1.5],
                "start_frame": [0],
                "end_frame": [45],
            }
        )
        replace_partition(database, TABLES["scenes"], video_id, frame)
        rows = len(read_partition(database, TABLES["scenes"], video_id))
    print(json.dumps({"pid": os.getpid(), "url": database.url, "rows": rows}), flush=True)


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "join":
        _join(Path(argv[1]), argv[2])
        sys.stdin.readline()
        return 0
    if mode == "hold":
        _join(Path(argv[1]), None)
        while True:
            time.sleep(60)
    if mode == "migrate":
        url, go_file = argv[1], Path(argv[2])
        while not go_file.exists():
            time.sleep(0.01)
        database = get_database(DatabaseSettings(url=url, home=Path("."), pool_size=1))
        print(json.dumps(database.ensure_schema()), flush=True)
        database.close()
        return 0
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
