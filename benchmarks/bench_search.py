"""Search benchmark (not part of the test suite): retrieval quality and search latency.

Run from the repository root::

    python -m benchmarks.bench_search                      # everything (about 10 minutes)
    python -m benchmarks.bench_search --videos 5 --scales 1000,10000   # quicker

1. **Retrieval quality.** 20 videos are generated (ffmpeg + espeak-ng: three 6-second scenes,
   three spoken facts, words on screen in the first and last scene) and processed by the real
   pipeline (``process_video``: offline Whisper, OCR, all-MiniLM embeddings, embedded PostgreSQL
   with pgvector). 80 paraphrased questions (3 per video about what is said, 1 about the on-screen
   code) are asked in three modes: vector only, full text only, hybrid (reciprocal rank fusion).
   A hit is a moment of the expected video overlapping the time the fact is spoken (located by its
   keyword in the stored transcript) or shown. Reports recall@1, recall@5 and MRR@5 per mode.
2. **Latency** of ``Searcher.search`` (query embedding included) at 1k, 10k and 100k stored
   embeddings (random unit vectors, texts drawn from the eval vocabulary) on pgvector with the
   HNSW index, against two baselines measured in the same run: an exact pgvector scan (index
   disabled) and the ``real[]`` + numpy fallback on the system PostgreSQL (when installed).
   Also reports the HNSW recall@10 against the exact scan.
"""

from __future__ import annotations

import argparse
import difflib
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from videoqa_pipeline.ai import AIConfig, get_embedder
from videoqa_pipeline.ai.types import Embedder
from videoqa_pipeline.search import Moment, PostgresSearchBackend, Searcher, SearchFilters
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline.storage.embedded import embedded_database_url, release_embedded_database
from videoqa_pipeline.storage.migrations import hnsw_index_name
from videoqa_pipeline.storage.schema import SCENES, TRANSCRIPT
from videoqa_pipeline.storage.tables import read_partition
from videoqa_pipeline_tests.storage.conftest import (
    PostgresUnavailable,
    create_scratch_database,
    system_postgres_server,
)


@dataclass(frozen=True)
class Fact:
    sentence: str
    keyword: str
    question: str


@dataclass(frozen=True)
class EvalVideo:
    video_id: str
    title: str  # shown on screen in scene 0
    screen_code: str  # shown on screen in scene 2
    facts: tuple[Fact, Fact, Fact]
    screen_question: str


def _video(
    video_id: str, title: str, code: str, facts: list[tuple[str, str, str]], screen_q: str
) -> EvalVideo:
    a, b, c = (Fact(*fact) for fact in facts)
    return EvalVideo(video_id, title, code, (a, b, c), screen_q)


