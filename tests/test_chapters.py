"""Chapters: the source's held to YouTube's rules (first at 0:00, at least 3, each at least
10 s, titles of at most 50 characters), else found in the transcript by lexical cohesion; the
WebVTT chapters track; the card's chapters and their JSON-LD Clips.

The rules and the segmentation are tested on hand-written texts with known sentence times.
The acceptance test runs every stage for real on a 3-minute talk on three subjects spoken by
espeak-ng sentence by sentence (so the times the subject changes are known), served with
human captions made from those times (no speech recognition: the transcript stage takes the
captions); the source-chapters test serves the same recording from a page whose JSON-LD
gives chapters, which yt-dlp reads as any site's.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import wave
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import webvtt

from pipeline.core import readers
from pipeline.core.card import Card, CardStatus
from pipeline.core.dag import Dag
from pipeline.core.job import JobSpec, JobStatus
from pipeline.core.readers import INFO_FILE, read_source_info
from pipeline.core.source import Chapter
from pipeline.core.stage import AssetRole, OutputAsset, StageContext, StageResult
from pipeline.core.timedtext import Cue, TranscriptSegment, TranscriptWord
from pipeline.core.workspace import Workspace
from pipeline.engine.local import LocalExecutor
from pipeline.engine.runner import run_stage
from pipeline.media.chapters import (
    MAX_TITLE_CHARS,
    ChapterSpan,
    SegmentationRules,
    Sentence,
    chapters_vtt,
    find_chapters,
    normalise_chapters,
    stem,
    transcript_sentences,
    trim_title,
)
from pipeline.media.subtitles import to_vtt
from pipeline.publish.jsonld import start_second
from pipeline.publish.keys import card_key
from pipeline.publish.publisher import CardPublisher
from pipeline.stages import default_dag
from pipeline.stages.chapters import STAGE as CHAPTERS_STAGE
from tests.conftest import make_settings
from tests.support.httpserver import MediaServer
from tests.support.media import run_ffmpeg
from tests.support.webvtt_strict import check_webvtt
from tests.support.workers import tiny_sections

ENERGY = [
    "Let me begin with energy security, which has become a question of national survival.",
    "Three years ago Europe imported almost half of its natural gas from a single supplier.",
    "When the pipelines went quiet, gas prices rose tenfold within a few months.",
    "Governments filled their storage sites and built floating terminals for liquefied gas.",
    "The new terminals on the North Sea coast were finished in less than a year.",
    "Energy security also means a grid that can carry power from wind farms to factories.",
    "Our transmission lines are old, and the queue for new connections is very long.",
    "Solar panels and batteries help, but most of them are still manufactured abroad.",
    "A secure energy system needs diverse suppliers, full storage and a modern grid.",
    "Nuclear power remains controversial, yet several countries are extending their reactors.",
    "Hydrogen may heat our steel plants one day, but the pipelines for it do not exist yet.",
    "In short, energy security is now built into every budget and every power plant decision.",
]
CYBER = [
    "My second subject is cyber defence, where the front line runs through every network.",
    "Last winter hackers shut down the computer systems of a regional hospital for two weeks.",
    "Ransomware gangs encrypt data and demand payment in cryptocurrency.",
    "Some of these attackers work for foreign intelligence services.",
    "A cyber attack on a water utility can be launched from a laptop on another continent.",
    "Our armed forces have created a cyber command to defend military networks.",
    "But most critical infrastructure is run by private companies with small security teams.",
    "Software updates, strong passwords and tested backups stop most of these attacks.",
    "Governments must share warnings about vulnerabilities with operators within hours.",
    "Artificial intelligence now helps both the hackers and the defenders of networks.",
    "Every exercise we run shows that people, not machines, are the weakest link.",
    "Cyber defence is a team sport between agencies, companies and citizens.",
]
TRADE = [
    "Finally, let me turn to transatlantic trade, the largest commercial relationship in the "
    "world.",
    "Every day goods worth billions of dollars cross the Atlantic between Europe and America.",
    "Tariffs on steel and aluminium have strained that relationship in recent years.",
    "Farmers in Iowa and winemakers in Bordeaux both paid the price of retaliation.",
    "Exporters need predictable rules, open markets and fair competition.",
    "The subsidies for electric cars on both sides of the ocean worry many manufacturers.",
    "A common approach to export controls on advanced chips would help both economies.",
    "Trade agreements take years to negotiate and seconds to destroy with a tweet.",
    "Small firms suffer most when customs procedures and product standards diverge.",
    "Mutual recognition of standards could save exporters billions in duplicate testing.",
    "The ports of Rotterdam and Baltimore depend on this commerce for thousands of jobs.",
    "Transatlantic trade remains the backbone of our shared prosperity, and we must protect it.",
]
TALK = [*ENERGY, *CYBER, *TRADE]

GERMAN_TALK = [
    "Ich beginne mit der Energieversorgung, die für unsere Industrie entscheidend ist.",
    "Vor drei Jahren kam fast die Hälfte unseres Erdgases aus Russland.",
    "Als die Pipelines stillstanden, stiegen die Gaspreise um das Zehnfache.",
    "Die Regierung hat die Gasspeicher gefüllt und Terminals für Flüssiggas gebaut.",
    "Die Energieversorgung braucht außerdem neue Stromleitungen von den Windparks im Norden.",
    "Solaranlagen und Batteriespeicher helfen, aber sie werden meist im Ausland hergestellt.",
    "Eine sichere Energieversorgung braucht viele Lieferanten, volle Speicher und Netze.",
    "Wasserstoff könnte eines Tages unsere Stahlwerke antreiben, doch die Leitungen fehlen.",
    "Kurz gesagt, die Energieversorgung gehört heute in jede Haushaltsdebatte.",
    # the second subject starts here (9)
    "Mein zweites Thema ist die Cyberabwehr, denn die Front verläuft durch jedes Netzwerk.",
    "Im letzten Winter legten Hacker die Computer eines Krankenhauses zwei Wochen lahm.",
    "Erpressersoftware verschlüsselt Daten und verlangt Lösegeld in Kryptowährung.",
    "Manche Angreifer arbeiten für ausländische Geheimdienste.",
    "Die Bundeswehr hat ein eigenes Kommando für die Cyberabwehr aufgebaut.",
    "Doch die kritische Infrastruktur wird meist von privaten Unternehmen betrieben.",
    "Updates, starke Passwörter und geprüfte Sicherungskopien verhindern die meisten Angriffe.",
    "Behörden müssen Warnungen vor Sicherheitslücken innerhalb von Stunden weitergeben.",
    "Die Cyberabwehr ist eine Gemeinschaftsaufgabe von Behörden, Unternehmen und Bürgern.",
    # the third subject starts here (18)
    "Zum Schluss spreche ich über den transatlantischen Handel.",
    "Jeden Tag überqueren Waren im Wert von Milliarden den Atlantik.",
    "Zölle auf Stahl und Aluminium haben die Handelsbeziehungen belastet.",
    "Landwirte in Iowa und Winzer in Bordeaux zahlten den Preis der Vergeltung.",
    "Exporteure brauchen verlässliche Regeln, offene Märkte und fairen Wettbewerb.",
    "Handelsabkommen brauchen Jahre und sind mit einem Tweet zerstört.",
    "Kleine Firmen leiden am meisten, wenn Zollverfahren und Normen auseinanderlaufen.",
    "Die gegenseitige Anerkennung von Normen könnte den Exporteuren Milliarden sparen.",
    "Der transatlantische Handel bleibt das Rückgrat unseres gemeinsamen Wohlstands.",
]

TOLERANCE_S = 15.0


def timed(sentences: list[str], words_per_s: float = 2.6, pause: float = 0.4) -> list[Sentence]:
    """Sentences as a speaker at ``words_per_s`` says them, with a pause after each."""
    found: list[Sentence] = []
    at = 0.0
    for text in sentences:
        length = len(text.split()) / words_per_s
        found.append(Sentence(text, round(at, 3), round(at + length, 3)))
        at += length + pause
    return found


def end_of(sentences: list[Sentence]) -> float:
    return sentences[-1].end + 0.4


# -- the source's chapters ----------------------------------------------------------------------


def spans(chapters: list[ChapterSpan]) -> list[tuple[str, float, float]]:
    return [(c.title, c.start, c.end) for c in chapters]


def test_source_chapters_start_at_zero_and_end_at_the_next() -> None:
    chapters = [
        Chapter(title="Welcome", start=4.0),
        Chapter(title="Energy", start=60.0),
        Chapter(title="Defence", start=120.5),
    ]
    assert spans(normalise_chapters(chapters, 200.0)) == [
        ("Welcome", 0.0, 60.0),
        ("Energy", 60.0, 120.5),
        ("Defence", 120.5, 200.0),
    ]


def test_short_source_chapters_merge_into_their_neighbour_keeping_the_longer_title() -> None:
    chapters = [
        Chapter(title="Cold open", start=0.0),  # 6 s: into the next
        Chapter(title="Opening remarks", start=6.0),
        Chapter(title="Energy", start=50.0),
        Chapter(title="A quick aside", start=95.0),  # 4 s: into the previous
        Chapter(title="Defence", start=99.0),
        Chapter(title="Q&A", start=150.0),
        Chapter(title="Thanks", start=176.0),  # 4 s to the end: into the previous
    ]
    assert spans(normalise_chapters(chapters, 180.0)) == [
        ("Opening remarks", 0.0, 50.0),
        ("Energy", 50.0, 99.0),
        ("Defence", 99.0, 150.0),
        ("Q&A", 150.0, 180.0),
    ]


def test_fewer_than_three_source_chapters_are_none() -> None:
    two = [Chapter(title="Opening", start=0), Chapter(title="Q&A", start=30)]
    assert normalise_chapters(two, 60.0) == []
    # three, but one lasts 5 s: merged, two are left
    three = [*two, Chapter(title="Thanks", start=55)]
    assert normalise_chapters(three, 60.0) == []
    # past the end of the recording, or at the same time, they do not count
    late = [*two, Chapter(title="After", start=61), Chapter(title="Again", start=30)]
    assert normalise_chapters(late, 60.0) == []


def test_source_chapter_titles_are_trimmed_at_a_word_boundary() -> None:
    long_title = (
        "Panel: Europe's defence industry after the war, budgets, procurement and the summit"
    )
    chapters = [
        Chapter(title=long_title, start=0),
        Chapter(title="  Energy\n security  ", start=20),
        Chapter(title="", start=40),
    ]
    titles = [c.title for c in normalise_chapters(chapters, 60.0)]
    assert titles[0] == "Panel: Europe's defence industry after the war…"
    assert len(titles[0]) <= MAX_TITLE_CHARS
    assert titles[1:] == ["Energy security", "Chapter 3"]


def test_titles_never_pass_fifty_characters() -> None:
    assert trim_title("x" * 80) == "x" * 49 + "…"
    assert trim_title("short") == "short"
    for length in range(40, 120, 7):
        text = " ".join(["word"] * length)
        assert len(trim_title(text)) <= MAX_TITLE_CHARS
        assert trim_title(text).endswith("word…")


# -- sentences and terms ------------------------------------------------------------------------


def test_transcript_words_become_sentences_at_punctuation_pauses_and_length() -> None:
    def segment(index: int, words: list[tuple[str, float]]) -> TranscriptSegment:
        return TranscriptSegment(
            id=index,
            start=words[0][1],
            end=words[-1][1] + 0.3,
            text=" ".join(w for w, _ in words),
            words=[TranscriptWord(word=w, start=t, end=t + 0.3) for w, t in words],
        )

    punctuated = segment(0, [("Good", 0.0), ("morning.", 0.4), ("Energy", 0.9), ("first,", 1.3)])
    continued = segment(1, [("then", 1.7), ("defence!", 2.1)])
    unpunctuated = segment(2, [(f"word{i}", 10.0 + 0.4 * i) for i in range(45)])
    after_pause = segment(3, [("after", 40.0), ("a", 40.4), ("pause", 40.8)])
    sentences = transcript_sentences([punctuated, continued, unpunctuated, after_pause])
    assert [(s.text, s.start) for s in sentences[:2]] == [
        ("Good morning.", 0.0),
        ("Energy first, then defence!", 0.9),
    ]
    assert [len(s.text.split()) for s in sentences[2:4]] == [40, 5]
    assert (sentences[4].text, sentences[4].start) == ("after a pause", 40.0)
    assert sentences[4].end == pytest.approx(41.1)


def test_stems_join_inflections() -> None:
    assert {stem(w, "en") for w in ("attack", "attacks", "attacked", "attacking")} == {"attack"}
    assert stem("energies", "en") == stem("energy", "en")
    assert stem("Exporteuren", "de") == stem("Exporteure", "de")
    assert stem("gas", "en") == "gas"


# -- segmentation -------------------------------------------------------------------------------


def test_three_subjects_give_three_chapters_at_the_changes() -> None:
    sentences = timed(TALK)
    duration = end_of(sentences)
    chapters = find_chapters(sentences, duration, "en")
    assert [c.start for c in chapters] == [0.0, sentences[12].start, sentences[24].start]
    assert [c.end for c in chapters] == [sentences[12].start, sentences[24].start, duration]
    energy, cyber, trade = (c.title.lower() for c in chapters)
    assert "energy" in energy and "cyber" in cyber and "trade" in trade
    assert all(0 < len(c.title) <= MAX_TITLE_CHARS for c in chapters)
    assert all(c.title[0].isupper() for c in chapters)


def test_a_german_talk_is_cut_where_its_subject_changes() -> None:
    sentences = timed(GERMAN_TALK)
    chapters = find_chapters(sentences, end_of(sentences), "de")
    assert len(chapters) == 3
    changes = (sentences[9].start, sentences[18].start)
    for chapter, change in zip(chapters[1:], changes, strict=True):
        assert abs(chapter.start - change) <= TOLERANCE_S
    assert "Energieversorgung" in chapters[0].title
    assert "Cyberabwehr" in chapters[1].title
    assert " und und" not in " ".join(c.title for c in chapters), "German stop words are known"


def test_the_language_unknown_still_finds_the_changes() -> None:
    sentences = timed(TALK)
    chapters = find_chapters(sentences, end_of(sentences), None)
    assert [c.start for c in chapters] == [0.0, sentences[12].start, sentences[24].start]


def test_one_subject_throughout_gives_no_chapters() -> None:
    flat = [
        "Energy prices shape the budget of every household and every factory.",
        "When gas is expensive, electricity becomes expensive too.",
        "Households pay their energy bills every month and feel every change in prices.",
        "Factories need cheap electricity and reliable gas to stay competitive.",
        "The price of gas sets the price of electricity on most days.",
        "Cheaper energy for households and factories is the goal of the new budget.",
    ]
    sentences = timed(flat * 6)
    assert end_of(sentences) > 150
    assert find_chapters(sentences, end_of(sentences), "en") == []


def test_short_recordings_and_two_subjects_give_no_chapters() -> None:
    short = timed(ENERGY[:4] + CYBER[:4])
    assert end_of(short) < 60
    assert find_chapters(short, end_of(short), "en") == []
    two = timed(ENERGY[:6] + CYBER[:6])  # two subjects: YouTube wants three chapters
    assert end_of(two) > 60
    assert find_chapters(two, end_of(two), "en") == []


def test_four_subjects_in_four_minutes_give_four_chapters() -> None:
    sentences = timed([*ENERGY, *CYBER, *TRADE, *reversed(ENERGY)])
    chapters = find_chapters(sentences, end_of(sentences), "en")
    changes = [0.0, sentences[12].start, sentences[24].start, sentences[36].start]
    assert len(chapters) == 4
    for chapter, change in zip(chapters, changes, strict=True):
        assert abs(chapter.start - change) <= TOLERANCE_S


def test_how_many_chapters_a_recording_may_have() -> None:
    rules = SegmentationRules()
    assert [rules.most_chapters(s) for s in (90, 180, 262, 600, 3600)] == [3, 3, 4, 6, 24]
    assert SegmentationRules(seconds_per_chapter=600).most_chapters(3600) == 6
    assert [rules.shortest_chapter(s) for s in (90, 180, 3600)] == [10, 15, 75]


# -- the track ----------------------------------------------------------------------------------


def check_chapters_track(text: str, chapters: list[ChapterSpan] | None = None) -> None:
    """The WebVTT checker (webvtt-py reads it) and stricter rules: the header, strict syntax,
    cues in order that neither overlap nor leave a gap, one line each."""
    assert text.startswith("WEBVTT\n")
    captions = webvtt.from_string(text).captions
    cues = check_webvtt(text)
    assert len(captions) == len(cues) > 0
    assert cues[0].start == 0.0
    for before, after in itertools.pairwise(cues):
        assert before.end == after.start, "chapters follow each other without gap or overlap"
    assert all(len(cue.lines) == 1 and cue.text for cue in cues)
    if chapters is not None:
        assert [(c.text, c.start, c.end) for c in cues] == [
            (c.title, round(c.start, 3), round(c.end, 3)) for c in chapters
        ]


def test_the_chapters_track_is_strict_webvtt_with_escaped_titles() -> None:
    chapters = [
        ChapterSpan("Opening & welcome", 0.0, 61.5),
        ChapterSpan("Budgets <b>and</b> industry --> now", 61.5, 130.25),
        ChapterSpan("Q&A", 130.25, 3725.0),
    ]
    text = chapters_vtt(chapters)
    check_chapters_track(text, chapters)
    assert "01:02:05.000" in text


# -- the card, end to end -------------------------------------------------------------------------


@dataclass
class Talk:
    video: Path
    captions: str
    starts: list[float]
    duration: float


def synthesize_talk(directory: Path, sentences: list[str], pause: float = 0.4) -> Talk:
    """``sentences`` spoken one by one by espeak-ng, joined with ``pause`` of silence, under
    a 160x90 picture at 1 fps; human captions from the sentences' times."""
    directory.mkdir(parents=True, exist_ok=True)
    wavs = [directory / f"sentence-{i:02d}.wav" for i in range(len(sentences))]
    speakers = [
        subprocess.Popen(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(wav), text])
        for wav, text in zip(wavs, sentences, strict=True)
    ]
    assert all(speaker.wait(timeout=60) == 0 for speaker in speakers)
    frames: list[bytes] = []
    starts: list[float] = []
    cues: list[Cue] = []
    at = 0.0
    rate = 22050
    for wav, text in zip(wavs, sentences, strict=True):
        with wave.open(str(wav)) as speech:
            rate = speech.getframerate()
            length = speech.getnframes() / rate
            frames.append(speech.readframes(speech.getnframes()))
        frames.append(b"\0\0" * round(pause * rate))
        starts.append(round(at, 3))
        cues.append(Cue(start=at, end=at + length, lines=(text,)))
        at += length + pause
        wav.unlink()
    talk = directory / "talk.wav"
    with wave.open(str(talk), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(frames))
    video = directory / "talk.mp4"  # MP3 audio: an AAC encode of 3 minutes costs seconds
    run_ffmpeg(
        "-f", "lavfi", "-i", f"color=c=gray:size=160x90:rate=1:duration={at:.3f}",
        "-i", str(talk), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "libmp3lame", "-b:a", "32k", "-movflags", "+faststart", str(video),
    )  # fmt: skip
    talk.unlink()
    return Talk(video=video, captions=to_vtt(cues), starts=starts, duration=at)


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Talk:
    return synthesize_talk(tmp_path_factory.mktemp("talk"), TALK)


