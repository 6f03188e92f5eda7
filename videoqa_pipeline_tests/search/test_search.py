"""Hybrid retrieval on real PostgreSQL (embedded with pgvector, system without) with real embeddings."""

from __future__ import annotations

import uuid

import pytest

from videoqa_pipeline.ai.types import Embedder
from videoqa_pipeline.search import (
    Hit,
    ParquetSearchBackend,
    Searcher,
    SearchError,
    SearchFilters,
    fuse,
    group_into_moments,
)
from videoqa_pipeline.search.text_query import query_terms, tsquery_text
from videoqa_pipeline.storage.blobs import LocalBlobStore
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.migrations import hnsw_index_name
from videoqa_pipeline.storage.parquet_tables import write_partition
from videoqa_pipeline.storage.schema import EMBEDDINGS
from videoqa_pipeline.storage.tables import replace_partition
from videoqa_pipeline_tests.search.corpus import FACTS, Corpus, corpus_frames, write_corpus

#: Paraphrases (no shared content word with the stored sentence for most) -> (video, scene).
PARAPHRASES = [
    ("How frequently does the ferry sail?", "harbor", 0),
    ("When was the tower on the coast given its colours?", "harbor", 2),
    ("What temperature should the cooker be set to?", "kitchen", 0),
    ("Where did the Mars vehicle touch down?", "space", 0),
    ("What replaced the photovoltaic energy supply?", "space", 2),
]


@pytest.mark.parametrize(("question", "video", "scene"), PARAPHRASES)
def test_hybrid_search_finds_the_moment_of_a_paraphrased_question(
    searcher: Searcher, corpus: Corpus, question: str, video: str, scene: int
) -> None:
    result = searcher.search(question, k=3, filters=SearchFilters(video_ids=tuple(corpus.video_ids.values())))
    best = result.moments[0]
    assert (best.video_id, best.start) == (corpus.video_ids[video], corpus.scene_start(scene)), [
        (m.video_id, m.start, m.text) for m in result.moments
    ]
    assert best.end == corpus.scene_start(scene) + 5.0
    assert best.keyframe == f"{corpus.video_ids[video]}/keyframes/scene-{scene:04d}.jpg"
    assert best.similarity is not None and best.similarity > 0.3
    assert result.vector_candidates > 0


def test_a_scene_transcript_and_its_on_screen_text_are_one_moment(searcher: Searcher, corpus: Corpus) -> None:
    result = searcher.search("sourdough dough kneading", k=5)
    best = result.moments[0]
    assert best.video_id == corpus.video_ids["kitchen"] and best.start == 5.0
    assert best.text == "Knead the dough for ten minutes until it feels elastic."
    assert best.frame_text == "Text on screen: SOURDOUGH RECIPE"
    assert {hit.kind for hit in best.hits} == {"transcript", "frame"}
    # The same stored item is never reported twice.
    keys = [(hit.video_id, hit.item_index) for moment in result.moments for hit in moment.hits]
    assert len(keys) == len(set(keys))


def test_text_only_search_finds_exact_on_screen_words(searcher: Searcher, corpus: Corpus) -> None:
    text = searcher.search("invoice 4471", k=1, mode="text")
    assert text.vector_candidates == 0 and text.text_candidates >= 1
    assert text.moments[0].video_id == corpus.video_ids["space"]
    assert text.moments[0].frame_text == "Text on screen: INVOICE 4471 TOTAL 42"
    hybrid = searcher.search("invoice 4471", k=1)
    assert hybrid.moments[0].video_id == corpus.video_ids["space"] and hybrid.moments[0].start == 5.0


def test_text_hits_get_the_same_similarity_as_vector_hits(searcher: Searcher, corpus: Corpus) -> None:
    # The full-text query runs before the query vector exists; similarities are added by key.
    text = searcher.search("invoice 4471 total", k=3, mode="text")
    text_hits = [hit for moment in text.moments for hit in moment.hits]
    assert text_hits and all(hit.similarity is not None for hit in text_hits)
    everything = searcher.search("invoice 4471 total", k=100, mode="vector")
    by_key = {hit.key: hit.similarity for moment in everything.moments for hit in moment.hits}
    for hit in text_hits:
        assert hit.similarity == pytest.approx(by_key[hit.key], abs=1e-4)