EVAL_VIDEOS: list[EvalVideo] = [
    _video(
        "volcano",
        "VOLCANO",
        "ZONE 3A",
        [
            (
                "Mount Halvard erupted in the year eighteen twelve.",
                "erupted",
                "When did the Halvard mountain blow up?",
            ),
            (
                "Its crater lake is bright turquoise.",
                "turquoise",
                "What colour is the water inside the crater?",
            ),
            (
                "Scientists measure sulfur gas every Tuesday.",
                "sulfur",
                "Which gas do researchers monitor weekly?",
            ),
        ],
        "Which zone code was displayed in the volcano clip?",
    ),
    _video(
        "bakery",
        "BAKERY",
        "OVEN 7",
        [
            (
                "The bakery opens at five thirty every morning.",
                "five",
                "What time does the bread shop start trading?",
            ),
            ("Rye loaves rest for twelve hours before baking.", "rye", "How long does the dark bread prove?"),
            (
                "Leftover pastries are donated to the shelter.",
                "donated",
                "What happens to unsold sweet goods?",
            ),
        ],
        "Which oven number appeared on screen at the bakery?",
    ),
    _video(
        "bridge",
        "BRIDGE",
        "SPAN 900",
        [
            (
                "The suspension bridge is two kilometres long.",
                "kilometres",
                "How long is the hanging crossing?",
            ),
            ("Its cables were spun from steel wire in Ohio.", "cables", "Where were the support ropes made?"),
            (
                "Traffic closes during storms with strong wind.",
                "storms",
                "When is the crossing shut to cars?",
            ),
        ],
        "What span number was written on screen for the bridge?",
    ),
    _video(
        "chess",
        "CHESS CLUB",
        "BOARD 14",
        [
            (
                "The chess club meets on Thursday evenings.",
                "thursday",
                "Which night does the chess group gather?",
            ),
            (
                "Beginners learn the Sicilian defence first.",
                "sicilian",
                "Which opening do new players study?",
            ),
            (
                "The champion won forty games in a row.",
                "forty",
                "How long was the title holder's winning streak?",
            ),
        ],
        "Which board number was displayed at the chess club?",
    ),
    _video(
        "garden",
        "GARDEN",
        "BED 22",
        [
            (
                "Tomatoes are planted after the last frost.",
                "tomatoes",
                "When do the red fruits go into the soil?",
            ),
            ("Rainwater is collected in three barrels.", "barrels", "How is water from the sky stored?"),
            (
                "Ladybirds protect the roses from aphids.",
                "ladybirds",
                "Which insects guard the flowers against pests?",
            ),
        ],
        "Which bed number was shown in the garden video?",
    ),
    _video(
        "museum",
        "MUSEUM",
        "HALL 5",
        [
            (
                "The museum holds a dinosaur skeleton from Montana.",
                "dinosaur",
                "Which prehistoric fossil is on display?",
            ),
            (
                "Entry is free on the first Sunday of the month.",
                "free",
                "When can visitors get in without paying?",
            ),
            (
                "Photography with flash is not allowed inside.",
                "flash",
                "What camera rule applies in the galleries?",
            ),
        ],
        "Which hall number was written on screen at the museum?",
    ),
    _video(
        "airport",
        "AIRPORT",
        "GATE 31",
        [
            (
                "Check in closes forty minutes before departure.",
                "check",
                "How early must travellers register for a flight?",
            ),
            ("The airport has a runway of four kilometres.", "runway", "How long is the landing strip?"),
            ("Lost luggage is kept for ninety days.", "luggage", "How long are missing bags stored?"),
        ],
        "Which gate number appeared in the airport clip?",
    ),
    _video(
        "library",
        "LIBRARY",
        "SHELF 8C",
        [
            ("Members may borrow six books at a time.", "borrow", "How many titles can a reader take home?"),
            ("Late returns cost ten cents per day.", "cents", "What is the fine for overdue items?"),
            (
                "The reading room is silent after noon.",
                "silent",
                "When must visitors stop talking in the study area?",
            ),
        ],
        "Which shelf code was displayed in the library video?",
    ),
    _video(
        "orchestra",
        "ORCHESTRA",
        "SEAT 42",
        [
            (
                "The orchestra tunes to the oboe before playing.",
                "oboe",
                "Which instrument gives the tuning note?",
            ),
            ("Rehearsals last three hours on Saturdays.", "rehearsals", "How long is weekend practice?"),
            (
                "The conductor studied music in Vienna.",
                "vienna",
                "Where was the leader of the ensemble trained?",
            ),
        ],
        "Which seat number was on screen at the orchestra?",
    ),
    _video(
        "farm",
        "DAIRY FARM",
        "BARN 2",
        [
            ("The farm milks two hundred cows each day.", "cows", "How many cattle are milked daily?"),
            ("Cheese ages in a cellar for eight months.", "cheese", "How long does the curd product mature?"),
            (
                "Solar panels on the barn power the fridges.",
                "solar",
                "How is cooling equipment supplied with electricity?",
            ),
        ],
        "Which barn number was displayed at the farm?",
    ),
    _video(
        "submarine",
        "SUBMARINE",
        "DECK 6",
        [
            (
                "The submarine can dive to three hundred metres.",
                "dive",
                "How deep can the underwater vessel go?",
            ),
            ("The crew of sixty sleeps in shifts.", "crew", "How do the sailors arrange their rest?"),
            ("Fresh food runs out after two weeks at sea.", "food", "When do the perishable supplies end?"),
        ],
        "Which deck number appeared in the submarine clip?",
    ),
    _video(
        "marathon",
        "MARATHON",
        "BIB 1077",
        [
            ("The marathon starts at the harbour at seven.", "harbour", "Where does the long race begin?"),
            ("Water stations stand every five kilometres.", "stations", "How often can runners get a drink?"),
            (
                "The course record is two hours and six minutes.",
                "record",
                "What is the fastest finishing time ever?",
            ),
        ],
        "Which bib number was shown at the marathon?",
    ),
    _video(
        "hospital",
        "HOSPITAL",
        "WARD 19",
        [
            (
                "Visiting hours end at eight in the evening.",
                "visiting",
                "When must guests leave the patients?",
            ),
            (
                "The emergency room sees three hundred patients daily.",
                "emergency",
                "How busy is the casualty department?",
            ),
            ("Nurses change shifts at seven.", "nurses", "When does the care staff hand over?"),
        ],
        "Which ward number was displayed in the hospital video?",
    ),
    _video(
        "coffee",
        "COFFEE",
        "TABLE 11",
        [
            (
                "The beans are roasted in small batches on Mondays.",
                "roasted",
                "When are the seeds heated for flavour?",
            ),
            (
                "Oat milk costs fifty cents extra.",
                "oat",
                "What does the plant based dairy alternative add to the price?",
            ),
            (
                "The espresso machine was made in Italy.",
                "espresso",
                "Where does the brewing equipment come from?",
            ),
        ],
        "Which table number appeared in the coffee shop clip?",
    ),
    _video(
        "lighthouse",
        "LIGHTHOUSE",
        "LAMP 3",
        [
            ("The lighthouse beam reaches thirty kilometres.", "beam", "How far can ships see the light?"),
            (
                "The keeper climbs two hundred steps each night.",
                "steps",
                "How many stairs does the guardian go up?",
            ),
            (
                "The tower was painted red and white in nineteen twenty.",
                "painted",
                "When did the tower get its colours?",
            ),
        ],
        "Which lamp number was on screen at the lighthouse?",
    ),
    _video(
        "railway",
        "RAILWAY",
        "TRACK 9",
        [
            (
                "The night train leaves the station at eleven.",
                "night",
                "When does the overnight service depart?",
            ),
            (
                "Bicycles travel free in the last carriage.",
                "bicycles",
                "Where can passengers bring their bikes without paying?",
            ),
            (
                "The line was electrified in nineteen sixty.",
                "electrified",
                "When did the route get overhead power?",
            ),
        ],
        "Which track number was displayed in the railway video?",
    ),
    _video(
        "zoo",
        "ZOO",
        "ENCLOSURE 4",
        [
            (
                "The penguins are fed herring at noon.",
                "penguins",
                "When do the flightless birds get their fish?",
            ),
            (
                "A baby giraffe was born in March.",
                "giraffe",
                "Which long necked animal had a calf in spring?",
            ),
            ("The tigers sleep sixteen hours a day.", "tigers", "How long do the big striped cats rest?"),
        ],
        "Which enclosure number appeared at the zoo?",
    ),
    _video(
        "brewery",
        "BREWERY",
        "TANK 15",
        [
            (
                "The brewery uses hops from the valley.",
                "hops",
                "Where do the flavouring flowers for the beer come from?",
            ),
            ("Lager ferments for six weeks in cold tanks.", "lager", "How long does the pale beer ferment?"),
            (
                "Tours end with a tasting of four beers.",
                "tasting",
                "What do visitors sample at the end of the visit?",
            ),
        ],
        "Which tank number was shown at the brewery?",
    ),
    _video(
        "observatory",
        "OBSERVATORY",
        "DOME 1",
        [
            (
                "The telescope mirror is eight metres wide.",
                "mirror",
                "How large is the reflector of the scope?",
            ),
            (
                "Astronomers discovered a comet in January.",
                "comet",
                "What icy object was found at the start of the year?",
            ),
            ("The dome opens only on clear nights.", "clear", "When is the roof of the building opened?"),
        ],
        "Which dome number was displayed at the observatory?",
    ),
    _video(
        "ferry",
        "FERRY",
        "PIER 12",
        [
            (
                "The ferry crosses the bay every forty minutes.",
                "crosses",
                "How often does the boat go over the water?",
            ),
            (
                "Cars must arrive thirty minutes early.",
                "arrive",
                "How soon should drivers turn up before sailing?",
            ),
            (
                "Dolphins are often seen near the island.",
                "dolphins",
                "Which sea mammals can passengers spot?",
            ),
        ],
        "Which pier number appeared in the ferry clip?",
    ),
]