@dataclass
class Published:
    card: Card
    output: Path
    workspace: Workspace


REAL_STAGES = ("ingest", "probe", "transcript", "chapters", "publish_playable", "publish")
"""The stages that run. The media encodes (half a minute on 3 minutes of media, and nothing
chapters read) do not: transcode's place takes :func:`mp4_as_is`, the others are skipped, as a
stage with nothing to do is."""


def mp4_as_is(ctx: StageContext) -> StageResult:
    """The transcode stage's place: the downloaded MP4 as the one rendition, so the card is
    ready and has a watch page without encoding anything."""
    target = ctx.out / "mp4" / "90p.mp4"
    target.parent.mkdir(parents=True)
    shutil.copyfile(readers.source_media(ctx), target)
    asset = OutputAsset(
        file="mp4/90p.mp4", key="mp4/90p.mp4", role=AssetRole.MP4, width=160, height=90
    )
    return StageResult.done(ctx.out, assets=[asset])


def _skipped(ctx: StageContext) -> StageResult:
    return StageResult.skipped("not in this test")


def chapters_dag() -> Dag:
    stand_ins = {"transcode": mp4_as_is}
    return Dag.of(
        [
            stage
            if stage.name in REAL_STAGES
            else replace(stage, run=stand_ins.get(stage.name, _skipped))
            for stage in default_dag()
        ]
    )


