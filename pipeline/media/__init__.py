"""Media logic without side effects worth naming: rendition ladders, HLS playlists, caption
parsing, cue building and caption writers, storyboard layout, transcript text. Pure functions
over typed values (a few read or write the files they are given).
"""
