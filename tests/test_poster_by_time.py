"""Poster by time (issue 14, item 5): ``POST /v1/cards/{id}/poster`` and ``recast poster``.

One real job (the default DAG on a 10 s 320x180 clip of moving gradients, no sound: smooth
enough that a JPEG of a frame stays above 45 dB, changing enough that the frames beside it do
not) publishes a ready card; then:

- the API makes the poster from the frame at 7.3 s: each new picture matches ``ffmpeg -ss 7.3
  -i <published mp4> -frames:v 1`` (PSNR >= 35 dB), better than the frames beside it, and
  not the frame at another time nor the old poster; the srcset's files exist at their widths;
  the placeholder changed; card.json, card.html, watch.html (links and JSON-LD), oembed.json,
  the manifest and the event index name the new pictures and nothing names the old ones,
  which are gone; a webhook receiver gets a signed ``card.updated``;
- refusals change nothing: 404 ``card.not_found``, 409 ``card.not_ready`` (a preview card, a
  card without an MP4), 422 ``poster.time_invalid`` and ``request.invalid``;
- a re-run of the job (its publish stage done again, from the thumbnails stage's scored
  poster) keeps the chosen frame;
- ``recast poster`` here (``--config``, ``--json``) and through ``--api``.

Slow (about 8 s on two busy cores): the card is published by the real stages once, for the
module; the rest is well under a second a test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pipeline.cli.main import main as recast
from pipeline.core.card import Card, CardStatus
from pipeline.core.job import JobSpec, JobStatus
from pipeline.core.manifest import Manifest
from pipeline.core.settings import Settings
from pipeline.core.workspace import RESULT_FILE, Workspace
from pipeline.engine.local import LocalExecutor
from pipeline.publish import verify_signature, webhooks
from pipeline.publish.poster import set_poster
from pipeline.publish.publisher import CardPublisher
from tests.conftest import make_settings
from tests.support.media import run_ffmpeg
from tests.support.workers import wait_for, write_config
from tests.test_cli_contract import served
from workers.api import create_api

pytestmark = pytest.mark.slow

SECRET = "whsec_poster_by_time"
TOKEN = "poster-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DURATION = 10.0
EVENT = "Poster Days 2026"
PICTURE_ROLES = {"poster", "poster-square"}


@dataclass
class Hooks:
    """A CMS's webhook endpoint on this machine: records every request, answers 200."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, kind: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for h, b in self.received if json.loads(b)["type"] == kind]


@dataclass
class Published:
    settings: Settings
    spec: JobSpec
    out: Path
    card_id: str
    hooks: Hooks

    @property
    def folder(self) -> Path:
        return self.out / self.card_id

    def card(self) -> Card:
        return Card.model_validate_json((self.folder / "card.json").read_bytes())

    def manifest(self) -> Manifest:
        return Manifest.model_validate_json((self.folder / "manifest.json").read_bytes())

    def mp4(self) -> Path:
        top = max(self.card().streams.mp4, key=lambda rendition: rendition.height)
        return self.folder / top.src


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    state = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.received.append((dict(self.headers.items()), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, hooks: Hooks) -> Iterator[Published]:
    tmp = tmp_path_factory.mktemp("poster")
    clip = tmp / "gradients.mp4"
    run_ffmpeg(
        "-f", "lavfi", "-i", f"gradients=s=320x180:r=10:d={DURATION}:speed=0.05:seed=7",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "20", str(clip),
    )  # fmt: skip
    settings = make_settings(
        tmp,
        transcript={"engine": "none"},
        media={"thumbnails": {"poster_widths": [320, 160]}},
        publish={
            "webhook_urls": [hooks.url],
            "webhook_secret": SECRET,
            "webhook_timeout_s": 2.0,
            "gc_grace_s": 0,
        },
        api={"tokens": [TOKEN]},
    )
    spec = JobSpec(source=str(clip), event=EVENT)
    try:
        state = LocalExecutor(settings, publisher=CardPublisher(settings)).run(spec)
        assert state.status is JobStatus.SUCCEEDED, state.error
        assert state.card_id is not None
        yield Published(settings, spec, Path(settings.storage.output), state.card_id, hooks)
    finally:
        webhooks.stop_dispatchers()


@pytest.fixture(scope="module")
def client(published: Published) -> TestClient:
    return TestClient(create_api(published.settings))


# -- pixels ----------------------------------------------------------------------------------


Pixels = np.ndarray[Any, np.dtype[np.float64]]


def pixels(picture: Path, size: tuple[int, int] | None = None) -> Pixels:
    """A picture's RGB pixels (scaled to ``size`` as the posters are: Lanczos)."""
    with Image.open(picture) as image:
        rgb = image.convert("RGB")
    if size is not None and rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.float64)


