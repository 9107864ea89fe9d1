"""Helpers for the caption and transcript tests: known texts to speak, word error rate, the
offline model installed once per test session, and running the transcript stage for real."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from pipeline.core.job import JobSpec, JobState
from pipeline.core.settings import Settings
from pipeline.core.stage import StageResult
from pipeline.core.workspace import Workspace
from pipeline.engine.local import LocalExecutor
from pipeline.stages import default_dag
from pipeline.tools.speech_models import install_offline_model
from tests.conftest import make_settings

# 70 words, no numbers, spellings Whisper writes the same way.
PARAGRAPH = (
    "Good morning and welcome to the conference. Today we will talk about energy, security "
    "and the future of our cities. Many people ask why these questions matter so much. The "
    "answer is simple: the decisions we make this year will shape the lives of our children. "
    "We need clean power, safe streets and good schools. Working together, we can build a "
    "better world for everyone. Thank you for listening."
)
SHORT_EN = "Welcome to the conference. Today we talk about energy and security."
GERMAN = (
    "Guten Morgen und herzlich willkommen zur Konferenz. Heute sprechen wir über Energie, "
    "Sicherheit und die Zukunft Europas."
)

_installed: dict[str, Path] = {}


def shared_model_cache(factory: pytest.TempPathFactory) -> Path:
    """A model cache holding the offline model, installed once for the whole session."""
    if "cache" not in _installed:
        cache = factory.mktemp("models")
        install_offline_model(cache)
        _installed["cache"] = cache
    return _installed["cache"]


def words_of(text: str) -> list[str]:
    """Lower-case words without punctuation (apostrophes inside words kept)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return re.findall(r"[^\W_]+(?:'[^\W_]+)*", text)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference's length."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(
                previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)
            )
        previous = current
    return previous[-1] / max(1, len(ref))


def transcript_settings(tmp_path: Path, cache: Path, **transcript: object) -> Settings:
    return make_settings(tmp_path, transcript={"model_cache_dir": str(cache), **transcript})


TRANSCRIPT_DAG = default_dag().only("ingest", "probe", "transcript")
"""The transcript stage and the stages it requires."""


def run_transcript_job(
    settings: Settings, source: str, **options: object
) -> tuple[JobState, Workspace]:
    """Ingest, probe and transcript, for real, with the local executor."""
    spec = JobSpec(source=source, options=dict(options))
    state = LocalExecutor(settings, dag=TRANSCRIPT_DAG).run(spec)
    return state, Workspace.for_job(settings.storage.workspace, state.id)


def stage_result(workspace: Workspace, stage: str = "transcript") -> StageResult:
    return StageResult.model_validate_json(workspace.result_file(stage).read_text("utf-8"))