def test_vector_only_search_ignores_full_text(searcher: Searcher, corpus: Corpus) -> None:
    result = searcher.search("Where did the Mars vehicle touch down?", k=2, mode="vector")
    assert result.text_candidates == 0
    assert result.moments[0].video_id == corpus.video_ids["space"]
    assert all(hit.text_rank is None for moment in result.moments for hit in moment.hits)


def test_filters_by_video_and_time_range(searcher: Searcher, corpus: Corpus) -> None:
    kitchen = corpus.video_ids["kitchen"]
    only_kitchen = searcher.search("ferry timetable", k=5, filters=SearchFilters(video_ids=(kitchen,)))
    assert only_kitchen.moments and {m.video_id for m in only_kitchen.moments} == {kitchen}
    late = searcher.search(
        "ferry lighthouse boats", k=10, filters=SearchFilters(start_seconds=10.5, end_seconds=30)
    )
    assert late.moments and all(m.start >= 10.0 for m in late.moments), [
        (m.video_id, m.start) for m in late.moments
    ]


def test_bad_requests_are_refused_with_a_reason(searcher: Searcher) -> None:
    with pytest.raises(SearchError, match="empty"):
        searcher.search("   ")
    with pytest.raises(SearchError, match="out of range"):
        searcher.search("ferry", k=0)
    with pytest.raises(SearchError, match="mode"):
        searcher.search("ferry", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(SearchError, match="ends before it starts"):
        SearchFilters(start_seconds=5, end_seconds=1)


def test_pgvector_queries_can_use_the_hnsw_index(database: Database, backend: str, corpus: Corpus) -> None:
    if not database.has_pgvector:
        pytest.skip("this backend stores real[] (no pgvector): search scans with numpy instead")
    with database.connection() as conn, conn.transaction():
        indexes = {
            row[0]
            for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'videoqa_embeddings'")
        }
        assert hnsw_index_name(384) in indexes and hnsw_index_name(1536) in indexes
        # A handful of rows: the planner would rather sort them. Forbid that to see the index is usable.
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_sort = off")
        vector = "[" + ",".join(["0.05"] * 384) + "]"
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                """EXPLAIN SELECT item_index FROM videoqa_embeddings
                   WHERE dimension = 384 AND model = 'm'
                   ORDER BY (embedding::vector(384)) <=> %s::vector(384) LIMIT 5""",
                (vector,),
            )
        )
    assert hnsw_index_name(384) in plan, plan


def test_parquet_layout_is_searched_like_the_database(tmp_path, embedder: Embedder) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    corpus = write_corpus(
        lambda spec, video_id, frame: write_partition(store, spec, video_id, frame), embedder, "pq-"
    )
    searcher = Searcher(ParquetSearchBackend(store), embedder)
    best = searcher.search("Where did the Mars vehicle touch down?", k=3).moments[0]
    assert (best.video_id, best.start) == (corpus.video_ids["space"], 0.0)
    assert best.keyframe == f"{corpus.video_ids['space']}/keyframes/scene-0000.jpg"
    text = searcher.search("invoice 4471", k=1, mode="text").moments[0]
    assert text.video_id == corpus.video_ids["space"] and text.start == 5.0
    assert text.similarity is not None and text.similarity > 0
    only = searcher.search("ferry", k=5, filters=SearchFilters(video_ids=(corpus.video_ids["kitchen"],)))
    assert {m.video_id for m in only.moments} == {corpus.video_ids["kitchen"]}
    assert (
        searcher.backend.video_blob_key(corpus.video_ids["space"])
        == f"{corpus.video_ids['space']}/normalized/video.mp4"
    )


