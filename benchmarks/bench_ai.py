"""Benchmark of the offline AI models: accuracy, speed, load time and memory on this machine.

Run: ``python -m benchmarks.bench_ai`` (or ``python benchmarks/bench_ai.py``). Needs espeak-ng
for the speech clips. Each model runs in its own process so load time and resident memory are
measured from a clean start; "peak MB" is the process's peak resident memory (Python, imports
and the model included).

* Speech: espeak-ng clips in English, German, French, Spanish, Russian and Greek, plus real
  speech (``jfk.flac``; ``multilingual.mp3``, the MIT licence read in English then German),
  through the default (Whisper base, 99 languages) and the English-only tiny.en. WER for Latin
  scripts, CER for the others.
* Embeddings: all-MiniLM-L6-v2 int8 on ONNX Runtime (the default) against the float32 weights run
  by the numpy encoder and by sentence-transformers on torch, when those are installed
  (``pip install 'videoqa-pipeline[sentence-transformers]'``): speed, cosine to float32, and
  overlap of each text's 10 nearest neighbours.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "videoqa_pipeline_tests" / "ai" / "data"
#: language -> (text spoken by espeak-ng at 130 words/min, error unit).
SPEECH = {
    "en": (
        "The quick brown fox jumps over the lazy dog. Video pipelines turn raw footage into searchable "
        "knowledge. Every scene is described and every word is indexed. The keyframes are analysed for "
        "printed text and faces.",
        "wer",
    ),
    "de": (
        "Der schnelle braune Fuchs springt über den faulen Hund. Die Konferenz beginnt morgen um neun Uhr im "
        "großen Saal. Wir haben die Ergebnisse der Messung gestern ausgewertet. Bitte schicken Sie mir den "
        "Bericht bis Freitag.",
        "wer",
    ),
    "fr": (
        "Le renard brun rapide saute par-dessus le chien paresseux. La réunion commence demain à neuf heures "
        "dans la grande salle. Nous avons analysé les résultats de la mesure hier. Envoyez-moi le rapport "
        "avant vendredi, s'il vous plaît.",
        "wer",
    ),
    "es": (
        "El rápido zorro marrón salta sobre el perro perezoso. La reunión empieza mañana a las nueve en la "
        "sala grande. Ayer analizamos los resultados de la medición. Por favor, envíeme el informe antes del "
        "viernes.",
        "wer",
    ),
    "ru": (
        "Сегодня хорошая погода. Встреча начнётся завтра в девять часов в большом зале. Пожалуйста, "
        "пришлите мне отчёт до пятницы.",
        "cer",
    ),
    "el": (
        "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. Η συνάντηση αρχίζει αύριο στις εννέα στη "  # noqa: RUF001
        "μεγάλη αίθουσα. Χθες αναλύσαμε τα αποτελέσματα της μέτρησης.",
        "cer",
    ),
}
#: Real speech: jfk.flac, and the two halves of multilingual.mp3 (the MIT licence in English, German).
REAL = ("jfk", "mit-en", "mit-de")
#: ASR configurations: label -> (VIDEOQA_ASR_MODEL value, clips it is measured on).
ASR_SETUPS = {
    "default: Whisper base, 99 languages": (None, [*SPEECH, *REAL]),
    "VIDEOQA_ASR_MODEL=tiny.en (English only)": ("tiny.en", ["en", "jfk", "mit-en"]),
}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_measured(build: Callable[[], T]) -> tuple[T, dict[str, float]]:
    """``build()`` with its time, the resident memory it added and its peak above the start (MB)."""
    from videoqa_pipeline.steps.memory import PeakRss, status_mb

    before = status_mb("VmRSS") or 0.0
    started = time.perf_counter()
    with PeakRss() as peak:
        built = build()
    seconds = time.perf_counter() - started
    added = (status_mb("VmRSS") or 0.0) - before
    return built, {
        "load_s": seconds,
        "load_added_mb": added,
        "load_peak_mb": (peak.peak_mb or before) - before,
    }


def report_model_memory(rows: dict[str, dict[str, float]]) -> None:
    """What loading each model costs: time, resident memory kept, and the peak while loading."""
    print(
        f"\n{'model':<42} {'load s':>6} {'+MB kept':>8} {'+MB peak':>8}  (above the process before loading)"
    )
    for label, row in rows.items():
        if "load_added_mb" in row:
            print(f"{label:<42} {row['load_s']:6.2f} {row['load_added_mb']:8.0f} {row['load_peak_mb']:8.0f}")


def embedding_texts(n: int) -> list[str]:
    words = "video scene frame speech text search answer question model pipeline storage index moment topic"
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words.split(), size=int(rng.integers(5, 30)))) for _ in range(n)]


def asr_worker(model: str, clips_dir: str, clips: list[str]) -> dict[str, object]:
    """Load one ASR setup and transcribe ``clips``; per clip: language, RTF, error rate."""
    from videoqa_pipeline.ai.local_asr import LocalWhisperTranscriber
    from videoqa_pipeline_tests.ai.test_multilingual_speech import JFK, MIT_DE, MIT_EN, error_rate

    references = {"jfk": (JFK, "wer"), "mit-en": (MIT_EN, "wer"), "mit-de": (MIT_DE, "wer"), **SPEECH}

    transcriber, loading = load_measured(lambda: LocalWhisperTranscriber(None if model == "-" else model))
    result: dict[str, object] = {**loading, "clips": {}}
    for clip in clips:
        path = DATA / "jfk.flac" if clip == "jfk" else Path(clips_dir) / f"{clip}.wav"
        text, unit = references[clip]
        t0 = time.perf_counter()
        transcript = transcriber.transcribe(path)
        elapsed = time.perf_counter() - t0
        result["clips"][clip] = {  # type: ignore[index]
            "language": transcript.language,
            "model": transcript.model.split(" ")[0],
            "rtf": elapsed / transcript.duration,
            "unit": unit,
            "error": error_rate(text, transcript.text, unit),
            "words_timed": sum(len(s.words) for s in transcript.segments),
        }
    result["peak_mb"] = peak_mb()
    return result


def embed_worker(kind: str, n: int, out_path: str) -> dict[str, float]:
    """Embed ``n`` texts with one runtime, save the vectors, report speed and memory."""
    texts = embedding_texts(n)
    started = time.perf_counter()
    if kind == "st":
        from sentence_transformers import SentenceTransformer

        from videoqa_pipeline.ai.packaged_models import packaged_minilm_dir

        model = SentenceTransformer(str(packaged_minilm_dir()), device="cpu")
        load = time.perf_counter() - started
        loading: dict[str, float] = {}  # torch's memory is not comparable: not measured
        model.encode(texts[:8])
        t0 = time.perf_counter()
        vectors = np.asarray(model.encode(texts, batch_size=32, normalize_embeddings=True), np.float32)
    else:
        from videoqa_pipeline.ai.local_embed import LocalEmbedder

        embedder, loading = load_measured(
            lambda: LocalEmbedder("all-MiniLM-L6-v2" if kind == "fp32" else None)
        )
        load = loading["load_s"]
        embedder.embed(texts[:8])
        t0 = time.perf_counter()
        vectors = embedder.embed(texts).vectors
    elapsed = time.perf_counter() - t0
    np.save(out_path, vectors)
    return {**loading, "load_s": load, "peak_mb": peak_mb(), "per_s": len(texts) / elapsed}


def vision_worker() -> dict[str, float]:
    from videoqa_pipeline.ai.local_vision import LocalFrameAnalyzer
    from videoqa_pipeline_tests.ai.conftest import text_frame_jpeg

    analyzer, loading = load_measured(LocalFrameAnalyzer)
    frames = [
        text_frame_jpeg([f"SLIDE {i}", "TOTAL 42"], background=(30 * i % 255, 80, 160)) for i in range(20)
    ]
    analyzer.analyze(frames[:1])  # warm-up: first ONNX run allocates
    t0 = time.perf_counter()
    analyzer.analyze(frames)
    return {
        **loading,
        "peak_mb": peak_mb(),
        "ms_per_image": 1000 * (time.perf_counter() - t0) / len(frames),
    }


def run_worker(*args: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", *args],
        capture_output=True, text=True, env=env, check=False, cwd=ROOT,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} worker failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_speech(dest: Path) -> None:
    """One 16 kHz mono WAV per language of :data:`SPEECH` in ``dest``."""
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is required for the speech clips (apt-get install espeak-ng)")
    from videoqa_pipeline.ai.audio import ffmpeg_exe

    for name, cut in (("mit-en", ["-t", "28"]), ("mit-de", ["-ss", "28"])):
        subprocess.run(
            [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(DATA / "multilingual.mp3"), *cut, "-ac", "1",
             "-ar", "16000", str(dest / f"{name}.wav")],
            check=True,
        )  # fmt: skip
    for language, (text, _unit) in SPEECH.items():
        raw = dest / f"{language}.raw.wav"
        voice = "en-us" if language == "en" else language
        subprocess.run(["espeak-ng", "-v", voice, "-s", "130", "-w", str(raw), text], check=True)
        subprocess.run(
            [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(raw), "-ac", "1", "-ar", "16000",
             str(dest / f"{language}.wav")],
            check=True,
        )  # fmt: skip


def report_asr(results: dict[str, dict]) -> None:
    clips = [*SPEECH, *REAL]
    print(f"{'speech setup':<42} {'load s':>6} {'peak MB':>7}  " + "  ".join(f"{c:>14}" for c in clips))
    for label, result in results.items():
        cells = []
        for clip in clips:
            item = result["clips"].get(clip)
            cells.append(
                f"{'-':>14}"
                if item is None
                else f"{item['language']:>2} {item['unit'].upper()}{item['error']:4.2f} {item['rtf']:4.2f}"
            )
        print(f"{label:<42} {result['load_s']:6.2f} {result['peak_mb']:7.0f}  " + "  ".join(cells))
    print("cells: detected language, WER or CER, real-time factor (seconds of work per second of audio)")


def report_embeddings(results: dict[str, dict], tmp: str, n: int) -> None:
    print(f"\n{'embedding runtime':<42} {'load s':>6} {'peak MB':>7}  texts/s  vs float32")
    reference = np.load(f"{tmp}/fp32.npy") if "fp32" in results else None
    for kind, label in (("int8", "all-MiniLM-L6-v2@int8, ONNX Runtime"), ("fp32", "all-MiniLM-L6-v2, numpy (float32)"),
                        ("st", "all-MiniLM-L6-v2, sentence-transformers")):  # fmt: skip
        if kind not in results:
            print(f"{label:<42} (not installed: pip install 'videoqa-pipeline[sentence-transformers]')")
            continue
        result, agreement = results[kind], ""
        if reference is not None and kind != "fp32":
            vectors = np.load(f"{tmp}/{kind}.npy")
            cosine = (vectors * reference).sum(axis=1)
            ours, theirs = vectors @ vectors.T, reference @ reference.T
            top = [
                len(set(np.argsort(-ours[i])[1:11]) & set(np.argsort(-theirs[i])[1:11])) / 10
                for i in range(n)
            ]
            agreement = (
                f"cosine min {cosine.min():.4f} mean {cosine.mean():.5f}, top-10 overlap {np.mean(top):.3f}"
            )
        print(
            f"{label:<42} {result['load_s']:6.2f} {result['peak_mb']:7.0f}  {result['per_s']:7.0f}  {agreement}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=int, default=512, help="sentences to embed")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.worker:
        kind, *rest = args.worker
        if kind == "asr":
            print(json.dumps(asr_worker(rest[0], rest[1], rest[2].split(","))))
        elif kind == "vision":
            print(json.dumps(vision_worker()))
        else:
            print(json.dumps(embed_worker(kind, int(rest[0]), rest[1])))
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        make_speech(Path(tmp))
        asr = {
            label: run_worker("asr", model or "-", tmp, ",".join(clips))
            for label, (model, clips) in ASR_SETUPS.items()
        }
        vision = run_worker("vision")
        embeddings: dict[str, dict] = {}
        for kind in ("int8", "fp32", "st"):
            try:
                embeddings[kind] = run_worker(kind, str(args.texts), f"{tmp}/{kind}.npy")
            except RuntimeError as exc:
                print(f"({kind} embedding runtime skipped: {str(exc).splitlines()[-1]})")
        print(f"\nOffline AI models on {cpus} CPUs\n")
        report_asr(asr)
        print(f"\n{'vision RapidOCR + OpenCV facts (1280x720)':<42} {vision['load_s']:6.2f} {vision['peak_mb']:7.0f}  "
              f"{vision['ms_per_image']:.0f} ms/image")  # fmt: skip
        report_embeddings(embeddings, tmp, args.texts)
        report_model_memory(
            {
                **{f"speech: {label}": result for label, result in asr.items()},
                "vision: RapidOCR + OpenCV facts": vision,
                **{f"embeddings: {kind}": result for kind, result in embeddings.items()},
            }
        )


if __name__ == "__main__":
    main()
