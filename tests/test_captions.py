"""Source captions and cue building, without the recogniser: WebVTT/SRT parsing, bad files,
YouTube-style rolling automatic captions, the cue rules (line length, line count, duration)
on any word stream, and the strictness of every VTT the writers emit."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import webvtt
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core import languages
from pipeline.core.timedtext import Word
from pipeline.media.captions import (
    CaptionError,
    caption_words,
    parse_caption_file,
    parse_caption_text,
)
from pipeline.media.subtitles import CueRules, build_cues, to_srt, to_vtt, wrap_words
from pipeline.publish.cardbuilder import choose_excerpt
from tests.support.captions import rolling_vtt
from tests.support.webvtt_strict import WebVTTError, check_rules, check_webvtt

RULES = CueRules()

# What yt-dlp downloads for a YouTube video's automatic captions: every cue repeats the line
# before it, a 10 ms cue re-shows the finished line, and the new line carries word times.
DATA = Path(__file__).parent / "data" / "captions"
ROLLING = (DATA / "youtube-rolling.en.vtt").read_text(encoding="utf-8")
ROLLING_WORDS = (
    "good morning and welcome to the conference today we will talk about energy & security"
)

HUMAN_VTT = """WEBVTT

NOTE written by a person

STYLE
::cue { color: yellow }

intro
00:00:01.000 --> 00:00:03.500 line:90%
<v Anna>Welcome to <i>Munich</i>.

00:03.600 --> 00:06.000
- Is it cold?
- Very cold &amp; windy.
"""

HUMAN_SRT = """1
00:00:01,000 --> 00:00:03,500
<i>Welcome to Munich.</i>

