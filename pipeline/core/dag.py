"""The DAG type: stages and their requirements, in an order both executors follow.

The DAG Recast runs is declared once, as :func:`pipeline.stages.default_dag`; the local and the
distributed executor run that declaration.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from pipeline.core.stage import Stage


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