def test_reciprocal_rank_fusion_prefers_items_both_retrievers_found() -> None:
    def hit(index: int, start: float) -> Hit:
        return Hit("v", index, "transcript", start, start + 5, f"item {index}")

    vector = [hit(1, 0), hit(2, 5), hit(3, 10)]
    text = [hit(3, 10), hit(4, 15)]
    fused = fuse([vector, text])
    assert [h.item_index for h in fused] == [3, 1, 2, 4]
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61)
    moments = group_into_moments(fused, limit=2)
    assert [(m.start, m.end) for m in moments] == [(10, 15), (0, 5)]
    # With retriever ranks, a moment counts its best rank per retriever once, however many items it has.
    a = [Hit("v", 1, "transcript", 0, 5, "a", vector_rank=1), Hit("v", 2, "frame", 0, 5, "a", vector_rank=3)]
    b = [Hit("v", 3, "transcript", 5, 10, "b", vector_rank=2, text_rank=1)]
    ranked = group_into_moments(a + b, limit=5)
    assert [m.start for m in ranked] == [5, 0]
    assert ranked[1].score == pytest.approx(1 / 61) and ranked[0].score == pytest.approx(1 / 62 + 1 / 61)


def test_query_terms_drop_question_words_and_match_word_forms() -> None:
    assert query_terms("When was the lighthouse painted?") == ["lighthouse", "paint"]
    assert tsquery_text("What is the?") is None
    assert tsquery_text("Ferries?") == "ferr:*"
    assert tsquery_text("ferry timetable pier") == (
        "(ferry:* & timetable:*) | (ferry:* & pier:*) | (timetable:* & pier:*)"
    )


def test_search_refuses_to_mix_embedding_models(
    database: Database, backend: str, searcher: Searcher, corpus: Corpus, embedder: Embedder
) -> None:
    """A video embedded by another model (here: float32 vectors stored before the int8 default)
    makes vector search refuse with the models, the videos and the way out; text search still
    works, a scope without that video works, and re-embedding it with the current model (what
    `videoqa reprocess VIDEO --from embeddings` does) makes it searchable again."""
    legacy = f"legacy-{uuid.uuid4().hex[:6]}"
    frames = corpus_frames(legacy, FACTS["harbor"], embedder)
    old = frames[EMBEDDINGS.name].assign(model="all-MiniLM-L6-v2")
    assert embedder.model_name != "all-MiniLM-L6-v2"
    replace_partition(database, EMBEDDINGS, legacy, old)
    try:
        for mode in ("hybrid", "vector"):
            with pytest.raises(SearchError) as info:
                searcher.search("ferry timetable", mode=mode)  # type: ignore[arg-type]
            message = str(info.value)
            assert f"all-MiniLM-L6-v2: 1 video(s): {legacy}" in message, message
            assert embedder.model_name in message and "--from embeddings" in message
            assert "VIDEOQA_EMBED_MODEL=all-MiniLM-L6-v2" in message and "--mode text" in message
        text = searcher.search("ferry timetable pier", k=10, mode="text")
        assert legacy in {m.video_id for m in text.moments}
        # The foreign vectors get no similarity: they are not comparable with the query's.
        assert all(h.similarity is None for m in text.moments for h in m.hits if h.video_id == legacy)
        scoped = searcher.search(
            "ferry timetable", filters=SearchFilters(video_ids=(corpus.video_ids["harbor"],))
        )
        assert scoped.moments[0].video_id == corpus.video_ids["harbor"]
        replace_partition(database, EMBEDDINGS, legacy, frames[EMBEDDINGS.name])
        found = searcher.search("How frequently does the ferry sail?", k=10)
        assert legacy in {m.video_id for m in found.moments}
    finally:
        with database.connection() as conn:
            conn.execute("DELETE FROM videoqa_embeddings WHERE video_id = %s", (legacy,))


def test_parquet_search_refuses_to_mix_embedding_models(tmp_path, embedder: Embedder) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    write_corpus(lambda spec, video_id, frame: write_partition(store, spec, video_id, frame), embedder, "pq-")
    frames = corpus_frames("pq-openai", FACTS["kitchen"], embedder)
    write_partition(
        store, EMBEDDINGS, "pq-openai", frames[EMBEDDINGS.name].assign(model="text-embedding-3-small")
    )
    searcher = Searcher(ParquetSearchBackend(store), embedder)
    with pytest.raises(SearchError, match=r"text-embedding-3-small: 1 video\(s\): pq-openai"):
        searcher.search("sourdough bread")
    assert searcher.search("sourdough recipe", mode="text").moments
