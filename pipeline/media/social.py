"""The 9:16 social cut: its crop window, its size, its burned-in captions and its ffmpeg pass.

Geometry, on the source's *display* size (pixel aspect and rotation applied):

- the crop is the tallest 9:16 window of the frame: the full height and ``height * 9 / 16``
  wide (even), or, for a frame narrower than 9:16, the full width and ``width * 16 / 9`` tall,
  centred vertically; its left edge is the producer's ``crop_x`` (display pixels), else the
  window is centred; a window that would leave the frame is refused (``social.invalid``);
- the output is 1080x1920, or smaller when the source is: nothing is upscaled past the
  source's own resolution, which is, as for the ladder's rungs (:mod:`pipeline.media.ladder`),
  its short side. The vertical frame's short side (its width) is at most the source's short
  side, so a 1080p source gives 1080x1920 (its 608x1080 window scaled up, as every vertical
  cut of a landscape recording is), a 720p one 720x1280 and a 360p one 360x640; a source as
  narrow as 9:16 or narrower is not scaled at all. Both sides are even.

Captions, when asked, are the transcript stage's WebVTT track (its cues as
:mod:`pipeline.media.captions` parses them), written as an ASS script (:func:`caption_script`)
that ffmpeg's ``ass`` filter renders into the picture after scaling (libass: white bold text
on a dark box, centred, in the lower part but clear of the bottom fifth where apps put their
buttons). The filter reads only ASS, through libass, never through a demuxer: the script is
this module's output and nothing in it can name another file (cue text is escaped: no
override blocks, no line-break codes), so no input policy of another format is needed.

The pass (:func:`render_args`): one ffmpeg run decoding the source once; the frames go through
the ladder's :func:`~pipeline.media.ladder.source_filters` (deinterlace, HDR tone mapping,
constant rate, 8-bit 4:2:0), crop, scale and captions; H.264 High at the bit rate of the
matching ladder rung (scaled to the frame's pixels), keyframes every
``media.keyframe_interval_s``; AAC stereo normalised as every rendition
(:mod:`pipeline.media.loudness`); MP4 with the index first (faststart).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.mediainfo import MediaInfo
from pipeline.core.settings import MediaSettings
from pipeline.media.captions import SourceCue
from pipeline.media.ladder import Rendition, choose_ladder, nearest_even, source_filters
from pipeline.media.loudness import Loudness, audio_filters
from pipeline.tools import ffmpeg_tools
from pipeline.tools.ffmpeg_tools import Filter, Graph, Output

TARGET_WIDTH = 1080
TARGET_HEIGHT = 1920
ASPECT = Fraction(9, 16)
"""Width over height of the social cut."""
LABEL = "Vertical (9:16)"

CAPTION_FONT = "DejaVu Sans"
"""libass finds it through fontconfig (Debian's ffmpeg pulls fonts-dejavu-core in); another
font is substituted when it is missing."""
CAPTION_SIZE = 0.04
"""Caption text height, as a fraction of the frame's height."""
CAPTION_BOTTOM = 0.22
"""Where the captions' last line ends, as a fraction of the height above the bottom."""
CAPTION_SIDES = 0.06
"""The margin left and right of the captions, as a fraction of the width."""


@dataclass(frozen=True)
class CropWindow:
    """A window of the frame at display size, in display pixels."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class SocialPlan:
    """What the social cut's pass does to the frames."""

    frame: tuple[int, int]
    """The source's display size, which the crop is taken from."""
    crop: CropWindow
    width: int
    height: int
    """The output size."""
    rendition: Rendition
    """Its frame rate and bit rates (the ladder's rule for a frame of this size)."""
    rate: Fraction | None
    """The constant rate to convert to first, or None to keep the source's frames."""


def even_floor(value: float) -> int:
    return max(2, int(value) - int(value) % 2)


def crop_window(frame_width: int, frame_height: int, crop_x: int | None) -> CropWindow:
    """The tallest 9:16 window of a ``frame_width`` x ``frame_height`` frame (even sides), at
    ``crop_x`` or centred; ``social.invalid`` when it would leave the frame."""
    if frame_width * ASPECT.denominator >= frame_height * ASPECT.numerator:
        height = even_floor(frame_height)
        width = nearest_even(float(height * ASPECT), frame_width)
    else:  # narrower than 9:16: the full width, as tall as 9:16 makes it
        width = even_floor(frame_width)
        height = nearest_even(float(width / ASPECT), frame_height)
    room = frame_width - width
    if crop_x is None:
        x = room // 2
    elif 0 <= crop_x <= room:
        x = crop_x
    else:
        allowed = "0" if room == 0 else f"0 to {room}"
        raise RecastError(
            ErrorCode.SOCIAL_INVALID,
            f"The social cut's crop_x {crop_x} puts its {width}-pixel-wide window outside the "
            f"{frame_width}x{frame_height} frame: give {allowed}, or null to centre it.",
        )
    return CropWindow(x=x, y=(frame_height - height) // 2, width=width, height=height)


def output_size(frame_width: int, frame_height: int) -> tuple[int, int]:
    """1080x1920, or the 9:16 size whose width is the source's short side when that is less
    (even sides)."""
    width = even_floor(min(TARGET_WIDTH, frame_width, frame_height))
    return width, nearest_even(float(width / ASPECT), TARGET_HEIGHT)


def make_plan(media: MediaInfo, settings: MediaSettings, crop_x: int | None) -> SocialPlan:
    """The crop, size, frame rate and bit rate of the social cut of ``media`` (with video)."""
    video = media.video
    if video is None:
        raise RecastError(ErrorCode.INTERNAL, "A social cut was planned for media without video.")
    frame = video.display_size
    crop = crop_window(*frame, crop_x)
    width, height = output_size(*frame)
    source_rate = Fraction(video.frame_rate)
    rendition = choose_ladder(
        width,
        height,
        source_rate,
        settings.ladder,
        variable_frame_rate=video.variable_frame_rate,
        base_frame_rate=Fraction(video.base_frame_rate),
        max_frame_rate=settings.max_frame_rate,
    )[0]
    scale = width * height / (rendition.width * rendition.height)
    rendition = rendition.model_copy(
        update={
            "name": "social",
            "width": width,
            "height": height,
            "bitrate_kbps": max(1, round(rendition.bitrate_kbps * scale)),
            "peak_kbps": max(1, round(rendition.peak_kbps * scale)),
        }
    )
    target = Fraction(rendition.frame_rate)
    rate = target if video.variable_frame_rate or target != source_rate else None
    return SocialPlan(
        frame=frame, crop=crop, width=width, height=height, rendition=rendition, rate=rate
    )


# -- captions -------------------------------------------------------------------------------

_VTT_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<(?:\d+:)?\d\d:\d\d\.\d{3}>")


def cue_text(line: str) -> str:
    """A WebVTT cue line as plain text: tags gone, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(_VTT_TAG.sub("", line)).split())


def ass_text(text: str) -> str:
    """Plain text as ASS dialogue text that shows as written: a backslash cannot start a code
    (a word joiner follows it) and braces are escaped, so no override block can be formed."""
    return text.replace("\\", "\\\u2060").replace("{", "\\{").replace("}", "\\}")


def _ass_time(seconds: float) -> str:
    centis = max(0, round(seconds * 100))
    hours, rest = divmod(centis, 360_000)
    minutes, rest = divmod(rest, 6000)
    secs, centis = divmod(rest, 100)
    return f"{hours}:{minutes:02d}:{secs:02d}.{centis:02d}"


def caption_script(cues: Sequence[SourceCue], width: int, height: int) -> str:
    """An ASS script showing ``cues`` on a ``width`` x ``height`` frame."""
    size = max(8, round(height * CAPTION_SIZE))
    box = max(1, round(size * 0.25))
    sides = round(width * CAPTION_SIDES)
    bottom = round(height * CAPTION_BOTTOM)
    lines = [
        "[Script Info]",
        "ScriptType: v4.00+",
        f"PlayResX: {width}",
        f"PlayResY: {height}",
        "WrapStyle: 0",
        "ScaledBorderAndShadow: yes",
        "YCbCr Matrix: TV.709",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
        "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
        "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding",
        f"Style: Caption,{CAPTION_FONT},{size},&H00FFFFFF,&H00FFFFFF,&H33000000,&H33000000,"
        f"-1,0,0,0,100,100,0,0,3,{box},0,2,{sides},{sides},{bottom},1",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    for cue in cues:
        text = [cue_text(line) for line in cue.lines]
        shown = "\\N".join(ass_text(line) for line in text if line)
        if not shown or cue.end <= cue.start:
            continue
        start, end = _ass_time(cue.start), _ass_time(max(cue.end, cue.start + 0.01))
        lines.append(f"Dialogue: 0,{start},{end},Caption,,0,0,0,,{shown}")
    return "\n".join(lines) + "\n"


# -- the pass -------------------------------------------------------------------------------


def video_filters(media: MediaInfo, plan: SocialPlan, captions: Path | None) -> list[Filter]:
    """Source frames made standard, brought to display size, cropped, scaled, captioned."""
    video = media.video
    assert video is not None
    chain = source_filters(
        interlaced=video.interlaced,
        hdr_transfer=video.color_transfer if video.hdr else None,
        rate=plan.rate,
    )
    if video.sample_aspect != 1:
        chain += [Filter("scale", plan.frame), Filter("setsar", (1,))]
    crop = plan.crop
    chain.append(
        Filter("crop", options={"w": crop.width, "h": crop.height, "x": crop.x, "y": crop.y})
    )
    if (crop.width, crop.height) != (plan.width, plan.height):
        chain.append(Filter("scale", (plan.width, plan.height), {"flags": "lanczos"}))
    chain.append(Filter("setsar", (1,)))
    if captions is not None:
        chain.append(Filter("ass", options={"filename": str(captions)}))
    return chain


def encode_options(plan: SocialPlan, settings: MediaSettings, audio: bool) -> dict[str, Any]:
    interval = settings.keyframe_interval_s
    rendition = plan.rendition
    options: dict[str, Any] = {
        "c:v": "libx264",
        "preset": settings.preset,
        "profile:v": "high",
        "pix_fmt": "yuv420p",
        "b:v": f"{rendition.bitrate_kbps}k",
        "maxrate:v": f"{rendition.peak_kbps}k",
        "bufsize:v": f"{rendition.bufsize_kbps}k",
        "g:v": math.ceil(rendition.fps * interval) + 1,
        "force_key_frames:v": f"expr:gte(t,n_forced*{interval:g})",
        "sc_threshold": 0,
        "map_metadata": -1,
        "map_chapters": -1,
        "movflags": "+faststart",
    }
    if audio:
        options |= {"c:a": "aac", "b:a": f"{settings.audio_bitrate_kbps}k", "ac": 2}
    return options


def render_args(
    source: Path,
    media: MediaInfo,
    plan: SocialPlan,
    target: Path,
    settings: MediaSettings,
    *,
    loudness: Loudness | None,
    captions: Path | None,
) -> list[str]:
    """The one ffmpeg pass writing the social cut of ``source`` to ``target`` (MP4), with the
    ASS script ``captions`` burned in when given."""
    video = media.video
    assert video is not None
    audio = media.audio is not None
    graph = Graph(
        source=str(source),
        input_policy=ffmpeg_tools.source_input(settings.max_pixels),
        video_stream=str(video.index),
        audio_stream=str(media.audio.index) if media.audio is not None else "a:0",
        video=video_filters(media, plan, captions),
        audio=audio_filters(settings, loudness) if audio else (),
        outputs=[
            Output(
                str(target),
                encode_options(plan, settings, audio),
                video=0,
                audio=0 if audio else None,
            )
        ],
    )
    return ffmpeg_tools.graph_args(graph)
