"""Ladder math at full sizes: which rungs, what sizes, rates and bit rates; the media settings.

The transcode tests prove the same rules on real (small) files; these pin the arithmetic for
the sizes that matter in production, where encoding in a test would be too slow.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.mediainfo import VideoInfo
from pipeline.core.settings import LadderRung, MediaSettings, load_settings
from pipeline.media.ladder import (
    choose_ladder,
    nearest_even,
    output_frame_rate,
    progressive_rendition,
    scaled_size,
)

LADDER = MediaSettings().ladder
NTSC = Fraction(30000, 1001)


def sizes(width: int, height: int, rate: Fraction = NTSC) -> list[tuple[str, int, int]]:
    return [(r.name, r.width, r.height) for r in choose_ladder(width, height, rate, LADDER)]


def test_default_ladder_follows_apple_rows() -> None:
    rungs = {r.height: (r.bitrate_kbps, r.peak_kbps) for r in LADDER}
    assert rungs == {1080: (6000, 9000), 720: (3000, 4500), 540: (2000, 3000), 360: (730, 1100)}
    for bitrate, peak in rungs.values():
        assert bitrate <= peak <= 2 * bitrate, "VOD peak within 200% of the average"


def test_16_9_gets_every_rung() -> None:
    assert sizes(1920, 1080) == [
        ("1080p", 1920, 1080),
        ("720p", 1280, 720),
        ("540p", 960, 540),
        ("360p", 640, 360),
    ]


def test_vertical_video_gets_a_vertical_ladder() -> None:
    assert sizes(1080, 1920) == [
        ("1080p", 1080, 1920),
        ("720p", 720, 1280),
        ("540p", 540, 960),
        ("360p", 360, 640),
    ]


def test_odd_sized_source_gets_even_sizes_and_is_never_upscaled() -> None:
    assert sizes(1437, 811) == [("720p", 1276, 720), ("540p", 956, 540), ("360p", 638, 360)]


def test_4k_is_capped_at_the_top_rung_and_small_sources_keep_their_size() -> None:
    assert sizes(3840, 2160)[0] == ("1080p", 1920, 1080)
    assert sizes(320, 180) == [("180p", 320, 180)]
    assert sizes(359, 203) == [("202p", 358, 202)], "odd short side rounds down, never up"
    for name, width, height in sizes(1280, 720) + sizes(640, 480):
        assert width <= 1280 and height <= 720 and width % 2 == 0 and height % 2 == 0, name


def test_non_square_pixels_and_rotation_decide_by_display_size() -> None:
    dvd = VideoInfo(index=0, codec="mpeg2video", width=720, height=480, sar="8:9")
    assert dvd.display_size == (640, 480) and dvd.display_aspect == "4:3"
    assert sizes(*dvd.display_size) == [("360p", 480, 360)]
    anamorphic = VideoInfo(index=0, codec="h264", width=1440, height=1080, sar="4:3")
    assert sizes(*anamorphic.display_size)[0] == ("1080p", 1920, 1080)
    phone = VideoInfo(index=0, codec="h264", width=1920, height=1080, rotation=90)
    assert phone.display_size == (1080, 1920)
    assert sizes(*phone.display_size)[0] == ("1080p", 1080, 1920)
    upside_down = VideoInfo(index=0, codec="h264", width=1920, height=1080, rotation=180)
    assert upside_down.display_size == (1920, 1080)


def test_bit_rates_follow_the_pixel_count() -> None:
    wide = {r.name: r for r in choose_ladder(1920, 1080, NTSC, LADDER)}
    four_three = {r.name: r for r in choose_ladder(1440, 1080, NTSC, LADDER)}
    assert wide["720p"].bitrate_kbps == 3000 and wide["720p"].peak_kbps == 4500
    assert four_three["720p"].bitrate_kbps == 2250, "960x720 has 3/4 of the pixels"
    assert wide["720p"].bufsize_kbps == 9000


@pytest.mark.parametrize(
    ("rate", "variable", "expected"),
    [
        (Fraction(30000, 1001), False, Fraction(30000, 1001)),
        (Fraction(60), False, Fraction(60)),
        (Fraction(120000, 1001), False, Fraction(60000, 1001)),
        (Fraction(100), False, Fraction(50)),
        (Fraction(240), False, Fraction(60)),
        (Fraction(2987, 100), True, Fraction(30000, 1001)),
        (Fraction(2412, 100), True, Fraction(24)),
        (Fraction(1750, 100), True, Fraction(18)),
    ],
)
def test_frame_rate_is_capped_and_made_constant(
    rate: Fraction, variable: bool, expected: Fraction
) -> None:
    assert output_frame_rate(rate, variable, 60.0) == expected
    ladder = choose_ladder(1280, 720, rate, LADDER, variable_frame_rate=variable)
    assert {r.frame_rate for r in ladder} == {f"{expected.numerator}/{expected.denominator}"}


@pytest.mark.parametrize(
    ("average", "base", "expected"),
    [
        (Fraction(195, 10), Fraction(25), Fraction(25)),
        (Fraction(2950, 100), Fraction(30), Fraction(30)),
        (Fraction(2950, 100), Fraction(90000), Fraction(30000, 1001)),
        (Fraction(45), Fraction(120), Fraction(60)),
    ],
)
def test_variable_rate_uses_the_base_rate_when_plausible(
    average: Fraction, base: Fraction, expected: Fraction
) -> None:
    ladder = choose_ladder(
        1280, 720, average, LADDER, variable_frame_rate=True, base_frame_rate=base
    )
    assert {r.frame_rate for r in ladder} == {f"{expected.numerator}/{expected.denominator}"}


def test_even_rounding() -> None:
    assert nearest_even(1275.76, 1437) == 1276
    assert nearest_even(957.0, 1437) == 958, "halves round up"
    assert nearest_even(359.5, 359) == 358, "never above the source"
    assert scaled_size(359, 203, 180) == (318, 180)
    assert scaled_size(203, 359, 180) == (180, 318)


def test_progressive_mp4_rung() -> None:
    full = choose_ladder(1920, 1080, NTSC, LADDER)
    assert progressive_rendition(full, 720).name == "720p"
    assert progressive_rendition(full, 600).name == "540p", "the highest rung below"
    small = choose_ladder(320, 180, NTSC, LADDER)
    assert progressive_rendition(small, 720).name == "180p"
    assert progressive_rendition(full, 200).name == "360p", "nothing below: the smallest"


def test_media_settings_validation() -> None:
    with pytest.raises(ValueError, match="whole multiple"):
        MediaSettings(segment_s=5, keyframe_interval_s=2)
    with pytest.raises(ValueError, match="peak_kbps"):
        LadderRung(height=720, bitrate_kbps=3000, peak_kbps=2000)
    with pytest.raises(ValueError, match="at least one rung"):
        MediaSettings(ladder=[])
    with pytest.raises(ConfigError, match="media"):
        load_settings(media={"segment_s": 0})


def test_timeouts_scale_with_duration() -> None:
    media = MediaSettings()
    assert media.timeout_for(600) - media.timeout_for(60) == pytest.approx(540 * 10)
    assert media.timeout_for(None) == media.timeout_base_s