QUESTIONS_PER_VIDEO = 4


MODES = ("vector", "text", "hybrid")
SCENE_SECONDS = 6.0


@dataclass
class Question:
    text: str
    video_id: str
    span: tuple[float, float] | None  # None: the keyword was not found in the transcript
    kind: str = "paraphrase"  # or "exact": the on-screen code typed verbatim


def _table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------ retrieval quality


def build_eval_corpus(home: Path, count: int) -> tuple[Database, list[Question], float]:
    """Generate and process ``count`` videos; return the database, the questions and seconds spent."""
    from videoqa_pipeline import media
    from videoqa_pipeline.runner import process_video
    from videoqa_pipeline.settings import Settings

    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is required for the retrieval eval (apt-get install espeak-ng)")
    settings = Settings.from_env({"VIDEOQA_HOME": str(home), "LOG_LEVEL": "WARNING"}).validate()
    media_dir = home / "media"
    media_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for number, video in enumerate(EVAL_VIDEOS[:count], start=1):
        sample = media.make_sample_video(
            media_dir / f"{video.video_id}.mp4",
            scene_seconds=(SCENE_SECONDS,) * 3,
            speech=" ".join(fact.sentence for fact in video.facts),
            scene_texts=[video.title, None, video.screen_code],
            preset="ultrafast",
        )
        report = process_video(str(sample.path), settings=settings, video_id=video.video_id)
        if not report.success:
            sys.exit(f"processing {video.video_id} failed: {report.error}")
        print(f"  processed {number}/{count} {video.video_id} in {report.wall_seconds:.1f} s", flush=True)
    seconds = time.perf_counter() - started
    database = Database(DatabaseSettings(url=None, home=home, pool_size=3, timeout_seconds=30))
    questions: list[Question] = []
    for video in EVAL_VIDEOS[:count]:
        transcript = read_partition(database, TRANSCRIPT, video.video_id)
        for fact in video.facts:
            questions.append(Question(fact.question, video.video_id, locate(transcript, fact.keyword)))
        scenes = read_partition(database, SCENES, video.video_id)
        last = scenes.iloc[-1]
        shown = (float(last.start_seconds), float(last.end_seconds))
        questions.append(Question(video.screen_question, video.video_id, shown))
        questions.append(Question(video.screen_code, video.video_id, shown, kind="exact"))
    return database, questions, seconds