def frames_at(mp4: Path, seconds: float, count: int = 1) -> list[Pixels]:
    """``ffmpeg -ss <seconds> -i <mp4> -frames:v <count>``: the frames' RGB pixels."""
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-ss", f"{seconds}", "-i", str(mp4), "-frames:v", str(count),
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    )  # fmt: skip
    width, height = 320, 180
    decoded = np.frombuffer(done.stdout, dtype=np.uint8).astype(np.float64)
    assert decoded.size == count * height * width * 3, f"not {count} frames at {seconds} s"
    return list(decoded.reshape(count, height, width, 3))


def scaled(frame: Pixels, width: int, height: int) -> Pixels:
    picture = Image.fromarray(frame.astype(np.uint8))
    return np.asarray(picture.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float64)


def psnr(a: Pixels, b: Pixels) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * float(np.log10(255.0**2 / mse))


def srcset(value: str) -> list[tuple[str, int]]:
    entries = []
    for part in value.split(","):
        url, width = part.split()
        entries.append((url, int(width.removesuffix("w"))))
    return entries


def jsonld_of(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/ld\+json">(.*?)</script>', page, re.S)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


# -- the API ---------------------------------------------------------------------------------


def test_the_poster_is_the_frame_at_that_time_and_the_card_is_republished(
    published: Published, client: TestClient
) -> None:
    before = published.card()
    assert before.status is CardStatus.READY and before.poster is not None
    old_pictures = {
        p.relative_to(published.folder) for p in (published.folder / "thumbs").glob("poster*")
    }
    mp4 = published.mp4()
    old_poster = pixels(published.folder / before.poster.src)
    # A time whose frame the old poster is not (the thumbnails stage picks its frame by content,
    # which may fall near any one time); the video is 320x180, as the largest poster.
    when, wanted = next(
        (t, frame)
        for t in (7.3, 4.3, 8.8, 5.7, 2.9)
        for frame in frames_at(mp4, t)
        if psnr(old_poster, frame) < 30
    )

    answer = client.post(f"/v1/cards/{published.card_id}/poster", json={"time": when}, headers=AUTH)
    assert answer.status_code == 200, answer.text

    card = published.card()
    assert Card.model_validate_json(answer.content) == card, "the answer is the card published"
    poster = card.poster
    assert poster is not None and poster.chosen_time == when
    assert poster.src != before.poster.src and card.updated > before.updated
    assert poster.alt == before.poster.alt
    assert poster.placeholder and poster.placeholder != before.poster.placeholder

    # The picture is the frame at that time, to the frame: not its neighbours, not another time.
    new = pixels(published.folder / poster.src)
    assert (poster.width, poster.height) == (320, 180)
    assert psnr(new, wanted) >= 35
    earlier, _same, later = frames_at(mp4, round(when - 0.1, 1), 3)
    assert psnr(new, wanted) > max(psnr(new, earlier), psnr(new, later)) + 3
    [elsewhere] = frames_at(mp4, 1.0 if when > 4 else 9.5)
    assert psnr(new, elsewhere) < 25
    for source in poster.sources:  # every size and format is that frame
        picture = pixels(published.folder / source.src)
        assert picture.shape[:2] == (source.height, source.width), source.src
        assert psnr(picture, scaled(wanted, source.width, source.height)) >= 35, source.src
    entries = srcset(poster.srcset)
    assert [w for _u, w in entries] == [160, 320]
    for url, advertised in entries:
        with Image.open(published.folder / url) as image:
            assert image.width == advertised, url
    assert {s.type for s in poster.sources} == {"image/jpeg", "image/webp"}

    # Everything that shows the poster names the new pictures, nothing the old ones.
    old_urls = {s.src for s in before.poster.sources}
    new_urls = {s.src for s in poster.sources}
    watch = (published.folder / "watch.html").read_text("utf-8")
    card_html = (published.folder / "card.html").read_text("ascii")
    oembed = json.loads((published.folder / "oembed.json").read_text("utf-8"))
    index = json.loads((published.out / "events" / "poster-days-2026.json").read_text("utf-8"))
    for page in (watch, card_html, json.dumps(oembed), json.dumps(index), card.to_json()):
        assert not [url for url in old_urls if url in page]
    assert f'poster="{poster.src}"' in watch and f'content="{poster.src}"' in watch
    assert jsonld_of(watch)["thumbnailUrl"] == [s.src for s in poster.sources]
    assert jsonld_of(watch) == card.jsonld
    assert all(url in card_html for url in new_urls) and poster.srcset in card_html
    assert oembed["thumbnail_url"] == poster.src
    [entry] = [e for e in index["cards"] if e["id"] == card.id]
    assert entry["poster"]["src"].endswith(poster.src)

    manifest = published.manifest()
    listed = {a.path for a in manifest.assets if a.role in PICTURE_ROLES}
    assert new_urls <= listed and not listed & old_urls
    assert any(a.role == "poster-square" for a in manifest.assets)
    on_disk = {
        p.relative_to(published.folder) for p in (published.folder / "thumbs").glob("poster*")
    }
    assert not on_disk & old_pictures, "the old pictures are gone"
    for asset in manifest.assets:  # no dangling link, and the pages' checksums are the new ones
        if not asset.path.startswith("../"):
            assert (published.folder / asset.path).is_file(), asset.path
    pages = {a.path: a for a in manifest.assets if a.path in ("watch.html", "card.html")}
    assert pages["watch.html"].size == (published.folder / "watch.html").stat().st_size

    # The CMS is told, signed as every event.
    updates = wait_for(lambda: published.hooks.events("card.updated"), 10, "no card.updated")
    headers, body = updates[-1]
    event = json.loads(body)
    assert event["card_id"] == card.id and event["card"]["poster"]["src"] == poster.src
    assert verify_signature(SECRET, headers["Recast-Signature"], body)
    assert not verify_signature("whsec_other", headers["Recast-Signature"], body)


def test_refusals_change_nothing(published: Published, client: TestClient) -> None:
    card_id = published.card_id
    before = (published.folder / "card.json").read_bytes()
    url = f"/v1/cards/{card_id}/poster"

    def refused(path: str, body: object, status: int, code: str) -> None:
        answer = client.post(path, json=body, headers=AUTH)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["code"] == code

    refused("/v1/cards/file-0000000000000000/poster", {"time": 1.0}, 404, "card.not_found")
    for time_s in (DURATION, DURATION + 0.5, -0.1, 1e9):
        refused(url, {"time": time_s}, 422, "poster.time_invalid")
    refused(url, {"time": "soon"}, 422, "request.invalid")
    refused(url, {}, 422, "request.invalid")
    assert client.post(url, json={"time": 1.0}).status_code == 401

    card = published.card()
    preview = card.model_copy(update={"id": "file-preview0000000000", "status": CardStatus.PREVIEW})
    silent = card.model_copy(
        update={
            "id": "file-nomp40000000000000",
            "streams": card.streams.model_copy(update={"mp4": []}),
        }
    )
    for other in (preview, silent):
        (published.out / other.id).mkdir(exist_ok=True)
        (published.out / other.id / "card.json").write_text(other.to_json(), "utf-8")
        refused(f"/v1/cards/{other.id}/poster", {"time": 1.0}, 409, "card.not_ready")
    assert (published.folder / "card.json").read_bytes() == before


def test_a_time_in_the_last_frames_span_gets_the_last_frame(published: Published) -> None:
    mp4 = published.mp4()
    [last] = frames_at(mp4, DURATION - 0.1)  # 10 frames a second: the last one starts at 9.9 s
    card = set_poster(published.settings, published.card_id, DURATION - 0.05)
    assert card.poster is not None and card.poster.chosen_time == DURATION - 0.05
    assert psnr(pixels(published.folder / card.poster.src), last) >= 35


# -- a re-run of the job ----------------------------------------------------------------------


def test_a_rerun_of_the_job_keeps_the_chosen_frame(published: Published) -> None:
    chosen = set_poster(published.settings, published.card_id, 4.6)
    workspace = Workspace.for_job(published.settings.storage.workspace, published.spec.job_id)
    scored = json.loads((workspace.stage_dir("thumbnails") / RESULT_FILE).read_text("utf-8"))
    assert any(a["key"] == "thumbs/poster-320.jpg" for a in scored["assets"])
    shutil.rmtree(workspace.stage_dir("publish"))  # published again, from that scored poster
    state = LocalExecutor(published.settings, publisher=CardPublisher(published.settings)).run(
        published.spec
    )
    assert state.status is JobStatus.SUCCEEDED, state.error

    card = published.card()
    assert card.poster is not None and chosen.poster is not None
    assert card.updated > chosen.updated, "the job published the card again"
    assert card.poster.chosen_time == 4.6
    [wanted] = frames_at(published.mp4(), 4.6)
    assert psnr(pixels(published.folder / card.poster.src), wanted) >= 35
    watch = (published.folder / "watch.html").read_text("utf-8")
    assert f'poster="{card.poster.src}"' in watch
    assert not list((published.folder / "thumbs").glob("poster-320.*")), "no scored poster"


# -- the command line -------------------------------------------------------------------------


def test_recast_poster_here_and_through_the_api(
    published: Published, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "recast.toml", published.settings)
    card_id = published.card_id

    assert recast(["--config", str(config), "poster", card_id, "--time", "0:03.5", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["card"]
    assert shown == json.loads(published.card().to_json())
    assert shown["poster"]["chosen_time"] == 3.5

    code = recast(["--config", str(config), "--json", "poster", card_id, "--time", "99"])
    assert code == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "poster.time_invalid"

    with served(create_api(published.settings)) as url:
        args = ["--api", url, "--token", TOKEN, "poster", card_id, "--time", "9.1"]
        assert recast(args) == 0
        line = capsys.readouterr().out
        card = published.card()
        assert card.poster is not None and card.poster.chosen_time == 9.1
        assert line == f"{card_id}  poster from 9.1 s: {card.poster.src}\n"
        assert (
            recast(["--api", url, "--token", TOKEN, "poster", "file-nothing", "--time", "1"]) == 2
        )
        assert "card.not_found" in capsys.readouterr().err
