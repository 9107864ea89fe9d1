/* Recast watch page: HLS through hls.js (or the browser's own HLS), else the MP4 sources;
   storyboard previews on the scrub bar; transcript paragraphs and chapter links seek the player
   in place; the page starts at ?t= (or #t=) SECONDS, 1:30 or 1m30s: the key moments' links.
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

  /* A time as links write it: 90, 90.5, 1:30, 1:02:03, 90s, 1m30s, 1h2m3s (NaN otherwise). */
  function parseTime(value) {
    var text = String(value == null ? "" : value).trim().toLowerCase();
    if (/^\d+(\.\d+)?$/.test(text)) return parseFloat(text);
    if (/^\d+(:\d{1,2}){1,2}(\.\d+)?$/.test(text)) {
      var parts = text.split(":");
      var total = 0;
      for (var i = 0; i < parts.length; i++) total = total * 60 + parseFloat(parts[i]);
      return total;
    }
    var units = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(text);
    if (units && (units[1] || units[2] || units[3])) {
      return (+units[1] || 0) * 3600 + (+units[2] || 0) * 60 + (parseFloat(units[3]) || 0);
    }
    return NaN;
  }

  /* The t= of a query or fragment, decoded ("" when absent or malformed). */
  function timeParameter(part) {
    var match = /(?:^[?#]|&)t=([^&]*)/.exec(part);
    try {
      return match ? decodeURIComponent(match[1]) : "";
    } catch (error) {
      return "";
    }
  }

  /* Where the address asks playback to start: #t= first (the more specific), then ?t=. */
  function requestedTime() {
    var seconds = parseTime(timeParameter(location.hash));
    if (!isFinite(seconds)) seconds = parseTime(timeParameter(location.search));
    return isFinite(seconds) && seconds >= 0 ? seconds : NaN;
  }

  var startAt = requestedTime();
  if (isFinite(startAt) && video.preload === "none") video.preload = "metadata";

  var hlsUrl = video.getAttribute("data-hls");
  if (hlsUrl && window.Hls && window.Hls.isSupported()) {
    var hls = new window.Hls({
      capLevelToPlayerSize: true,
      startPosition: isFinite(startAt) ? startAt : -1
    });
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

  /* ?t=90 or #t=1:30 in the page's address: the player is positioned there once it knows the
     media (hls.js starts loading there), so pressing play plays from there. A #t= set later
     (a shared link followed within the page) seeks and plays. */
  function seekToRequested() {
    if (isFinite(startAt) && Math.abs(video.currentTime - startAt) > 0.25) seek(startAt, false);
  }
  window.addEventListener("hashchange", function () {
    startAt = requestedTime();
    if (isFinite(startAt)) seek(startAt, true);
  });
  if (video.readyState >= 1) seekToRequested();
  else video.addEventListener("loadedmetadata", seekToRequested, { once: true });

  /* A plain click on a link to a time on this page (a chapter, a transcript time) seeks in
     place; the link still works without script, and opens elsewhere with a modifier key. */
  function plainClick(event) {
    return event.button === 0 && !event.metaKey && !event.ctrlKey && !event.shiftKey && !event.altKey;
  }

  /* Chapters: a click seeks to the chapter; the one playing is marked. */
  var chapterList = document.querySelector("[data-recast-chapters]");
  var chapterLinks = chapterList ? chapterList.querySelectorAll("a[data-start]") : [];
  if (chapterList) {
    chapterList.addEventListener("click", function (event) {
      var link = event.target && event.target.closest ? event.target.closest("a[data-start]") : null;
      if (!link || !chapterList.contains(link) || !plainClick(event)) return;
      event.preventDefault();
      seek(parseFloat(link.getAttribute("data-start")), true);
      video.scrollIntoView({ block: "nearest" });
    });
  }

  /* Marks, among elements carrying data-start in time order, the last one already begun. */
  function markCurrent(items) {
    var current = null;
    for (var i = 0; i < items.length; i++) {
      if (parseFloat(items[i].getAttribute("data-start")) <= video.currentTime + 0.25) {
        current = items[i];
      }
    }
    for (var j = 0; j < items.length; j++) {
      if (items[j] === current) items[j].setAttribute("aria-current", "true");
      else items[j].removeAttribute("aria-current");
    }
  }

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
      if (event.target.closest && event.target.closest("a") && !plainClick(event)) return;
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

  video.addEventListener("timeupdate", function () {
    markCurrent(chapterLinks);
    markCurrent(paragraphs);
  });

  if (scrubber) {
    scrubber.hidden = false;
    video.addEventListener("timeupdate", function () {
      var total = duration();
      var ratio = total ? video.currentTime / total : 0;
      if (fill) fill.style.width = (ratio * 100).toFixed(2) + "%";
      scrubber.setAttribute("aria-valuenow", Math.floor(video.currentTime));
      scrubber.setAttribute("aria-valuetext", clock(video.currentTime));
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

  /* The vertical (9:16) cut: its link swaps the main player for a player of its own, at the
     same time (both cover the same span), and back. Without script the link opens the MP4. */
  var verticalToggle = document.querySelector("[data-recast-vertical-toggle]");
  var verticalFigure = document.querySelector("[data-recast-vertical]");
  var vertical = verticalFigure && verticalFigure.querySelector("video");
  var mainFigure = video.closest("figure");
  if (verticalToggle && vertical && mainFigure) {
    var toVertical = verticalToggle.textContent;
    var toMain = verticalToggle.getAttribute("data-label-back") || toVertical;
    verticalToggle.setAttribute("role", "button");
    verticalToggle.setAttribute("aria-pressed", "false");
    verticalToggle.addEventListener("click", function (event) {
      event.preventDefault();
      var showVertical = verticalFigure.hidden;
      var from = showVertical ? video : vertical;
      var to = showVertical ? vertical : video;
      var playing = !from.paused && !from.ended;
      var at = from.currentTime;
      from.pause();
      mainFigure.hidden = showVertical;
      verticalFigure.hidden = !showVertical;
      to.muted = from.muted;
      to.volume = from.volume;
      if (to.preload === "none") to.preload = "metadata";
      if (at > 0) {
        if (to.readyState >= 1) to.currentTime = at;
        else to.addEventListener("loadedmetadata", function () { to.currentTime = at; }, { once: true });
      }
      if (playing) {
        var started = to.play();
        if (started && started.catch) started.catch(function () {});
      }
      verticalToggle.setAttribute("aria-pressed", showVertical ? "true" : "false");
      verticalToggle.textContent = showVertical ? toMain : toVertical;
      root.setAttribute("data-view", showVertical ? "vertical" : "main");
    });
  }
})();
