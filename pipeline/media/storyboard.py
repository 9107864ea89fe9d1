"""Storyboards for scrubbing previews: sprite sheets of tiles and a WebVTT track pointing at them.

Like Mux's storyboards: the player shows, while the viewer drags the seek bar, the tile whose
cue covers that time; each cue's text is ``<sheet>#xywh=x,y,w,h`` (a media fragment). Here:

- the interval between tiles adapts to the duration: ``duration / storyboard_target_tiles``,
  kept within ``storyboard_min_interval_s`` and ``storyboard_max_interval_s`` (long recordings
  get more tiles at the longest interval, on several sheets);
- a sheet holds at most ``storyboard_columns`` x ``storyboard_rows`` tiles, so no sheet is too
  large to download while scrubbing; the last sheet has only the rows it needs;
- the cues cover the whole duration without gaps or overlaps: cue *k* runs from *k* times the
  interval to the next cue, and the last one ends at the duration;
- cues name the sheets relative to the track itself (``storyboard-1.jpg#xywh=...``), which is
  where they are published (both under ``thumbs/``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.settings import ThumbnailSettings
from pipeline.tools.images import image_size, write_sheet

SHEET_PATTERN = "storyboard-{n}.jpg"
VTT_NAME = "storyboard.vtt"


def tile_interval(duration: float, settings: ThumbnailSettings) -> float:
    """Seconds between tiles for a video of ``duration`` seconds."""
    wanted = duration / max(1, settings.storyboard_target_tiles)
    bounded = min(
        settings.storyboard_max_interval_s, max(settings.storyboard_min_interval_s, wanted)
    )
    return round(bounded, 3)


def tile_count(duration: float, interval: float) -> int:
    return max(1, math.ceil(duration / interval - 1e-6))


def tile_size(display_width: int, display_height: int, tile_width: int) -> tuple[int, int]:
    """An even tile size of ``tile_width`` (never wider than the video) at the video's aspect."""
    width = min(tile_width, display_width) // 2 * 2
    height = max(2, round(display_height * width / display_width / 2) * 2)
    return max(2, width), height


@dataclass(frozen=True)
class Sheet:
    file: Path
    width: int
    height: int
    tiles: int


@dataclass(frozen=True)
class Storyboard:
    sheets: list[Sheet]
    vtt: Path
    interval: float
    tiles: int
    tile_width: int
    tile_height: int


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def build(
    frames: list[Path],
    duration: float,
    interval: float,
    out: Path,
    settings: ThumbnailSettings,
) -> Storyboard:
    """Sprite sheets and the WebVTT track in ``out`` from ``frames`` (one per interval)."""
    if not frames:
        raise ValueError("a storyboard needs at least one frame")
    count = min(len(frames), tile_count(duration, interval))
    frames = frames[:count]
    tile_w, tile_h = image_size(frames[0])
    columns = settings.storyboard_columns
    per_sheet = columns * settings.storyboard_rows
    sheets: list[Sheet] = []
    cues: list[str] = []
    for start in range(0, count, per_sheet):
        chunk = frames[start : start + per_sheet]
        number = len(sheets) + 1
        cols = min(columns, len(chunk))
        rows = math.ceil(len(chunk) / columns)
        name = SHEET_PATTERN.format(n=number)
        placed: list[tuple[Path, tuple[int, int]]] = []
        for offset, frame in enumerate(chunk):
            x, y = (offset % columns) * tile_w, (offset // columns) * tile_h
            placed.append((frame, (x, y)))
            index = start + offset
            begin = index * interval
            end = duration if index == count - 1 else (index + 1) * interval
            cues.append(
                f"{_timestamp(begin)} --> {_timestamp(end)}\n{name}#xywh={x},{y},{tile_w},{tile_h}"
            )
        target = out / name
        size = (cols * tile_w, rows * tile_h)
        write_sheet(placed, size, (tile_w, tile_h), target, settings.jpeg_quality)
        sheets.append(Sheet(target, size[0], size[1], len(chunk)))
    vtt = out / VTT_NAME
    vtt.write_text("WEBVTT\n\n" + "\n\n".join(cues) + "\n", encoding="utf-8")
    return Storyboard(sheets, vtt, interval, count, tile_w, tile_h)
