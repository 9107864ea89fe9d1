"""The stages of a job, one module each, and :func:`default_dag`, the DAG Recast runs.

    ingest ──► probe ──┬─► playable ──► publish_playable
                       ├─► transcode ──┐
                       ├─► thumbnails ─┼─► publish
                       └─► transcript ─┤
                             ├─► chapters ┤ (the source's, else from the transcript)
                             └─► social ──┘ (the 9:16 cut: skipped unless options.social)

Each stage module exposes its :class:`~pipeline.core.stage.Stage` and reads other stages'
outputs only through :mod:`pipeline.core.readers`, never by importing another stage.
"""

from __future__ import annotations

from pipeline.core.dag import Dag


def default_dag() -> Dag:
    """The stages Recast runs for every job."""
    from pipeline.stages.chapters import STAGE as chapters
    from pipeline.stages.ingest import STAGE as ingest
    from pipeline.stages.playable import STAGE as playable
    from pipeline.stages.probe import STAGE as probe
    from pipeline.stages.publish import PUBLISH as publish
    from pipeline.stages.publish import PUBLISH_PLAYABLE as publish_playable
    from pipeline.stages.social import STAGE as social
    from pipeline.stages.thumbnails import STAGE as thumbnails
    from pipeline.stages.transcode import STAGE as transcode
    from pipeline.stages.transcript import STAGE as transcript

    return Dag.of(
        [
            ingest,
            probe,
            playable,
            transcode,
            thumbnails,
            transcript,
            chapters,
            social,
            publish_playable,
            publish,
        ]
    )
