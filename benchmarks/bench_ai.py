"""Benchmark of the offline AI models: speed, load time and memory on this machine.

Run: ``python -m benchmarks.bench_ai`` (or ``python benchmarks/bench_ai.py``). Needs
espeak-ng for the speech clip. Each model runs in its own process so load time and
resident memory are measured from a clean start. Prints a table; ratios are against
baselines measured in the same run (audio duration for ASR; sentence-transformers on
torch for the numpy embedding runtime, when torch is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Video pipelines turn raw footage into searchable knowledge.",
    "Every scene is described and every word is indexed.",
    "The keyframes are analysed for printed text and faces.",
    "Embeddings let us find the moment a topic is discussed.",
    "A transcript with timestamps links answers back to the video.",
]


def rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def embedding_texts(n: int) -> list[str]:
    words = [
        "video",
        "scene",
        "frame",
        "speech",
        "text",
        "search",
        "answer",
        "question",
        "model",
        "pipeline",
        "storage",
        "index",
        "moment",
        "topic",
    ]
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, size=int(rng.integers(5, 30)))) for _ in range(n)]


def worker(kind: str, arg: str) -> dict[str, float | str]:
    """Load one model, run it, report timings and memory (runs in a fresh process)."""
    sys.path.insert(0, str(ROOT))
    base = rss_mb()
    started = time.perf_counter()
    if kind == "asr":
        from videoqa_pipeline.ai.audio import wav_duration
        from videoqa_pipeline.ai.local_asr import LocalWhisperTranscriber

        transcriber = LocalWhisperTranscriber()
        load = time.perf_counter() - started
        loaded = rss_mb()
        t0 = time.perf_counter()
        transcript = transcriber.transcribe(arg)
        elapsed = time.perf_counter() - t0
        duration = wav_duration(arg)
        from videoqa_pipeline_tests.ai.test_local_models import word_error_rate

        reference = " ".join(SENTENCES * 3)
        return {"load_s": load, "rss_load_mb": loaded - base, "rss_peak_mb": rss_mb() - base, "seconds": elapsed,
                "audio_s": duration, "rtf": elapsed / duration, "wer": word_error_rate(reference, transcript.text)}  # fmt: skip
    if kind == "vision":
        from videoqa_pipeline.ai.local_vision import LocalFrameAnalyzer
        from videoqa_pipeline_tests.ai.conftest import text_frame_jpeg

        analyzer = LocalFrameAnalyzer()
        load = time.perf_counter() - started
        loaded = rss_mb()
        frames = [
            text_frame_jpeg([f"SLIDE {i}", "TOTAL 42"], background=(30 * i % 255, 80, 160)) for i in range(20)
        ]
        analyzer.analyze(frames[:1])  # warm-up: first ONNX run allocates
        t0 = time.perf_counter()
        analyzer.analyze(frames)
        elapsed = time.perf_counter() - t0
        return {"load_s": load, "rss_load_mb": loaded - base, "rss_peak_mb": rss_mb() - base,
                "ms_per_image": 1000 * elapsed / len(frames)}  # fmt: skip
    texts = embedding_texts(int(arg.split(":")[0]))
    out_path = arg.split(":", 1)[1]
    if kind == "embed":
        from videoqa_pipeline.ai.local_embed import LocalEmbedder

        embedder = LocalEmbedder()
        load = time.perf_counter() - started
        loaded = rss_mb()
        embedder.embed(texts[:8])
        t0 = time.perf_counter()
        vectors = embedder.embed(texts).vectors
    else:  # sentence-transformers on torch, the baseline
        from sentence_transformers import SentenceTransformer

        from videoqa_pipeline.ai.packaged_models import packaged_minilm_dir

        model = SentenceTransformer(str(packaged_minilm_dir()), device="cpu")
        load = time.perf_counter() - started
        loaded = rss_mb()
        model.encode(texts[:8])
        t0 = time.perf_counter()
        vectors = np.asarray(model.encode(texts, batch_size=32, normalize_embeddings=True), np.float32)
    elapsed = time.perf_counter() - t0
    np.save(out_path, vectors)
    return {"load_s": load, "rss_load_mb": loaded - base, "rss_peak_mb": rss_mb() - base,
            "per_s": len(texts) / elapsed}  # fmt: skip


def run_worker(kind: str, arg: str) -> dict[str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", kind, arg],
        capture_output=True, text=True, env=env, check=False, cwd=ROOT,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_speech(dest: Path) -> Path:
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is required for the speech clip (apt-get install espeak-ng)")
    raw = dest.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), " ".join(SENTENCES * 3)], check=True)
    from videoqa_pipeline.ai.audio import ffmpeg_exe

    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(raw), "-ac", "1", "-ar", "16000", str(dest)],
        check=True,
    )
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=int, default=512, help="sentences to embed")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    sys.path.insert(0, str(ROOT))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        wav = make_speech(Path(tmp) / "speech.wav")
        asr = run_worker("asr", str(wav))
        vision = run_worker("vision", "-")
        numpy_embed = run_worker("embed", f"{args.texts}:{tmp}/numpy.npy")
        try:
            torch_embed: dict[str, float] | None = run_worker("st", f"{args.texts}:{tmp}/st.npy")
        except RuntimeError as exc:
            print(f"(sentence-transformers baseline skipped: {str(exc).splitlines()[-1]})")
            torch_embed = None
        agreement = None
        if torch_embed is not None:
            a, b = np.load(f"{tmp}/numpy.npy"), np.load(f"{tmp}/st.npy")
            agreement = float((a * b).sum(axis=1).min())

    print(f"\nOffline AI models on {cpus} CPUs\n")
    header = f"{'model':<44} {'load s':>7} {'RSS MB':>7} {'peak MB':>8}  throughput"
    print(header)
    print("-" * (len(header) + 20))
    print(f"{'ASR whisper tiny.en int8 (faster-whisper)':<44} {asr['load_s']:7.2f} {asr['rss_load_mb']:7.0f} {asr['rss_peak_mb']:8.0f}  "
          f"RTF {asr['rtf']:.3f} on {asr['audio_s']:.0f}s speech (target <= 0.3; x{1 / asr['rtf']:.1f} real time), WER {asr['wer']:.3f}")  # fmt: skip
    print(f"{'vision RapidOCR + OpenCV facts (1280x720)':<44} {vision['load_s']:7.2f} {vision['rss_load_mb']:7.0f} {vision['rss_peak_mb']:8.0f}  "
          f"{vision['ms_per_image']:.0f} ms/image")  # fmt: skip
    print(f"{'embed all-MiniLM-L6-v2 numpy runtime':<44} {numpy_embed['load_s']:7.2f} {numpy_embed['rss_load_mb']:7.0f} {numpy_embed['rss_peak_mb']:8.0f}  "
          f"{numpy_embed['per_s']:.0f} texts/s")  # fmt: skip
    if torch_embed is not None and agreement is not None:
        print(f"{'embed baseline: sentence-transformers/torch':<44} {torch_embed['load_s']:7.2f} {torch_embed['rss_load_mb']:7.0f} {torch_embed['rss_peak_mb']:8.0f}  "
              f"{torch_embed['per_s']:.0f} texts/s")  # fmt: skip
        print(f"\nnumpy vs torch: speed x{numpy_embed['per_s'] / torch_embed['per_s']:.2f}, "
              f"load x{torch_embed['load_s'] / numpy_embed['load_s']:.1f} faster, "
              f"RSS {numpy_embed['rss_peak_mb']:.0f} vs {torch_embed['rss_peak_mb']:.0f} MB, "
              f"min cosine agreement {agreement:.6f} over {args.texts} texts")  # fmt: skip


if __name__ == "__main__":
    main()
