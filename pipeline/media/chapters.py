"""Chapters of a recording: the source's held to YouTube's rules, else found in the transcript,
and the WebVTT chapters track (pure logic, no I/O).

YouTube's rules, which every chapter list Recast publishes keeps: the first chapter starts at
0:00, there are at least :data:`MIN_CHAPTERS`, each lasts at least :data:`MIN_CHAPTER_S`; a
title has at most :data:`MAX_TITLE_CHARS` characters.

- :func:`normalise_chapters`: the source's chapters (yt-dlp's) in order, the first moved to 0,
  a chapter shorter than the minimum merged into its neighbour (the previous one; the first
  into the next), keeping the longer part's title (yt-dlp's ``<Untitled Chapter N>`` fillers
  never give theirs); titles trimmed at a word boundary. Fewer than three left: none.
- :func:`transcript_sentences`: the transcript's words grouped into sentences (at sentence
  punctuation; automatic captions without any are cut at pauses and every
  :data:`MAX_SENTENCE_WORDS` words), each with its start and end.
- :func:`find_chapters`: topic segmentation by lexical cohesion, in the manner of Hearst's
  TextTiling: each sentence a bag of stems (stop words out, light suffix stripping; English and
  German lists, the language guessed from them when unknown), weighted by TF-IDF over the
  sentences; at every sentence start the cosine similarity between the speech of the window
  before and of the window after (:meth:`SegmentationRules.window`); the curve smoothed; at
  each valley its depth (how far the curve climbs to the peaks either side) and that depth
  over the peaks' heights. Chapters begin at the deepest valleys that are deep both ways
  (:data:`DEPTH_FLOOR`, :data:`RELATIVE_DEPTH_FLOOR`: a talk on one subject only ripples), at
  the sentence where the unsmoothed curve is lowest beside the valley, at least
  :meth:`SegmentationRules.shortest_chapter` apart and from either end, at most
  :meth:`SegmentationRules.most_chapters`. Recordings under ``min_recording_s``, and talks
  with fewer than three chapters, get none.
- :func:`chapter_titles`: a title per chapter from its most distinctive words (TF-IDF of the
  chapter against the others): the most frequent phrase holding its top word ("energy
  security"), joined to a second phrase of a word said again when both fit; capitalised, never
  empty.
- :func:`chapters_vtt`: the WebVTT chapters track, one cue per chapter, its text the title.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.core.source import Chapter
from pipeline.core.timedtext import Cue, TranscriptSegment
from pipeline.media.subtitles import SENTENCE_END, to_vtt

MAX_TITLE_CHARS = 50
MIN_CHAPTER_S = 10.0
MIN_CHAPTERS = 3
MAX_SENTENCE_WORDS = 40
SENTENCE_PAUSE_S = 2.0
"""A silence this long ends a sentence even without punctuation (automatic captions)."""
DEPTH_FLOOR = 0.08
"""A valley shallower than this (in cosine similarity) is a ripple, not a change of subject."""
RELATIVE_DEPTH_FLOOR = 0.35
"""Nor is a valley whose depth is less than this share of its peaks' heights: on a talk that
keeps to one subject the similarity stays high and dips only a little."""

_ELLIPSIS = "…"
_TOKEN = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*")
_PHRASE_BREAK = re.compile(r"[^\w\s'’-]")
_PLACEHOLDER_TITLE = re.compile(r"^<Untitled Chapter \d+>$")

_STOP_WORDS_EN = """
a about above after again against ago all almost along already also although always am among an
and another any anybody anyone anything anyway are aren't around as ask asked at away back be
became because become been before begin being below besides best better between beyond both
bring but by call called came can can't cannot come comes continue could couldn't did didn't do
does doesn't doing don't done down during each either else end enough even ever every everybody
everyone everything exactly far few finally find first for found from further get gets getting
give given go goes going gone good got great had hadn't happen has hasn't have haven't having he
he's help her here here's hers herself him himself his hold how however i i'd i'll i'm i've if
in include indeed instead into is isn't it it's its itself just keep kind know known last later
lead least less let let's like likely little live look looking lot lots made make makes making
many may maybe me mean means might mine more most mostly move much must my myself need needs
never new next no nobody none nor not nothing now of off often oh ok okay on once one ones only
onto or other others otherwise our ours ourselves out over own part pay perhaps play provide put
quite rather really remain right run said same say saying says second see seem seems seen set
several shall she she's should shouldn't show since so some somebody someone something sometimes
somewhat speak start still stop such sure take taken takes talk talking tell than thank thanks
that that's the their theirs them themselves then there there's therefore these they they'd
they'll they're they've thing things think thinking this those though three through thus time
times to today together too took toward towards tried try turn two uh um under unless until up
upon us use used using very want wanted wants was wasn't way ways we we'd we'll we're we've well
went were weren't what what's when where where's whether which while who who's whole whom whose
why will with within without won't work would wouldn't yeah year years yes yet you you'd you'll
you're you've your yours yourself yourselves
"""

_STOP_WORDS_DE = """
aber alle allem allen aller alles als also am an ander andere anderem anderen anderer anderes
anders auch auf aus beginne beginnen bei beide beiden beim bereits bin bis bisschen bist bitte
bleiben bleibt brauchen braucht da dabei dadurch dafür dagegen daher damals damit danach dann
daran darauf darf darin darum darüber das dass davon dazu dein deine dem den denen denn dennoch
der deren des deshalb dessen die dies diese diesem diesen dieser dieses doch dort du durch eben
eigentlich ein eine einem einen einer eines einfach einige einigen einmal er es etwa etwas euch
euer eure finden führen für gab ganz gar geben gegen gehen geht gehört gemacht genau gerade
gesagt gewesen gibt gut habe haben hast hat hatte hatten heute hier hin hinter hätte ich ihm ihn
ihnen ihr ihre ihrem ihren ihrer ihres im immer in ins ist ja jahr jahre jahren je jede jedem
jeden jeder jedes jedoch jetzt kann kannst kaum kein keine keinem keinen keiner kommen kommt
kurz können könnte lassen liegt machen macht mal man manche mehr mein meine meinem meinen meiner
mich mir mit muss musste möchte müssen nach nachdem natürlich neben nein neue neuen nicht nichts
noch nun nur ob oder ohne recht sagen sagt schluss schon sehr sei sein seine seinem seinen
seiner seit selbst sich sie sind so sogar solche soll sollen sollte sondern sowie spreche
sprechen statt stehen steht um und uns unser unsere unserem unseren unter viel viele vielen
vielleicht vom von vor wann war waren warum was weil weiter weitere welche welchem welchen
welcher wenn wer werde werden wie wieder will wir wird wirklich wo wohl wollen wurde wurden
während wäre würde würden zeigen zeigt zu zum zur zwar zwei zwischen äh ähm über
"""

STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(_STOP_WORDS_EN.split()),
    "de": frozenset(_STOP_WORDS_DE.split()),
}
_ALL_STOP_WORDS = frozenset().union(*STOP_WORDS.values())
_CONNECTORS = {"en": " and ", "de": " und "}
_CHAPTER_WORD = {"en": "Chapter", "de": "Kapitel"}


@dataclass(frozen=True)
class ChapterSpan:
    """A chapter as published: its title and where it starts and ends, in seconds."""

    title: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Sentence:
    """A sentence of the transcript and when it was said, in seconds."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class SegmentationRules:
    """How many chapters a recording may be cut into, and how short they may be (the
    ``chapters`` settings)."""

    min_recording_s: float = 60.0
    """Shorter recordings get no chapters from their transcript."""
    seconds_per_chapter: float = 150.0
    """At most one chapter per this many seconds (but three are always allowed)."""
    min_chapter_s: float = MIN_CHAPTER_S

    def shortest_chapter(self, duration: float) -> float:
        """No chapter shorter than a twelfth of the recording, nor than half the time per
        chapter, nor than YouTube's minimum."""
        return max(self.min_chapter_s, min(duration / 12, self.seconds_per_chapter / 2))

    def most_chapters(self, duration: float) -> int:
        """One per sixth of the recording, but no more than one a minute, and on long
        recordings no more than one per ``seconds_per_chapter``."""
        per = max(60.0, min(self.seconds_per_chapter, duration / 6))
        return max(MIN_CHAPTERS, int(duration // per))

    def window(self, duration: float) -> float:
        """How many seconds of speech each side of a sentence start are compared: a sixth of
        the recording, within 20 to 90 s (TextTiling's blocks are about 200 words)."""
        return min(90.0, max(20.0, duration / 6))


# -- titles ---------------------------------------------------------------------------------------


def trim_title(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters: cut at a word boundary and ending
    in "…" when it was longer."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - len(_ELLIPSIS) + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space >= limit // 2 else cut[: limit - len(_ELLIPSIS)]
    return cut.rstrip(" ,;:-–—.") + _ELLIPSIS


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


# -- the source's chapters -----------------------------------------------------------------------


def normalise_chapters(
    chapters: Sequence[Chapter], duration: float | None, *, language: str | None = None
) -> list[ChapterSpan]:
    """The source's ``chapters`` held to YouTube's rules (see the module's docstring); none
    when fewer than three remain. ``duration`` is the recording's; without it the last
    chapter ends where the source says, else it is taken to last the minimum."""
    usable = sorted(
        (c for c in chapters if math.isfinite(c.start) and c.start >= 0),
        key=lambda c: c.start,
    )
    if duration is not None and duration > 0:
        usable = [c for c in usable if c.start < duration]
        recording_end = duration
    elif usable:
        last = usable[-1]
        recording_end = last.end if last.end and last.end > last.start else last.start
        recording_end = max(recording_end, last.start + MIN_CHAPTER_S)
    titles: dict[float, str] = {}
    for chapter in usable:
        titles.setdefault(round(chapter.start, 3), chapter.title)
    starts = sorted(titles)
    spans = [
        ChapterSpan(
            titles[at],
            0.0 if index == 0 else at,
            starts[index + 1] if index + 1 < len(starts) else recording_end,
        )
        for index, at in enumerate(starts)
    ]
    while len(spans) > 1:
        short = [i for i, span in enumerate(spans) if span.duration < MIN_CHAPTER_S]
        if not short:
            break
        shortest = min(short, key=lambda i: spans[i].duration)
        first = shortest - 1 if shortest > 0 else 0  # into the previous; the first into the next
        a, b = spans[first], spans[first + 1]
        keep_a = (a.duration >= b.duration or _untitled(b.title)) and not _untitled(a.title)
        spans[first : first + 2] = [ChapterSpan(a.title if keep_a else b.title, a.start, b.end)]
    if len(spans) < MIN_CHAPTERS:
        return []
    return [
        ChapterSpan(
            _numbered(index, language) if _untitled(span.title) else trim_title(span.title),
            span.start,
            span.end,
        )
        for index, span in enumerate(spans)
    ]


def _untitled(title: str) -> bool:
    """No title, or yt-dlp's stand-in for one (``<Untitled Chapter 2>``, for a gap it filled)."""
    return not title.strip() or bool(_PLACEHOLDER_TITLE.match(title.strip()))


def _numbered(index: int, language: str | None) -> str:
    return f"{_CHAPTER_WORD.get(_language_key(language) or 'en', 'Chapter')} {index + 1}"


# -- sentences -----------------------------------------------------------------------------------


def transcript_sentences(segments: Sequence[TranscriptSegment]) -> list[Sentence]:
    """The transcript's words as sentences (see the module's docstring)."""
    words: list[tuple[str, float, float]] = []
    for segment in segments:
        if segment.words:
            words.extend((w.word, w.start, w.end) for w in segment.words if w.word.strip())
        elif segment.text.strip():
            words.append((segment.text.strip(), segment.start, segment.end))
    sentences: list[Sentence] = []
    current: list[tuple[str, float, float]] = []

    def close() -> None:
        if current:
            text = " ".join(" ".join(w[0] for w in current).split())
            sentences.append(Sentence(text, current[0][1], current[-1][2]))
            current.clear()

    for word in words:
        if current and word[1] - current[-1][2] >= SENTENCE_PAUSE_S:
            close()
        current.append(word)
        if SENTENCE_END.search(word[0]) or len(current) >= MAX_SENTENCE_WORDS:
            close()
    close()
    return sentences


# -- terms ---------------------------------------------------------------------------------------


def _language_key(language: str | None) -> str | None:
    if not language:
        return None
    key = re.split(r"[-_]", language.strip().lower(), maxsplit=1)[0]
    return key if key in STOP_WORDS else None


def _stop_words(language: str | None) -> frozenset[str]:
    key = _language_key(language)
    return STOP_WORDS[key] if key else _ALL_STOP_WORDS


def guess_language(texts: Iterable[str]) -> str | None:
    """Of the languages whose stop words are known, the one ``texts`` use most; None when
    they use none of them."""
    tokens = [token.lower() for text in texts for token in _TOKEN.findall(text)]
    hits = {key: sum(token in words for token in tokens) for key, words in STOP_WORDS.items()}
    best = max(hits, key=lambda key: hits[key])
    return best if hits[best] else None


def stem(word: str, language: str | None) -> str:
    """A light stem: inflection endings stripped (English or German rules; English for others),
    so "attacks", "attacked" and "attack" are one term."""
    w = word.lower().replace("’", "'")
    if _language_key(language) == "de":
        for suffix in ("ungen", "ern", "en", "er", "es", "em", "e", "n", "s"):
            if w.endswith(suffix) and len(w) - len(suffix) >= 4:
                return w[: -len(suffix)] + ("ung" if suffix == "ungen" else "")
        return w
    if w.endswith("'s"):
        w = w[:-2]
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            w = w[: -len(suffix)]
            break
    if w.endswith("e") and len(w) > 4:
        w = w[:-1]
    return w


def _content(token: str, stop_words: frozenset[str]) -> bool:
    """Whether ``token`` carries meaning: not a stop word, and at least three letters (two for
    an acronym such as "EU")."""
    lowered = token.lower().replace("’", "'")
    if lowered in stop_words:
        return False
    return len(token) >= 3 or (len(token) >= 2 and token.isupper())


def terms(text: str, language: str | None) -> list[str]:
    """The stems of the content words of ``text`` (a hyphenated word counts by its parts)."""
    stop_words = _stop_words(language)
    found: list[str] = []
    for match in _TOKEN.finditer(text):
        for part in re.split(r"-", match.group()):
            if part and _content(part, stop_words):
                found.append(stem(part, language))
    return found


# -- segmentation ---------------------------------------------------------------------------------


FloatArray = np.ndarray[Any, np.dtype[np.float64]]


Weights = dict[str, float]


def tf_idf(bags: Sequence[Counter[str]]) -> list[Weights]:
    """Each sentence's terms weighted by TF-IDF over the sentences."""
    said_in = Counter(term for bag in bags for term in bag)
    idf = {term: math.log((1 + len(bags)) / (1 + count)) + 1.0 for term, count in said_in.items()}
    return [{term: n * idf[term] for term, n in bag.items()} for bag in bags]


def _total(vectors: Sequence[Weights]) -> Weights:
    total: Weights = {}
    for vector in vectors:
        for term, weight in vector.items():
            total[term] = total.get(term, 0.0) + weight
    return total


def _cosine(a: Weights, b: Weights) -> float:
    if len(b) < len(a):
        a, b = b, a
    dot = sum(weight * b.get(term, 0.0) for term, weight in a.items())
    norm = math.sqrt(sum(w * w for w in a.values()) * sum(w * w for w in b.values()))
    return dot / norm if norm else 0.0


def gap_similarities(
    sentences: Sequence[Sentence], vectors: Sequence[Weights], window_s: float
) -> FloatArray:
    """For every sentence after the first: the similarity of the words said in the
    ``window_s`` before it began and in the ``window_s`` from then (at least one sentence
    each side)."""
    starts = [s.start for s in sentences]
    scores = np.zeros(len(sentences) - 1)
    for gap in range(1, len(sentences)):
        at = starts[gap]
        left = max(0, min(bisect.bisect_left(starts, at - window_s), gap - 1))
        right = max(gap + 1, bisect.bisect_left(starts, at + window_s))
        scores[gap - 1] = _cosine(_total(vectors[left:gap]), _total(vectors[gap:right]))
    return scores


def _smoothed(scores: FloatArray) -> FloatArray:
    if len(scores) < 3:
        return scores
    padded = np.concatenate(([scores[0]], scores, [scores[-1]]))
    smoothed: FloatArray = np.convolve(padded, np.ones(3) / 3, mode="valid")
    return smoothed


@dataclass(frozen=True)
class Valley:
    """A low point of the similarity curve: its gap, and how deep it lies."""

    gap: int
    depth: float
    """How far the curve climbs from it to the peak on its left and to the peak on its right,
    added (TextTiling's depth score)."""
    relative: float
    """The depth over the two peaks' heights: 1 where the similarity falls to nothing, small
    for a ripple on a curve that stays high."""


def valleys(scores: FloatArray) -> list[Valley]:
    """The curve's local minima (a flat bottom counted once) with their depths."""
    found: list[Valley] = []
    for i, value in enumerate(scores):
        if (i > 0 and value >= scores[i - 1]) or (i + 1 < len(scores) and value > scores[i + 1]):
            continue
        left = i
        while left > 0 and scores[left - 1] >= scores[left]:
            left -= 1
        right = i
        while right < len(scores) - 1 and scores[right + 1] >= scores[right]:
            right += 1
        peaks = float(scores[left] + scores[right])
        depth = peaks - 2 * float(value)
        found.append(Valley(i, depth, depth / peaks if peaks > 0 else 0.0))
    return found


def find_boundaries(
    sentences: Sequence[Sentence],
    duration: float,
    language: str | None,
    rules: SegmentationRules = SegmentationRules(),
) -> list[int]:
    """The indices of the sentences that begin a new chapter (the first excluded), in order;
    empty when the recording is short or its subject does not change clearly."""
    if duration < rules.min_recording_s or len(sentences) < 2 * MIN_CHAPTERS:
        return []
    bags = [Counter(terms(s.text, language)) for s in sentences]
    if sum(len(bag) for bag in bags) == 0:
        return []
    vectors = tf_idf(bags)
    raw = gap_similarities(sentences, vectors, rules.window(duration))
    shortest = rules.shortest_chapter(duration)
    most = rules.most_chapters(duration)
    chosen: list[int] = []
    for valley in sorted(valleys(_smoothed(raw)), key=lambda v: -v.depth):
        if len(chosen) >= most - 1 or valley.depth < DEPTH_FLOOR:
            break
        if valley.relative < RELATIVE_DEPTH_FLOOR:
            continue
        # the valley is found on the smoothed curve; the subject changes where the raw curve
        # is lowest beside it
        near = range(max(0, valley.gap - 1), min(len(raw), valley.gap + 2))
        gap = min(near, key=lambda g: (raw[g], g != valley.gap))
        at = sentences[gap + 1].start
        if at < shortest or duration - at < shortest:
            continue
        if any(abs(at - sentences[c].start) < shortest for c in chosen):
            continue
        chosen.append(gap + 1)
    if len(chosen) + 1 < MIN_CHAPTERS:
        return []
    return sorted(chosen)


def find_chapters(
    sentences: Sequence[Sentence],
    duration: float,
    language: str | None,
    rules: SegmentationRules = SegmentationRules(),
) -> list[ChapterSpan]:
    """Chapters of a recording from its transcript's ``sentences`` (see the module's
    docstring); none when it is short or keeps to one subject."""
    if _language_key(language) is None:
        language = guess_language(s.text for s in sentences)
    boundaries = find_boundaries(sentences, duration, language, rules)
    if not boundaries:
        return []
    edges = [0, *boundaries, len(sentences)]
    groups = [list(sentences[a:b]) for a, b in itertools.pairwise(edges)]
    titles = chapter_titles(groups, language)
    starts = [0.0, *(round(sentences[b].start, 3) for b in boundaries)]
    ends = [*starts[1:], round(duration, 3)]
    return [
        ChapterSpan(title, start, end)
        for title, start, end in zip(titles, starts, ends, strict=True)
    ]


# -- titles from the words ------------------------------------------------------------------------


@dataclass
class _Phrase:
    key: tuple[str, ...]
    count: int
    surfaces: Counter[str]

    def surface(self) -> str:
        return self.surfaces.most_common(1)[0][0]


def _phrases(sentences: Iterable[Sentence], language: str | None) -> dict[tuple[str, ...], _Phrase]:
    """Runs of one to three content words said together (no punctuation or stop word between
    them), by their stems, with how they were written."""
    stop_words = _stop_words(language)
    found: dict[tuple[str, ...], _Phrase] = {}
    for sentence in sentences:
        for piece_index, piece in enumerate(_PHRASE_BREAK.split(sentence.text)):
            tokens = [m.group() for m in _TOKEN.finditer(piece)]
            run: list[str] = []
            for position, token in enumerate([*tokens, ""]):
                if token and _content(token, stop_words):
                    run.append(token)
                    continue
                for size in (1, 2, 3):
                    for i in range(len(run) - size + 1):
                        words = run[i : i + size]
                        key = tuple(stem(w, language) for w in words)
                        phrase = found.setdefault(key, _Phrase(key, 0, Counter()))
                        phrase.count += 1
                        # a sentence's first word is capitalised for its place, not its meaning:
                        # how it is written elsewhere counts first
                        initial = piece_index == 0 and position - len(run) + i == 0
                        phrase.surfaces[" ".join(words)] += 1 if initial else 2
                run = []
    return found


def chapter_titles(groups: Sequence[Sequence[Sentence]], language: str | None) -> list[str]:
    """A title for each group of sentences, at most :data:`MAX_TITLE_CHARS` characters (see the
    module's docstring)."""
    said = [[term for s in group for term in terms(s.text, language)] for group in groups]
    counts = [Counter(terms_said) for terms_said in said]
    chapters_with: Counter[str] = Counter(term for found in counts for term in found)
    connector = _CONNECTORS.get(_language_key(language) or "", ", ")
    titles: list[str] = []
    for index, group in enumerate(groups):
        found = _phrases(group, language)
        total = sum(counts[index].values()) or 1
        weight = {
            term: count / total * math.log(1 + len(groups) / chapters_with[term])
            for term, count in counts[index].items()
        }
        first_said = {term: i for i, term in reversed(list(enumerate(said[index])))}
        picked: list[_Phrase] = []
        for term in sorted(weight, key=lambda t: (-weight[t], first_said[t])):
            if len(picked) == 2:
                break
            if picked and counts[index][term] < 2:
                continue  # a second phrase only for a word said again
            if any(term in phrase.key for phrase in picked):
                continue
            best = _phrase_for(term, found, picked)
            if best is not None:
                picked.append(best)
        title = _title_from(picked, connector)
        if not title:
            opening = group[0].text.rstrip(".!?…") if group else ""
            title = trim_title(opening) or _numbered(index, language)
        titles.append(_capitalised(title))
    return titles


def _phrase_for(
    term: str, found: dict[tuple[str, ...], _Phrase], taken: Sequence[_Phrase]
) -> _Phrase | None:
    """The phrase said most often that holds ``term`` and no word of the ``taken`` ones: one
    of several words when it recurs, else the word alone."""
    used = {t for phrase in taken for t in phrase.key}
    holding = [p for key, p in found.items() if term in key and not used.intersection(key)]
    longer = [p for p in holding if len(p.key) > 1 and p.count >= 2]
    if longer:
        return max(longer, key=lambda p: (p.count, len(p.key), p.surface()))
    return found.get((term,))


def _title_from(picked: Sequence[_Phrase], connector: str) -> str:
    """The first phrase, and the second after the connector when both fit."""
    if not picked:
        return ""
    first = _capitalised(picked[0].surface())
    if len(picked) > 1:
        both = first + connector + picked[1].surface()
        if len(both) <= MAX_TITLE_CHARS:
            return both
    return trim_title(first)


# -- the WebVTT track -----------------------------------------------------------------------------


def chapters_vtt(chapters: Sequence[ChapterSpan]) -> str:
    """The WebVTT chapters track: a cue per chapter from its start to its end, the title its
    text (escaped)."""
    return to_vtt(
        [Cue(start=c.start, end=max(c.end, c.start + 0.001), lines=(c.title,)) for c in chapters]
    )
