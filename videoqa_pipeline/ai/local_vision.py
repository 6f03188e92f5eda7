"""Offline frame analysis: OCR with RapidOCR (PP-OCRv4, ONNX) plus measured visual facts.

No captioning model with bundled weights exists on the package index (see MODELS.md), so
the offline caption is a plain description assembled from measurements and says so. The
facts (brightness, contrast, sharpness, dominant colours, faces when OpenCV ships its Haar
cascades) are useful for search filters and for spotting black or blurred keyframes.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.types import MEASURED_CAPTION_PREFIX, FrameAnalysis, FrameAnalysisBatch, Usage

logger = logging.getLogger(__name__)

OCR_MIN_SCORE = 0.5
# Frames are analysed at this width at most: OCR of big captions and the colour facts do
# not need more, and it bounds time and memory per frame.
MAX_ANALYSIS_WIDTH = 1280
FACT_WIDTH = 160

# Named reference colours (RGB) for describing dominant colours in words.
_COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "red": (200, 30, 30),
    "orange": (240, 140, 20),
    "yellow": (230, 220, 40),
    "green": (40, 160, 60),
    "blue": (30, 70, 200),
    "sky blue": (120, 180, 230),
    "purple": (130, 50, 160),
    "pink": (240, 150, 190),
    "brown": (120, 75, 40),
    "dark green": (20, 70, 30),
    "navy": (20, 30, 90),
}


def _colour_name(rgb: np.ndarray) -> str:
    distances = {
        name: float(np.sum((rgb - np.array(ref, np.float32)) ** 2)) for name, ref in _COLOUR_NAMES.items()
    }
    return min(distances, key=lambda name: distances[name])


def decode_image(data: bytes, index: int) -> np.ndarray:
    """Decode JPEG (or PNG) bytes to a BGR array.

    Raises:
        AIProviderError: (permanent) when the bytes are not a decodable image.
    """
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if array is None:
        raise AIProviderError(
            f"Image {index} of the batch ({len(data)} bytes) could not be decoded; expected JPEG bytes "
            "as written by the keyframe step.",
            permanent=True,
        )
    return array


def visual_facts(image: np.ndarray, face_detector: Any | None) -> dict[str, Any]:
    """Measure simple facts of a BGR frame.

    Args:
        image: The frame, BGR uint8.
        face_detector: An OpenCV ``CascadeClassifier`` or ``None`` when unavailable.

    Returns:
        ``width``, ``height``, ``brightness`` (0-1), ``contrast`` (0-1), ``sharpness``
        (variance of the Laplacian), ``dominant_colours`` (names with shares) and ``faces``
        (count, or ``None`` without a detector).
    """
    height, width = image.shape[:2]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(
        image, (FACT_WIDTH, max(1, round(height * FACT_WIDTH / width))), interpolation=cv2.INTER_AREA
    )
    pixels = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).reshape(-1, 3).astype(np.float32)
    k = min(4, len(pixels))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    kmeans: Any = cv2.kmeans  # the stubs reject bestLabels=None, which OpenCV accepts
    _compactness, labels, centres = kmeans(pixels, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k)
    shares: dict[str, float] = {}
    for cluster in np.argsort(-counts):
        name = _colour_name(centres[cluster])
        shares[name] = shares.get(name, 0.0) + float(counts[cluster]) / len(pixels)
    faces: int | None = None
    if face_detector is not None:
        detected = face_detector.detectMultiScale(
            cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5, minSize=(max(24, width // 20),) * 2
        )
        faces = len(detected)
    return {
        "width": int(width),
        "height": int(height),
        "brightness": round(float(gray.mean()) / 255.0, 3),
        "contrast": round(float(gray.std()) / 255.0, 3),
        "sharpness": round(float(cv2.Laplacian(gray, cv2.CV_64F).var()), 1),
        "dominant_colours": [
            {"name": name, "share": round(share, 3)}
            for name, share in sorted(shares.items(), key=lambda x: -x[1])
        ],
        "faces": faces,
    }


def labels_and_caption(facts: dict[str, Any], ocr_text: str) -> tuple[list[str], str]:
    """Turn measured facts and OCR text into labels and a plain one-sentence description."""
    labels: list[str] = []
    brightness = facts["brightness"]
    if brightness < 0.08:
        labels.append("black frame")
    elif brightness < 0.3:
        labels.append("dark")
    elif brightness > 0.75:
        labels.append("bright")
    if facts["contrast"] < 0.03:
        labels.append("uniform")
    if facts["sharpness"] < 20 and facts["contrast"] >= 0.03:
        labels.append("blurry")
    colours = [c["name"] for c in facts["dominant_colours"] if c["share"] >= 0.15][:3]
    labels.extend(colours)
    if ocr_text:
        labels.append("text")
    faces = facts.get("faces")
    if faces:
        labels.append("face" if faces == 1 else "faces")
        labels.append("person")

    tone = next((label for label in labels if label in ("black frame", "dark", "bright")), "")
    texture = [label for label in labels if label in ("uniform", "blurry")]
    subject = (
        "black frame" if tone == "black frame" else " ".join([*([tone] if tone else []), *texture, "frame"])
    )
    parts = [f"A {subject}"]
    if colours:
        parts.append(f"mostly {', '.join(colours)}")
    if faces:
        parts.append(f"{faces} face{'s' if faces > 1 else ''} visible")
    if ocr_text:
        snippet = ocr_text if len(ocr_text) <= 80 else ocr_text[:77] + "..."
        parts.append(f'text reading "{snippet}"')
    caption = MEASURED_CAPTION_PREFIX + ", ".join(parts) + "."
    return labels, caption


def _load_face_detector() -> Any | None:
    cascade_dir = getattr(getattr(cv2, "data", None), "haarcascades", "")
    path = Path(cascade_dir) / "haarcascade_frontalface_default.xml" if cascade_dir else None
    if path is None or not path.is_file():
        logger.info(
            "OpenCV's Haar cascades are not installed (opencv-python-headless 4.x ships them); "
            "face counts are reported as null."
        )
        return None
    cascade_class: Any = getattr(cv2, "CascadeClassifier", None)
    if cascade_class is None:
        return None
    detector = cascade_class(str(path))
    return None if detector.empty() else detector


def _load_ocr() -> Any:
    """RapidOCR's detection, orientation and recognition sessions (ONNX Runtime, arena off)."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:
        raise AIProviderError(
            "Offline frame analysis needs rapidocr-onnxruntime: `pip install rapidocr-onnxruntime`.",
            permanent=True,
        ) from exc
    return RapidOCR()