def publish(tmp: Path, talk: Talk, page: Callable[[MediaServer], str]) -> Published:
    """``talk`` served with the page ``page`` makes, through the stages :data:`REAL_STAGES`;
    the card they publish."""
    with MediaServer(tmp / "www") as server:
        server.put_file("talk/talk.mp4", talk.video)
        server.add("talk/talk.en.vtt", talk.captions, "text/vtt")
        url = server.add("talk/page.html", page(server))
        settings = make_settings(tmp, **tiny_sections())
        executor = LocalExecutor(settings, dag=chapters_dag(), publisher=CardPublisher(settings))
        state = executor.run(JobSpec(source=url, event="Munich Security Conference"))
    assert state.status is JobStatus.SUCCEEDED, state.error
    assert state.card_id is not None
    output = Path(settings.storage.output)
    card = Card.model_validate_json((output / card_key(state.card_id)).read_text())
    return Published(card, output, Workspace.for_job(settings.storage.workspace, state.id))


def page_with_captions(server: MediaServer) -> str:
    """The recording in a video element with its human captions: no chapters."""
    return (
        "<html><head><title>Three subjects</title></head><body><video controls>"
        f'<source src="{server.url("talk/talk.mp4")}" type="video/mp4">'
        f'<track kind="captions" srclang="en" label="English" '
        f'src="{server.url("talk/talk.en.vtt")}"></video></body></html>'
    )