def locate(transcript: pd.DataFrame, keyword: str) -> tuple[float, float] | None:
    """When ``keyword`` (or the closest spoken word, for ASR misspellings) is said: its word's
    time +- 0.5 s from the word timestamps; else the segment containing it; else None."""
    words = [
        (
            str(word.get("text", word.get("word", ""))).strip(" .,?!").lower(),
            float(word["start"]),
            float(word["end"]),
        )
        for row in transcript.itertuples()
        for word in (row.words or [])
    ]
    spoken = [text for text, _, _ in words]
    match = difflib.get_close_matches(keyword.lower(), spoken, n=1, cutoff=0.75)
    if match:
        _, start, end = words[spoken.index(match[0])]
        return (start - 0.5, end + 0.5)
    for row in transcript.itertuples():
        if keyword.lower() in str(row.text).lower():
            return (float(row.start_seconds), float(row.end_seconds))
    return None


def rank_of(question: Question, moments: list[Moment]) -> int | None:
    """1-based rank of the first moment that answers ``question`` (video and time), else None."""
    for rank, moment in enumerate(moments, start=1):
        if moment.video_id != question.video_id:
            continue
        if question.span is None:
            return rank
        start, end = question.span
        if moment.start < end and start < moment.end:
            return rank
    return None


def evaluate(searcher: Searcher, questions: list[Question]) -> list[list[object]]:
    rows: list[list[object]] = []
    for kind in ("paraphrase", "exact"):
        subset = [q for q in questions if q.kind == kind]
        if not subset:
            continue
        for mode in MODES:
            ranks = [rank_of(q, searcher.search(q.text, k=5, mode=mode).moments) for q in subset]  # type: ignore[arg-type]
            at1 = sum(1 for r in ranks if r == 1) / len(ranks)
            at5 = sum(1 for r in ranks if r is not None) / len(ranks)
            mrr = sum(1 / r for r in ranks if r is not None) / len(ranks)
            rows.append([kind, mode, len(ranks), f"{at1:.3f}", f"{at5:.3f}", f"{mrr:.3f}"])
    return rows


