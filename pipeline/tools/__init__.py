"""Outside programs and libraries, each behind one module: ffmpeg and ffprobe
(:mod:`ffmpeg_tools`), yt-dlp (:mod:`ytdlp`), faster-whisper (:mod:`asr`) and its offline model
(:mod:`speech_models`), Pillow and BlurHash (:mod:`images`). No other module imports them.
"""