@pytest.fixture(scope="module")
def talk_card(talk: Talk, tmp_path_factory: pytest.TempPathFactory) -> Published:
    return publish(tmp_path_factory.mktemp("talk-card"), talk, page_with_captions)


def stage_data(workspace: Workspace, stage: str) -> dict[str, Any]:
    result = StageResult.model_validate_json(workspace.result_file(stage).read_text())
    return result.data


def test_a_talk_on_three_subjects_gets_three_chapters_at_the_changes(
    talk: Talk, talk_card: Published
) -> None:
    """Acceptance: 3 chapters within 15 s of the changes; the published track passes the
    WebVTT checker; the JSON-LD Clips parse and their offsets are the chapters'."""
    published = talk_card
    card = published.card
    assert card.status is CardStatus.READY
    assert card.duration is not None and 170 < card.duration.seconds < 200
    duration = card.duration.seconds
    changes = [talk.starts[12], talk.starts[24]]
    assert len(card.chapters) == 3
    assert card.chapters[0].start == 0.0
    for chapter, change in zip(card.chapters[1:], changes, strict=True):
        assert abs(chapter.start - change) <= TOLERANCE_S, (chapter, change)
    ends = [c.end for c in card.chapters]
    assert ends == [*(c.start for c in card.chapters[1:]), round(duration, 3)]
    assert all(c.end is not None and c.end - c.start >= 10 for c in card.chapters)
    assert all(0 < len(c.title) <= MAX_TITLE_CHARS for c in card.chapters)
    assert stage_data(published.workspace, "chapters")["origin"] == "transcript"

    # the track: published beside the captions, listed in the manifest, linked from the card
    assert card.chapters_track == "captions/chapters.vtt"
    track = (published.output / card.id / card.chapters_track).read_text()
    check_chapters_track(track, [ChapterSpan(c.title, c.start, c.end or 0) for c in card.chapters])
    manifest = json.loads((published.output / card.id / "manifest.json").read_text())
    assert "captions/chapters.vtt" in [asset["path"] for asset in manifest["assets"]]

    # the key moments, in card.json and in the watch page: Clips at the chapters' seconds
    document = json.loads((published.output / card_key(card.id)).read_text())
    watch = (published.output / card.id / "watch.html").read_text()
    [embedded] = re.findall(r'<script type="application/ld\+json">(.*?)</script>', watch, re.S)
    for jsonld in (document["jsonld"], json.loads(embedded)):
        clips = jsonld["hasPart"]
        assert [(c["@type"], c["name"]) for c in clips] == [
            ("Clip", c.title) for c in card.chapters
        ]
        assert [c["startOffset"] for c in clips] == [start_second(c.start) for c in card.chapters]
        assert [c["endOffset"] for c in clips] == [
            *(start_second(c.start) for c in card.chapters[1:]),
            round(duration),
        ]