# ------------------------------------------------------------------ latency


def _vocabulary() -> list[str]:
    words: set[str] = set()
    for video in EVAL_VIDEOS:
        for fact in video.facts:
            words.update(w.strip(".,?'").lower() for w in (fact.sentence + " " + fact.question).split())
    return sorted(w for w in words if w.isalpha())


def synthetic_topics(embedder: Embedder, count: int = 500) -> tuple[list[str], np.ndarray]:
    """``count`` random texts from the eval vocabulary and their real embeddings: the cluster
    centres of the synthetic rows, so the stored vectors have the structure of real ones (random
    unit vectors in 384 dimensions are all nearly equidistant, a worst case no index is built for)."""
    pick = random.Random(7)
    vocabulary = _vocabulary()
    texts = [" ".join(pick.choices(vocabulary, k=12)) for _ in range(count)]
    return texts, embedder.embed(texts).vectors


def load_synthetic(
    database: Database, total: int, model: str, start: int, topics: tuple[list[str], np.ndarray]
) -> None:
    """Add rows ``start..total`` (1,000 per video) with COPY: each a topic's text and its vector
    plus noise (cosine about 0.8 to the centre)."""
    rng = np.random.default_rng(start)
    texts, centres = topics
    dimension = centres.shape[1]
    as_vector = database.has_pgvector
    with database.connection() as conn, conn.cursor() as cursor:
        columns = "video_id, item_index, kind, start_seconds, end_seconds, text, model, dimension, embedding"
        with cursor.copy(f"COPY videoqa_embeddings ({columns}) FROM STDIN") as copy:
            for first in range(start, total, 5000):
                count = min(5000, total - first)
                chosen = rng.integers(0, len(texts), count)
                noise = rng.standard_normal((count, dimension)).astype(np.float32) * (
                    0.75 / np.sqrt(dimension)
                )
                vectors = centres[chosen] + noise
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                for offset in range(count):
                    index = first + offset
                    body = ",".join(f"{v:.6g}" for v in vectors[offset].tolist())
                    copy.write_row(
                        (
                            f"synthetic-{index // 1000:05d}",
                            index % 1000,
                            "transcript" if index % 3 else "frame",
                            float(index % 1000) * 5,
                            float(index % 1000) * 5 + 5,
                            texts[int(chosen[offset])],
                            model,
                            dimension,
                            f"[{body}]" if as_vector else f"{{{body}}}",
                        )
                    )
        conn.commit()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return p50 * 1000, p95 * 1000


def time_searches(searcher: Searcher, queries: list[str], mode: str, repeats: int = 1) -> list[float]:
    timings = []
    for _ in range(repeats):
        for query in queries:
            started = time.perf_counter()
            searcher.search(query, k=5, mode=mode, filters=SearchFilters())  # type: ignore[arg-type]
            timings.append(time.perf_counter() - started)
    return timings