class LocalFrameAnalyzer:
    """A :class:`~videoqa_pipeline.ai.types.FrameAnalyzer` using RapidOCR and OpenCV, fully offline."""

    def __init__(self, model: str | None = None) -> None:
        """Load the OCR models shipped in ``rapidocr-onnxruntime`` and the face cascade.

        Args:
            model: Unused for now beyond naming (the OCR models come with the wheel); kept
                so ``VIDEOQA_VISION_MODEL`` has one meaning across providers.

        Raises:
            AIProviderError: (permanent) when rapidocr-onnxruntime is missing.
        """
        started = time.perf_counter()
        self._lock = threading.Lock()
        self._ocr: Any | None = _load_ocr()
        self._face_detector = _load_face_detector()
        self.model_name = "rapidocr-ppocrv4+opencv-facts" if model is None else f"rapidocr+opencv:{model}"
        self.load_seconds = time.perf_counter() - started
        logger.info("Loaded frame analyzer %s in %.2fs", self.model_name, self.load_seconds)

    @property
    def loaded(self) -> bool:
        """Whether the OCR sessions are in memory now."""
        return self._ocr is not None

    def release(self) -> None:
        """Free the three OCR sessions and their buffers until frames are analysed again.

        A run worker analyses keyframes once per video; the later stages need none of it.
        """
        with self._lock:
            self._ocr = None
        gc.collect()

    def read_text(self, image: np.ndarray) -> str:
        """Return the text RapidOCR reads in a BGR frame, lines in reading order, joined by spaces."""
        with self._lock:
            if self._ocr is None:
                self._ocr = _load_ocr()
            result, _elapsed = self._ocr(image)
        if not result:
            return ""
        # Each item is [box, text, score]; sort top-to-bottom then left-to-right.
        lines = [
            (min(p[1] for p in box), min(p[0] for p in box), str(text).strip())
            for box, text, score in result
            if float(score) >= OCR_MIN_SCORE and str(text).strip()
        ]
        lines.sort(key=lambda line: (round(line[0] / 20), line[1]))
        return " ".join(text for _y, _x, text in lines)

    def analyze(self, images: Sequence[bytes]) -> FrameAnalysisBatch:
        """Analyse a batch of JPEG frames.

        Args:
            images: JPEG bytes per keyframe.

        Returns:
            One :class:`FrameAnalysis` per image with OCR text, labels, a plain description
            and the measured facts.

        Raises:
            AIProviderError: (permanent) when an image cannot be decoded.
        """
        analyses = []
        for index, data in enumerate(images):
            image = decode_image(data, index)
            if image.shape[1] > MAX_ANALYSIS_WIDTH:
                scale = MAX_ANALYSIS_WIDTH / image.shape[1]
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            facts = visual_facts(image, self._face_detector)
            ocr_text = self.read_text(image)
            labels, caption = labels_and_caption(facts, ocr_text)
            analyses.append(
                FrameAnalysis(
                    caption=caption, labels=labels, ocr_text=ocr_text, model=self.model_name, facts=facts
                )
            )
        return FrameAnalysisBatch(
            analyses=analyses, model=self.model_name, usage=Usage(requests=len(images), images=len(images))
        )