# -- the source's chapters, end to end -------------------------------------------------------------

SOURCE_CLIPS = [  # as a site's JSON-LD gives them: from 3 s, a 5 s welcome, a long title
    ("Welcome", 3, 8),
    ("Energy security: gas, storage, grids and the power plants of the next decade", 8, 67),
    ("Cyber defence", 67, 130),
    ("Transatlantic trade", 130, None),
]


def page_with_chapters(server: MediaServer) -> str:
    """The recording as a page's schema.org VideoObject with chapters (Clips), which
    yt-dlp's generic extractor reads as the source's chapters."""
    data = {
        "@context": "https://schema.org",
        "@type": "VideoObject",
        "name": "Three subjects",
        "contentUrl": server.url("talk/talk.mp4"),
        "uploadDate": "2026-02-14",
        "hasPart": [
            {"@type": "Clip", "name": name, "startOffset": start}
            | ({"endOffset": end} if end else {})
            for name, start, end in SOURCE_CLIPS
        ],
    }
    return (
        "<html><head><title>Three subjects</title>"
        f'<script type="application/ld+json">{json.dumps(data)}</script></head><body></body></html>'
    )


def test_a_sources_chapters_are_kept_held_to_the_rules(talk: Talk, tmp_path: Path) -> None:
    published = publish(tmp_path, talk, page_with_chapters)
    card = published.card
    source = json.loads((published.workspace.stage_dir("ingest") / "info.json").read_text())
    assert [c["start"] for c in source["chapters"]][:3] == [0, 3, 8], "yt-dlp fills the gap"
    assert card.duration is not None
    assert [(c.title, c.start, c.end) for c in card.chapters] == [
        ("Energy security: gas, storage, grids and the…", 0.0, 67.0),
        ("Cyber defence", 67.0, 130.0),
        ("Transatlantic trade", 130.0, round(card.duration.seconds, 3)),
    ]
    assert stage_data(published.workspace, "chapters")["origin"] == "source"
    assert card.chapters_track is not None
    check_chapters_track(
        (published.output / card.id / card.chapters_track).read_text(),
        [ChapterSpan(c.title, c.start, c.end or 0) for c in card.chapters],
    )
    assert [c["startOffset"] for c in card.jsonld["hasPart"]] == [0, 67, 130]


