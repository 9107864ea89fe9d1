"""Loudness: the measurement of a source's audio and the filters that normalise it.

Every rendition with audio is normalised the same way: the source is measured first (ffmpeg's
ebur128 filter: integrated loudness, range, gate and true peak, BS.1770), then the encode runs
loudnorm with those figures (linear when the peaks allow) to ``media.loudness_target_lufs`` /
``media.loudness_true_peak_db``, as stereo at ``media.audio_sample_rate``. Silence (no gated
loudness above :data:`SILENCE_LUFS`) is left as it is.

Pure logic: the argument list of the measuring pass and the reading of its report; the caller
runs ffmpeg (:func:`pipeline.tools.ffmpeg_tools.run`).

The transcode stage (the ladder, MP4 and audio) and the social cut both use these rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.mediainfo import MediaInfo
from pipeline.core.settings import MediaSettings
from pipeline.tools import ffmpeg_tools
from pipeline.tools.ffmpeg_tools import Filter, Graph, Output

SILENCE_LUFS = -70.0
REPORT_LINES = 60
"""How many of ffmpeg's last lines the summary needs (pass as ``log_lines`` to the run)."""


@dataclass(frozen=True)
class Loudness:
    """The measurement loudnorm is given to normalise in one pass."""

    input_i: float
    input_tp: float
    input_lra: float
    input_thresh: float
    target_offset: float = 0.0


def stereo() -> Filter:
    return Filter("aformat", options={"channel_layouts": "stereo"})


def measure_args(source: Path, media: MediaInfo, settings: MediaSettings) -> list[str]:
    """The pass that measures the first audio stream of ``source`` (decoded as stereo)."""
    if media.audio is None:
        raise RecastError(ErrorCode.INTERNAL, "Loudness was asked of media without audio.")
    graph = Graph(
        source=str(source),
        input_policy=ffmpeg_tools.source_input(settings.max_pixels),
        audio_stream=str(media.audio.index),
        audio=[stereo(), Filter("ebur128", options={"peak": "true", "framelog": "verbose"})],
        outputs=[Output("-", {"f": "null"}, audio=0)],
    )
    return ffmpeg_tools.graph_args(graph)


def ebur128_summary(lines: list[str]) -> dict[str, float]:
    """The figures of ebur128's closing summary, keyed ``<section>/<name>``
    (``Integrated loudness/I``, ``Loudness range/LRA``, ``True peak/Peak``...)."""
    text = "\n".join(lines)
    at = text.rfind("Summary:")
    values: dict[str, float] = {}
    if at < 0:
        return values
    section = ""
    for line in text[at + len("Summary:") :].splitlines():
        label, _, rest = line.strip().partition(":")
        if not label:
            continue
        if not rest.strip():
            section = label
            continue
        try:
            values[f"{section}/{label}"] = float(rest.split()[0])
        except ValueError:
            continue
    return values


def loudness_from_report(lines: list[str]) -> Loudness | None:
    """The measurement in the last lines of the measuring pass; None for silence;
    ``media.invalid`` when ffmpeg printed no summary."""
    summary = ebur128_summary(lines)
    try:
        integrated = summary["Integrated loudness/I"]
        loudness = Loudness(
            input_i=integrated,
            input_tp=summary["True peak/Peak"],
            input_lra=max(summary["Loudness range/LRA"], 0.1),  # 0 would mean "not measured"
            input_thresh=summary["Integrated loudness/Threshold"],
        )
    except KeyError as exc:
        raise RecastError(
            ErrorCode.MEDIA_INVALID, "The audio's loudness could not be measured."
        ) from exc
    if not math.isfinite(integrated) or integrated <= SILENCE_LUFS:
        return None
    return loudness


def audio_filters(settings: MediaSettings, loudness: Loudness | None) -> list[Filter]:
    """Stereo, loudness-normalised (linear when the peaks allow it), at the output rate."""
    chain = [stereo()]
    if loudness is not None:
        chain.append(
            Filter(
                "loudnorm",
                options={
                    "I": settings.loudness_target_lufs,
                    "TP": settings.loudness_true_peak_db,
                    "LRA": settings.loudness_range_lu,
                    "measured_I": loudness.input_i,
                    "measured_TP": loudness.input_tp,
                    "measured_LRA": loudness.input_lra,
                    "measured_thresh": loudness.input_thresh,
                    "offset": loudness.target_offset,
                    "linear": "true",
                },
            )
        )
    chain.append(Filter("aresample", (settings.audio_sample_rate,)))
    return chain
