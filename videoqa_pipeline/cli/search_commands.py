"""`videoqa search` and `videoqa ask`: find moments and answer questions from the terminal.

Both read what the pipeline stored, with the same settings (``DATABASE_URL``, ``METADATA_STORAGE``,
the AI variables) as the pipeline itself, so the query is embedded by the same model.
"""

from __future__ import annotations

import json
from typing import Any

import click

from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.cli.common import load_settings
from videoqa_pipeline.storage.errors import StorageError


def _searcher() -> Any:
    from videoqa_pipeline.search import searcher_for

    return searcher_for(load_settings())


def _filters(videos: tuple[str, ...], start: float | None, end: float | None) -> Any:
    from videoqa_pipeline.search import SearchError, SearchFilters

    try:
        return SearchFilters(video_ids=videos, start_seconds=start, end_seconds=end)
    except SearchError as error:
        raise click.BadParameter(str(error), param_hint="--from/--to") from error


def search_json(moments: list[Any]) -> dict[str, Any]:
    """The ``--json`` document: ``{"results": [{video_id, start, end, text, relevance, score, keyframe}]}``.

    Best first. ``text`` is the transcript of the moment, or its on-screen text when nothing was
    said; ``relevance`` is 0-1 and means the same in every mode (``Moment.relevance``); ``score``
    is the raw fusion score that orders the results, kept for existing readers.
    """
    return {
        "results": [
            {
                "video_id": moment.video_id,
                "start": round(moment.start, 3),
                "end": round(moment.end, 3),
                "text": moment.text or moment.frame_text,
                "relevance": None if moment.relevance is None else round(moment.relevance, 3),
                "score": round(moment.score, 6),
                "keyframe": moment.keyframe,
            }
            for moment in moments
        ]
    }


_VIDEO = click.option("--video", "videos", multiple=True, metavar="ID", help="Only this video (repeatable).")
_FROM = click.option(
    "--from",
    "start",
    type=click.FloatRange(min=0),
    default=None,
    help="Only moments ending after this second.",
)
_TO = click.option(
    "--to",
    "end",
    type=click.FloatRange(min=0),
    default=None,
    help="Only moments starting before this second.",
)
_K = click.option(
    "-k", "k", type=click.IntRange(1, 100), default=5, show_default=True, help="Moments to retrieve."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.command("search")
@click.argument("query")
@_VIDEO
@_K
@_FROM
@_TO
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "vector", "text"]),
    default="hybrid",
    show_default=True,
    help="Fuse vector and full-text search, or use one alone.",
)
@_JSON
def search(
    query: str,
    videos: tuple[str, ...],
    k: int,
    start: float | None,
    end: float | None,
    mode: str,
    as_json: bool,
) -> None:
    """Find the moments of stored videos that match QUERY, best first."""
    from videoqa_pipeline.search import SearchError, format_relevance, format_timestamp

    filters = _filters(videos, start, end)
    try:
        result = _searcher().search(query, k=k, filters=filters, mode=mode)
    except (SearchError, StorageError, AIProviderError) as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(search_json(result.moments), indent=2))
        return
    if not result.moments:
        click.echo("No matching moments. Are the videos processed (`videoqa status`)?")
        return
    for rank, moment in enumerate(result.moments, start=1):
        click.echo(
            f"{rank}. {moment.video_id} @ {format_timestamp(moment.start)}-{format_timestamp(moment.end)}  "
            f"relevance {format_relevance(moment.relevance)}"
        )
        if moment.text:
            click.echo(f"   said:    {moment.text}")
        if moment.frame_text:
            click.echo(f"   screen:  {moment.frame_text}")
        if moment.keyframe:
            click.echo(f"   frame:   {moment.keyframe}")


@click.command("ask")
@click.argument("question")
@_VIDEO
@_K
@_FROM
@_TO
@_JSON
def ask(
    question: str, videos: tuple[str, ...], k: int, start: float | None, end: float | None, as_json: bool
) -> None:
    """Answer QUESTION from the stored videos, citing moments as [video_id @ mm:ss].

    With OPENAI_API_KEY, VIDEOQA_ASK_BASE_URL or VIDEOQA_ASK_PROVIDER=openai a chat model writes
    the answer; otherwise the best sentences are quoted. "not found in the videos" when nothing is relevant.
    """
    from videoqa_pipeline.search import SearchError, answerer_for, format_relevance
    from videoqa_pipeline.search import ask as ask_videos
    from videoqa_pipeline.settings import environment

    filters = _filters(videos, start, end)
    try:
        searcher = _searcher()
        answer = ask_videos(question, searcher, answerer_for(searcher, environment()), k=k, filters=filters)
    except (SearchError, StorageError, AIProviderError) as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(answer.to_dict(), indent=2))
        return
    click.echo(answer.answer)
    if answer.citations:
        click.echo("")
        for citation in answer.citations:
            click.echo(
                f"  {citation.label} (relevance {format_relevance(citation.relevance)}) {citation.text}"
            )
    if answer.dropped_citations:
        click.echo(f"\n  (removed, not among the retrieved moments: {', '.join(answer.dropped_citations)})")
    if answer.uncited:
        click.echo("\n  (uncited: the model named none of the moments it was given, which were:)")
        for moment in answer.moments:
            text = " ".join(filter(None, [moment.text, moment.frame_text]))[:120]
            click.echo(f"  {moment.citation} (relevance {format_relevance(moment.relevance)}) {text}")


def register(group: click.Group) -> None:
    """Add `search` and `ask` to the `videoqa` command group."""
    group.add_command(search)
    group.add_command(ask)
