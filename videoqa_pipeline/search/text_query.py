"""Turn a question into full-text search terms.

The stored ``search_tsv`` uses PostgreSQL's ``simple`` configuration (no stemming, no stop words:
transcripts and on-screen text mix languages and product names). A question is therefore reduced
here to its content words, each lightly stemmed and matched as a prefix (``found:*`` matches
"founded" and "founding"), OR-ed together: paraphrased questions rarely repeat every word of the
answer, so requiring all of them (as ``websearch_to_tsquery`` does) finds almost nothing.
Items matching more terms still rank higher (the search orders by matched terms, then ``ts_rank``).
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[0-9a-zA-Z\u00c0-\u024f]+")

#: Question words and function words that would match nearly every transcript.
_STOP_WORDS_TEXT = """a about above after again all also am an and any are as at be been before being below between
    both but by can could did do does doing down during each few for from further had has have having
    he her here hers him his how i if in into is it its itself just me more most my no nor not now of
    off on once only or other our out over own said same say says she should so some such tell than
    that the their them then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your video videos show shows
    shown mention mentioned mentions talk talks talked speaker"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "ed", "es", "ly", "s")


def stem(word: str) -> str:
    """Strip one common English suffix so the prefix match covers other forms of the word.

    Only words of five letters or more are touched, and at least four letters remain, so short
    words and numbers are matched exactly as typed.
    """
    if len(word) < 5 or word.isdigit():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def query_terms(query: str) -> list[str]:
    """Content words of ``query``, lowercased, stemmed, deduplicated, in order."""
    terms: list[str] = []
    for token in _TOKEN.findall(query.lower()):
        if token in STOP_WORDS or (len(token) < 2 and not token.isdigit()):
            continue
        term = stem(token)
        if term not in terms:
            terms.append(term)
    return terms


#: Most query terms used: the pairs of the match expression grow quadratically.
MAX_TERMS = 8


def tsquery_text(query: str) -> str | None:
    """A ``to_tsquery('simple', ...)`` expression matching items with enough of the query's terms.

    With one term, that term; with more, any two of them (``(a:* & b:*) | (a:* & c:*) | ...``),
    so the GIN index itself discards items sharing a single word with the query instead of the
    ranking having to sort them all (see :func:`required_matches`). None when there is no term.
    """
    terms = query_terms(query)[:MAX_TERMS]
    if not terms:
        return None
    if required_matches(len(terms)) < 2:
        return " | ".join(f"{term}:*" for term in terms)
    return " | ".join(
        f"({first}:* & {second}:*)" for i, first in enumerate(terms) for second in terms[i + 1 :]
    )


def text_tokens(text: str) -> list[str]:
    """Lowercased tokens of a stored text, as the ``simple`` configuration would split them."""
    return _TOKEN.findall(text.lower())


#: Content words an item must contain to count as a full-text match, when the query has that many.
MIN_MATCHED_TERMS = 2


def required_matches(term_count: int) -> int:
    """How many of ``term_count`` query terms a full-text hit must contain.

    Two (or all, when the query has fewer): a single shared common word is too weak a signal to
    let an item outvote vector similarity in the fusion, while exact codes and names ("invoice
    4471", "gate 31") still match.
    """
    return max(1, min(MIN_MATCHED_TERMS, term_count))