2
00:00:03,600 --> 00:00:06,000
{\\an8}It is cold today.
"""


def vtt_cues(cues: list) -> list:  # type: ignore[type-arg]
    """Write, then read back strictly (and with webvtt-py), checking the rules."""
    text = to_vtt(cues)
    strict = check_webvtt(text)
    check_rules(strict)
    assert len(webvtt.from_string(text).captions) == len(strict)
    return strict


# -- parsing -----------------------------------------------------------------------------------


def test_human_webvtt_keeps_its_cues_and_lines() -> None:
    parsed = parse_caption_text(HUMAN_VTT, ".vtt")
    assert parsed.format == "vtt" and not parsed.rolling
    cues = vtt_cues(build_cues(caption_words(parsed), RULES))
    assert [(c.start, c.end) for c in cues] == [(1.0, 3.5), (3.6, 6.0)]
    assert [c.text for c in cues] == ["Welcome to Munich.", "- Is it cold? - Very cold & windy."]
    assert cues[1].lines == ("- Is it cold?", "- Very cold &amp; windy."), "source line breaks"


def test_srt_is_parsed_and_markup_dropped(tmp_path: Path) -> None:
    path = tmp_path / "en.srt"
    path.write_bytes(HUMAN_SRT.replace("\n", "\r\n").encode("utf-8-sig"))
    parsed = parse_caption_file(path)
    assert parsed.format == "srt"
    cues = vtt_cues(build_cues(caption_words(parsed), RULES))
    assert [c.text for c in cues] == ["Welcome to Munich.", "It is cold today."]
    srt = to_srt(build_cues(caption_words(parsed), RULES))
    assert srt.startswith("1\n00:00:01,000 --> 00:00:03,500\nWelcome to Munich.\n\n2\n")
    assert len(webvtt.from_srt(_write(tmp_path / "out.srt", srt)).captions) == 2


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("no-header.vtt", "00:00:01.000 --> 00:00:02.000\nhello\n"),
        ("bad-time.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:0x.000\nhello\n"),
        ("reversed.srt", "1\n00:00:05,000 --> 00:00:02,000\nhello\n"),
        ("minutes.vtt", "WEBVTT\n\n00:61:00.000 --> 00:62:00.000\nhello\n"),
        ("empty.vtt", "WEBVTT\n\n"),
        ("only-blank-cues.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<c> </c>\n"),
        ("stray.vtt", "WEBVTT\n\nhello there\nnot a cue\n"),
        ("captions.ttml", '<tt xmlns="http://www.w3.org/ns/ttml"><body/></tt>'),
        ("binary.srt", "\x00\x01\x02 --> \x00"),
        ("html.srt", "<html><body>Not found</body></html>"),
    ],
)
def test_bad_caption_files_raise(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CaptionError):
        parse_caption_file(path)


# -- rolling automatic captions ----------------------------------------------------------------


def test_youtube_rolling_captions_come_out_without_duplicates() -> None:
    parsed = parse_caption_text(ROLLING, ".vtt")
    assert parsed.rolling
    words = caption_words(parsed)
    spoken = [w for w in words if not w.noise]
    assert " ".join(w.text.strip() for w in spoken) == ROLLING_WORDS, "each word exactly once"
    # the inline tags give the word times
    starts = {w.text.strip(): w.start for w in spoken}
    assert starts["good"] == 1.01 and starts["morning"] == 1.28 and starts["conference"] == 4.0
    cues = vtt_cues(build_cues(words, RULES))
    lines = [line for cue in cues for line in cue.lines]
    assert len(lines) == len(set(lines)), f"a line is repeated: {lines}"
    assert [c.text for c in cues if c.text.startswith("[")] == ["[Music]", "[Applause]"]
    speech = " ".join(c.text for c in cues if not c.text.startswith("["))
    assert speech == ROLLING_WORDS, "no tag, no repeated line, no noise inside speech cues"
    assert all("<" not in line or "&lt;" in line for line in lines)


def test_rolling_captions_without_tags_are_deduplicated() -> None:
    srt = "\n".join(
        f"{i + 1}\n00:00:{2 * i:02d},000 --> 00:00:{2 * i + 2:02d},000\n{a}\n{b}\n"
        for i, (a, b) in enumerate(
            [
                ("so the first thing", "we should discuss"),
                ("we should discuss", "is the weather in"),
                ("is the weather in", "Munich this winter"),
                ("Munich this winter", "and what it costs"),
            ]
        )
    )
    parsed = parse_caption_text(srt, ".srt")
    assert parsed.rolling
    text = " ".join(w.text.strip() for w in caption_words(parsed))
    assert text == (
        "so the first thing we should discuss is the weather in Munich this winter "
        "and what it costs"
    )


# -- cue rules -----------------------------------------------------------------------------------


def timed(text: str, start: float = 0.0, step: float = 0.3) -> list[Word]:
    return [
        Word(text=" " + token, start=start + i * step, end=start + (i + 1) * step - 0.05)
        for i, token in enumerate(text.split())
    ]


def test_cues_end_at_sentences_then_clauses() -> None:
    text = (
        "Europe relied on cheap gas from one supplier for many years. That dependence turned "
        "out to be a strategic weakness, and when supplies were cut, prices rose sharply, and "
        "governments everywhere had to act quickly and decisively."
    )
    cues = vtt_cues(build_cues(timed(text), RULES))
    texts = [c.text for c in cues]
    assert texts[0] == "Europe relied on cheap gas from one supplier for many years."
    assert all(t.endswith((".", ",")) for t in texts[:-1]), texts
    assert " ".join(texts) == text


def test_a_pause_ends_a_cue_and_short_words_last_a_second() -> None:
    words = [Word(" Yes.", 0.0, 0.3), Word(" Indeed,", 3.0, 3.4), Word(" quite.", 3.4, 3.7)]
    cues = vtt_cues(build_cues(words, RULES))
    assert [c.text for c in cues] == ["Yes.", "Indeed, quite."]
    assert cues[0].end == pytest.approx(1.0)


def test_lines_balance_and_break_after_punctuation() -> None:
    lines = wrap_words(timed("When supplies were cut, prices rose sharply in every city"), 42, 2)
    assert lines == ["When supplies were cut,", "prices rose sharply in every city"]
    assert wrap_words(timed("x" * 50), 42, 2) is None


word_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöü", min_size=1, max_size=18)


@st.composite
def word_streams(draw: st.DrawFn) -> list[Word]:
    words: list[Word] = []
    at = draw(st.floats(0, 5))
    for _ in range(draw(st.integers(1, 80))):
        at += draw(st.sampled_from([0.0, 0.0, 0.05, 0.2, 0.8, 2.5]))
        length = draw(st.floats(0.05, 9.0)) if draw(st.integers(0, 30)) == 0 else 0.3
        token = draw(word_text) + draw(st.sampled_from(["", "", "", ",", ".", "?"]))
        if draw(st.integers(0, 25)) == 0:
            token = draw(st.sampled_from(["[Music]", "(applause)", "[Laughter]"]))
        words.append(Word(" " + token, at, at + length, noise=token[0] in "[("))
        at += length
    return words


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(word_streams(), st.sampled_from([CueRules(), CueRules(max_line_chars=32, max_lines=1)]))
def test_every_word_stream_obeys_the_cue_rules(words: list[Word], rules: CueRules) -> None:
    cues = build_cues(words, rules)
    strict = check_webvtt(to_vtt(cues))
    check_rules(
        strict,
        max_line_chars=rules.max_line_chars,
        max_lines=rules.max_lines,
        min_s=rules.min_s,
        max_s=rules.max_s,
    )
    spoken = [w.text.strip() for w in words if not w.noise]
    assert [w.text.strip() for c in cues for w in c.words if not w.noise] == spoken


def test_vtt_escapes_markup_and_arrows() -> None:
    words = timed("Fish & chips <b>bold</b> --> arrows")
    strict = vtt_cues(build_cues(words, RULES))
    assert strict[0].text == "Fish & chips <b>bold</b> --> arrows"
    with pytest.raises(WebVTTError):
        check_webvtt("WEBVTT\n\n00:00:01.000 --> 00:00:00.500\nbackwards\n")
    with pytest.raises(WebVTTError):
        check_webvtt("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nAT&T\n")


# -- languages and the excerpt -------------------------------------------------------------------


def test_language_tags() -> None:
    assert languages.normalise("en-orig") == "en"
    assert languages.normalise("EN_us") == "en-US"
    assert languages.normalise("jw") == "jv"
    assert languages.normalise("not a tag") is None
    assert languages.label("de") == "German"
    assert languages.label("en-GB") == "English (GB)"


def test_excerpt_from_description_with_sentences_else_transcript() -> None:
    prose = "The panel argued about energy security in Europe. It was a lively debate."
    opening = "Good morning and welcome to the conference. " * 10
    assert choose_excerpt(prose, opening, 200) == prose
    bare = "#MSC2026 https://example.org/live"
    excerpt = choose_excerpt(bare, opening, 120)
    assert excerpt.startswith("Good morning and welcome") and excerpt.endswith(" [...]")
    assert len(excerpt) <= 120 + len(" [...]")
    assert choose_excerpt(bare, "", 120) == bare


# -- caps and cost -----------------------------------------------------------------------------

HOSTILE_LINES = {
    "unclosed tags": "<a",
    "unclosed ASS overrides": "{\\",
    "inline times with long digits": "<1" + "1" * 50,
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("unit", HOSTILE_LINES.values(), ids=HOSTILE_LINES.keys())
def test_hostile_caption_lines_parse_in_linear_time(unit: str) -> None:
    # Half a megabyte on one line: a pattern that rescans the rest of the line from every "<"
    # or "{" needs tens of minutes for this (32 KB took 1.5 s before); a linear one, well under
    # a second (bench/bench_captions.py has the figures). The timeout only catches a relapse.
    line = unit * (512 * 1024 // len(unit))
    words = caption_words(parse_caption_text(f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{line}\n"))
    # Nothing in it is a complete tag, override or timestamp: the text survives as it is.
    assert [w.text.strip() for w in words] == [line]


def test_a_256_kb_rolling_track_parses_whole() -> None:
    text = rolling_vtt(256 * 1024)
    parsed = parse_caption_text(text, "vtt")
    words = caption_words(parsed)
    assert parsed.rolling and len(text) >= 256 * 1024
    spoken = [w.text.strip() for w in words if not w.noise]
    # Six new words per pair of cues, none repeated by the rolling display.
    assert len(spoken) == 6 * (len(parsed.cues) // 2)
    assert spoken[:6] == ["good", "morning", "and", "welcome", "to", "the"]
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))


def test_a_caption_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.en.vtt"
    path.write_text(rolling_vtt(64 * 1024), encoding="utf-8")
    assert parse_caption_file(path, max_bytes=128 * 1024).cues
    with pytest.raises(CaptionError, match="over the caption limit"):
        parse_caption_file(path, max_bytes=32 * 1024)