def rerun_chapters(job: Published, tmp: Path, chapters: list[Chapter]) -> StageResult:
    """The chapters stage again over ``job``'s finished ingest, probe and transcript, the
    source now saying it has ``chapters``."""
    workspace = Workspace(tmp / "job")
    for stage in ("ingest", "probe", "transcript"):
        shutil.copytree(job.workspace.stage_dir(stage), workspace.stage_dir(stage))
    info = read_source_info(workspace.stage_dir("ingest"))
    info.chapters = chapters
    (workspace.stage_dir("ingest") / INFO_FILE).write_text(info.model_dump_json())
    spec = JobSpec(source="https://example.org/talk")
    ctx = StageContext(
        job_id=spec.job_id,
        stage="chapters",
        spec=spec,
        settings=make_settings(tmp),
        workspace=workspace,
        out=workspace.partial_dir("chapters"),
    )
    result, ran = run_stage(CHAPTERS_STAGE, ctx)
    assert ran
    return result


def test_source_chapters_win_when_they_keep_the_rules_else_the_transcripts(
    talk_card: Published, tmp_path: Path
) -> None:
    kept = [Chapter(title=t, start=s) for t, s in (("One", 0), ("Two", 50), ("Three", 100))]
    result = rerun_chapters(talk_card, tmp_path / "kept", kept)
    assert result.data["origin"] == "source"
    assert [c["title"] for c in result.data["chapters"]] == ["One", "Two", "Three"]

    broken = [Chapter(title="Opening", start=0), Chapter(title="Q&A", start=150)]
    result = rerun_chapters(talk_card, tmp_path / "broken", broken)
    assert result.data["origin"] == "transcript"
    assert len(result.data["chapters"]) == 3
    assert any("do not keep YouTube's rules" in w for w in result.data["warnings"])
