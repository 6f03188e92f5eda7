"""The offline path loads and runs all three models without opening a non-loopback socket."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest

from videoqa_pipeline.ai import AIConfig, clear_cache, get_embedder, get_frame_analyzer, get_transcriber
from videoqa_pipeline_tests.ai.conftest import text_frame_jpeg


def _is_local(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def test_offline_models_open_no_network_socket(monkeypatch: pytest.MonkeyPatch, speech_wav: Path) -> None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    attempts: list[Any] = []
    lookups: list[Any] = []
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def connect(self: socket.socket, address: Any) -> Any:
        attempts.append(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        attempts.append(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    # Instrumentation only: every call still goes to the real socket functions.
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    clear_cache()  # load the models inside the instrumented window
    config = AIConfig.from_env({})
    transcript = get_transcriber(config).transcribe(speech_wav)
    analysis = get_frame_analyzer(config).analyze([text_frame_jpeg(["OFFLINE"])]).analyses[0]
    vectors = get_embedder(config).embed(["offline embeddings"]).vectors

    assert transcript.text and analysis.ocr_text and vectors.shape == (1, 384)
    remote = [a for a in attempts if not _is_local(a)]
    assert remote == [], f"offline path tried to connect to {remote}"
    assert [h for h in lookups if h not in (None, "localhost", "127.0.0.1", "::1")] == []
