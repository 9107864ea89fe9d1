/* Recast watch page: HLS through hls.js (or the browser's own HLS), else the MP4 sources;
   storyboard previews on the scrub bar; transcript paragraphs and #t= links seek the player.
   Everything it needs is in data- attributes of the page; it never evaluates page text. */
(function () {
  "use strict";

  var video = document.querySelector("video[data-recast-player]");
  if (!video) return;
  var root = document.documentElement;

  function setEngine(name) {
    root.setAttribute("data-player", name);
  }

  function useMp4() {
    var source = video.querySelector("source[type='video/mp4']");
    if (source && video.currentSrc.indexOf("blob:") === 0) {
      video.src = source.src;
      video.load();
    }
    setEngine(source ? "mp4" : "none");
  }

  var hlsUrl = video.getAttribute("data-hls");
  if (hlsUrl && window.Hls && window.Hls.isSupported()) {
    var hls = new window.Hls({ capLevelToPlayerSize: true });
    hls.on(window.Hls.Events.ERROR, function (_event, data) {
      if (data && data.fatal) {
        hls.destroy();
        useMp4();
      }
    });
    hls.loadSource(hlsUrl);
    hls.attachMedia(video);
    setEngine("hls.js");
  } else if (hlsUrl && video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = hlsUrl;
    setEngine("native-hls");
  } else {
    setEngine(video.querySelector("source[type='video/mp4']") ? "mp4" : "none");
  }

  function seek(seconds, play) {
    if (!isFinite(seconds)) return;
    video.currentTime = Math.max(0, seconds);
    if (play) {
      var playing = video.play();
      if (playing && playing.catch) playing.catch(function () {});
    }
  }

  function clock(seconds) {
    var total = Math.max(0, Math.floor(seconds));
    var h = Math.floor(total / 3600);
    var m = Math.floor((total % 3600) / 60);
    var s = total % 60;
    var mm = h ? (m < 10 ? "0" + m : "" + m) : "" + m;
    return (h ? h + ":" : "") + mm + ":" + (s < 10 ? "0" + s : s);
  }

  /* #t=90 (or #t=1:30) in the page's address seeks there: chapter links and shared links. */
  function seekToHash(play) {
    var match = /(?:^#|&)t=([0-9:.]+)/.exec(location.hash);
    if (!match) return;
    var parts = match[1].split(":");
    var seconds = 0;
    for (var i = 0; i < parts.length; i++) seconds = seconds * 60 + parseFloat(parts[i] || "0");
    seek(seconds, play);
  }
  window.addEventListener("hashchange", function () { seekToHash(true); });
  if (video.readyState >= 1) seekToHash(false);
  else video.addEventListener("loadedmetadata", function () { seekToHash(false); }, { once: true });

  /* Transcript: a click on a paragraph seeks the player to it; the current one is marked. */
  var transcript = document.querySelector("[data-recast-transcript]");
  var paragraphs = transcript ? transcript.querySelectorAll("[data-start]") : [];
  if (transcript) {
    transcript.addEventListener("click", function (event) {
      var target = event.target;
      while (target && target !== transcript && !target.hasAttribute("data-start")) {
        target = target.parentElement;
      }
      if (!target || target === transcript) return;
      event.preventDefault();
      seek(parseFloat(target.getAttribute("data-start")), true);
      video.scrollIntoView({ block: "nearest" });
    });
  }

  /* The scrub bar: progress, seeking by pointer or keyboard, storyboard previews on hover. */
  var scrubber = document.querySelector("[data-recast-scrubber]");
  var fill = scrubber && scrubber.querySelector("[data-recast-fill]");
  var preview = scrubber && scrubber.querySelector("[data-recast-storyboard]");
  var previewTime = preview && preview.querySelector("[data-recast-time]");
  var tiles = [];

  function duration() {
    return isFinite(video.duration) && video.duration > 0 ? video.duration : 0;
  }

  function timeAt(clientX) {
    var box = scrubber.getBoundingClientRect();
    var ratio = Math.min(1, Math.max(0, (clientX - box.left) / box.width));
    return { ratio: ratio, seconds: ratio * duration(), box: box };
  }

  function tileAt(seconds) {
    for (var i = 0; i < tiles.length; i++) {
      if (seconds >= tiles[i].start && seconds < tiles[i].end) return tiles[i];
    }
    return tiles.length ? tiles[tiles.length - 1] : null;
  }

  function showPreview(clientX) {
    if (!preview) return;
    var at = timeAt(clientX);
    var tile = tileAt(at.seconds);
    if (tile) {
      preview.style.width = tile.w + "px";
      preview.style.height = tile.h + "px";
      preview.style.backgroundImage = 'url("' + tile.url.replace(/"/g, "%22") + '")';
      preview.style.backgroundPosition = "-" + tile.x + "px -" + tile.y + "px";
    }
    var half = (tile ? tile.w : 0) / 2;
    var left = Math.min(Math.max(at.ratio * at.box.width, half), at.box.width - half);
    preview.style.left = left - half + "px";
    if (previewTime) previewTime.textContent = clock(at.seconds);
    preview.hidden = false;
    preview.setAttribute("data-tile", tile ? tile.url + "#xywh=" + [tile.x, tile.y, tile.w, tile.h].join(",") : "");
  }

  function parseStoryboard(text, base) {
    var lines = text.replace(/\r/g, "").split("\n");
    var found = [];
    var timing = /^\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{3})\s+-->\s+((?:\d+:)?\d{1,2}:\d{2}[.,]\d{3})/;
    function seconds(value) {
      var parts = value.replace(",", ".").split(":");
      var total = 0;
      for (var i = 0; i < parts.length; i++) total = total * 60 + parseFloat(parts[i]);
      return total;
    }
    for (var i = 0; i < lines.length; i++) {
      var match = timing.exec(lines[i]);
      if (!match || i + 1 >= lines.length) continue;
      var target = lines[i + 1].trim();
      var hash = /#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(target);
      if (!hash) continue;
      found.push({
        start: seconds(match[1]),
        end: seconds(match[2]),
        url: new URL(target.slice(0, hash.index), base).href,
        x: +hash[1], y: +hash[2], w: +hash[3], h: +hash[4]
      });
    }
    return found;
  }

  if (scrubber) {
    scrubber.hidden = false;
    video.addEventListener("timeupdate", function () {
      var total = duration();
      var ratio = total ? video.currentTime / total : 0;
      if (fill) fill.style.width = (ratio * 100).toFixed(2) + "%";
      scrubber.setAttribute("aria-valuenow", Math.floor(video.currentTime));
      scrubber.setAttribute("aria-valuetext", clock(video.currentTime));
      var current = null;
      for (var i = 0; i < paragraphs.length; i++) {
        if (parseFloat(paragraphs[i].getAttribute("data-start")) <= video.currentTime + 0.25) {
          current = paragraphs[i];
        }
      }
      for (var j = 0; j < paragraphs.length; j++) {
        if (paragraphs[j] === current) paragraphs[j].setAttribute("aria-current", "true");
        else paragraphs[j].removeAttribute("aria-current");
      }
    });
    video.addEventListener("durationchange", function () {
      scrubber.setAttribute("aria-valuemax", Math.floor(duration()));
    });
    scrubber.addEventListener("pointermove", function (event) { showPreview(event.clientX); });
    scrubber.addEventListener("pointerenter", function (event) { showPreview(event.clientX); });
    scrubber.addEventListener("pointerleave", function () { if (preview) preview.hidden = true; });
    scrubber.addEventListener("click", function (event) { seek(timeAt(event.clientX).seconds, false); });
    scrubber.addEventListener("keydown", function (event) {
      var step = { ArrowLeft: -5, ArrowRight: 5, PageDown: -30, PageUp: 30 }[event.key];
      if (step) {
        event.preventDefault();
        seek(video.currentTime + step, false);
      }
    });
    var storyboardUrl = video.getAttribute("data-storyboard");
    if (storyboardUrl && window.fetch) {
      var absolute = new URL(storyboardUrl, document.baseURI).href;
      fetch(absolute)
        .then(function (response) { return response.ok ? response.text() : ""; })
        .then(function (text) {
          tiles = parseStoryboard(text, absolute);
          scrubber.setAttribute("data-storyboard-tiles", String(tiles.length));
        })
        .catch(function () {});
    }
  }
})();
