"""The job's DAG, declared once; both executors (local and Celery) run this declaration.

    ingest ──► probe ──┬─► transcode ──┐
                       ├─► thumbnails ─┼─► publish
                       └─► transcript ─┘

Stages that are not built yet are simply absent; a requirement on an absent stage is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from pipeline.stage import Stage


@dataclass(frozen=True)
class Dag:
    stages: tuple[Stage, ...]

    @classmethod
    def of(cls, stages: Sequence[Stage]) -> Dag:
        names = {stage.name for stage in stages}
        if len(names) != len(stages):
            raise ValueError("stage names must be unique")
        pruned = tuple(
            replace(stage, requires=tuple(r for r in stage.requires if r in names))
            for stage in stages
        )
        dag = cls(pruned)
        dag.topological_order()  # raises on a cycle
        return dag

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    def __getitem__(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def dependents(self, name: str) -> list[str]:
        """Every stage that needs ``name``, directly or not."""
        found: list[str] = []
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for stage in self.stages:
                if current in stage.requires and stage.name not in found:
                    found.append(stage.name)
                    frontier.append(stage.name)
        return found

    def topological_order(self) -> list[str]:
        done: list[str] = []
        remaining = {stage.name: set(stage.requires) for stage in self.stages}
        while remaining:
            ready = sorted(name for name, reqs in remaining.items() if reqs <= set(done))
            if not ready:
                raise ValueError(f"the DAG has a cycle among {sorted(remaining)}")
            for name in ready:
                done.append(name)
                del remaining[name]
        return done


def default_dag() -> Dag:
    """The stages Recast runs for every job."""
    from pipeline.ingest import STAGE as ingest
    from pipeline.playable import STAGE as playable
    from pipeline.probe import STAGE as probe
    from pipeline.publish.stage import PUBLISH as publish
    from pipeline.publish.stage import PUBLISH_PLAYABLE as publish_playable
    from pipeline.thumbnails import STAGE as thumbnails
    from pipeline.transcode import STAGE as transcode
    from pipeline.transcript import STAGE as transcript

    return Dag.of(
        [ingest, probe, playable, transcode, thumbnails, transcript, publish_playable, publish]
    )
