"""Publishing: the card, its pages and JSON-LD, the event index, storage writes and webhooks.

Modules:

- :mod:`~pipeline.stages.publish`: the ``publish`` and ``publish_playable`` stages;
- :mod:`~pipeline.publish.publisher`: publishing from stage outputs; the executors' publisher
  (preview card, ``job.failed``);
- :mod:`~pipeline.publish.assemble`: the card and its files from the stages' assets by role;
- :mod:`~pipeline.publish.writer`: writes a card atomically to readers; removes unused files;
- :mod:`~pipeline.publish.html`, :mod:`~pipeline.publish.jsonld`,
  :mod:`~pipeline.publish.oembed`, :mod:`~pipeline.publish.paragraphs`,
  :mod:`~pipeline.publish.static`: card.html, watch.html, JSON-LD, oEmbed, transcript
  paragraphs, and the scripts the pages load;
- :mod:`~pipeline.publish.events`: ``events/<slug>.json``;
- :mod:`~pipeline.publish.webhooks`, :mod:`~pipeline.publish.signature`: signed webhooks with a
  durable outbox, and :func:`verify_signature` for receivers.
"""

from __future__ import annotations

from pipeline.publish.signature import sign, verify_signature

__all__ = ["sign", "verify_signature"]