def exact_scan(
    database: Database, embedder: Embedder, queries: list[str], limit: int
) -> tuple[list[float], list[set[tuple[str, int]]]]:
    """Exact pgvector cosine ordering with index scans disabled: the baseline (timings include the embedding)."""
    timings, results = [], []
    dimension = embedder.dimension
    for query in queries:
        started = time.perf_counter()
        vector = embedder.embed([query]).vectors[0]
        literal = "[" + ",".join(f"{v:.9g}" for v in vector.tolist()) + "]"
        with database.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")
            rows = conn.execute(
                f"""SELECT video_id, item_index FROM videoqa_embeddings
                    WHERE dimension = {dimension} AND model = %s
                    ORDER BY (embedding::vector({dimension})) <=> %s::vector({dimension}) LIMIT %s""",
                (embedder.model_name, literal, limit),
            ).fetchall()
        timings.append(time.perf_counter() - started)
        results.append({(r[0], int(r[1])) for r in rows})
    return timings, results


def hnsw_results(
    database: Database, embedder: Embedder, queries: list[str], limit: int
) -> list[set[tuple[str, int]]]:
    backend = PostgresSearchBackend(database)
    return [
        {
            hit.key
            # Ask for as many candidates as a search does (50), compare the first ``limit``.
            for hit in backend.vector_hits(
                embedder.embed([q]).vectors[0], embedder.model_name, SearchFilters(), 50
            )[:limit]
        }
        for q in queries
    ]


def measure_latency(
    scales: list[int], queries: list[str], embedder: Embedder, home: Path
) -> list[list[object]]:
    rows: list[list[object]] = []
    admin_url = embedded_database_url(home)
    pg = Database(
        DatabaseSettings(url=create_scratch_database(admin_url), home=home, pool_size=3, timeout_seconds=60)
    )
    pg.ensure_schema()
    system: Database | None = None
    server = None
    try:
        server = system_postgres_server()
        system = Database(
            DatabaseSettings(
                url=create_scratch_database(server.__enter__()), home=home, pool_size=3, timeout_seconds=120
            )
        )
        system.ensure_schema()
    except PostgresUnavailable as reason:
        print(f"  (no real[] baseline: {reason})")
        server = None
    dimension = embedder.dimension
    index = hnsw_index_name(dimension)
    loaded = 0
    loaded_system = 0
    pg_searcher = Searcher(PostgresSearchBackend(pg), embedder)
    topics = synthetic_topics(embedder)
    try:
        for scale in scales:
            with pg.connection() as conn:
                conn.execute(f"DROP INDEX IF EXISTS {index}")
                conn.commit()
            started = time.perf_counter()
            load_synthetic(pg, scale, embedder.model_name, loaded, topics)
            load_seconds = time.perf_counter() - started
            loaded = scale
            started = time.perf_counter()
            with pg.connection() as conn:
                conn.execute("SET maintenance_work_mem = '512MB'")
                conn.execute(
                    f"""CREATE INDEX {index} ON videoqa_embeddings
                        USING hnsw ((embedding::vector({dimension})) vector_cosine_ops) WHERE dimension = {dimension}"""
                )
                conn.execute("ANALYZE videoqa_embeddings")
                conn.commit()
            build_seconds = time.perf_counter() - started
            time_searches(pg_searcher, queries[:5], "hybrid")  # warm caches
            hybrid = percentiles(time_searches(pg_searcher, queries, "hybrid"))
            vector = percentiles(time_searches(pg_searcher, queries, "vector"))
            text = percentiles(time_searches(pg_searcher, queries, "text"))
            exact_timings, exact = exact_scan(pg, embedder, queries, 10)
            approximate = hnsw_results(pg, embedder, queries, 10)
            recall = statistics.mean(
                len(a & e) / max(1, len(e)) for a, e in zip(approximate, exact, strict=True)
            )
            exact_p = percentiles(exact_timings)
            rows.append([scale, "pgvector HNSW, hybrid", f"{hybrid[0]:.1f}", f"{hybrid[1]:.1f}", "1.00"])
            rows.append(
                [
                    scale,
                    "pgvector HNSW, vector only",
                    f"{vector[0]:.1f}",
                    f"{vector[1]:.1f}",
                    f"{vector[1] / hybrid[1]:.2f}",
                ]
            )
            rows.append(
                [scale, "full text only", f"{text[0]:.1f}", f"{text[1]:.1f}", f"{text[1] / hybrid[1]:.2f}"]
            )
            rows.append(
                [
                    scale,
                    "baseline: pgvector exact scan",
                    f"{exact_p[0]:.1f}",
                    f"{exact_p[1]:.1f}",
                    f"{exact_p[1] / hybrid[1]:.2f}",
                ]
            )
            print(
                f"  {scale:>7} rows: load {load_seconds:.1f} s, HNSW build {build_seconds:.1f} s, "
                f"HNSW recall@10 vs exact {recall:.3f}",
                flush=True,
            )
            if system is not None:
                load_synthetic(system, scale, embedder.model_name, loaded_system, topics)
                loaded_system = scale
                with system.connection() as conn:
                    conn.execute("ANALYZE videoqa_embeddings")
                    conn.commit()
                sys_searcher = Searcher(PostgresSearchBackend(system), embedder)
                few = queries if scale <= 10_000 else queries[:10]
                time_searches(sys_searcher, few[:2], "hybrid")
                fallback = percentiles(time_searches(sys_searcher, few, "hybrid"))
                rows.append(
                    [
                        scale,
                        "baseline: real[] + numpy, hybrid",
                        f"{fallback[0]:.1f}",
                        f"{fallback[1]:.1f}",
                        f"{fallback[1] / hybrid[1]:.2f}",
                    ]
                )
    finally:
        pg.close()
        if system is not None:
            system.close()
        if server is not None:
            server.__exit__(None, None, None)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=len(EVAL_VIDEOS), help="eval videos (max 20)")
    parser.add_argument("--scales", default="1000,10000,100000", help="comma-separated row counts")
    parser.add_argument("--queries", type=int, default=50, help="queries per latency measurement")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="videoqa-bench-search-"))
    embedder = get_embedder(AIConfig.from_env({}))
    questions: list[Question] = []
    try:
        if not args.skip_eval:
            print(f"Retrieval eval: generating and processing {args.videos} videos...", flush=True)
            database, questions, seconds = build_eval_corpus(home, min(args.videos, len(EVAL_VIDEOS)))
            located = sum(1 for q in questions if q.span is not None and q.kind == "paraphrase")
            paraphrases = sum(1 for q in questions if q.kind == "paraphrase")
            print(
                f"  {paraphrases} paraphrased questions ({located} located in time, the rest graded by video), "
                f"{len(questions) - paraphrases} exact on-screen codes ({seconds:.0f} s of processing)\n"
            )
            rows = evaluate(Searcher(PostgresSearchBackend(database), embedder), questions)
            print("Retrieval quality (hit = expected video and time, top 5 moments)")
            print(_table(["questions", "mode", "count", "recall@1", "recall@5", "MRR@5"], rows))
            print()
            database.close()
        if not args.skip_latency:
            texts = [q.text for q in questions if q.kind == "paraphrase"] or [
                f.question for v in EVAL_VIDEOS for f in v.facts
            ]
            queries = (texts * (args.queries // max(1, len(texts)) + 1))[: args.queries]
            scales = [int(s) for s in args.scales.split(",") if s.strip()]
            print(f"Latency: {len(queries)} queries per row, k=5, query embedding included", flush=True)
            rows = measure_latency(scales, queries, embedder, home)
            print()
            print(_table(["rows", "search", "p50 ms", "p95 ms", "p95 / hybrid HNSW"], rows))
    finally:
        release_embedded_database(home)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
