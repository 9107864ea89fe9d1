"""The DAG type: stages and their requirements, in an order both executors follow.

The DAG Recast runs is declared once, as :func:`pipeline.stages.default_dag`; the local and the
distributed executor run that declaration.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pipeline.core.stage import Stage


@dataclass(frozen=True)
class Dag:
    stages: tuple[Stage, ...]

    @classmethod
    def of(cls, stages: Sequence[Stage]) -> Dag:
        """The DAG of ``stages``; ValueError on a repeated name, a requirement that is not
        among them, or a cycle."""
        names = {stage.name for stage in stages}
        if len(names) != len(stages):
            raise ValueError("stage names must be unique")
        for stage in stages:
            missing = [r for r in stage.requires if r not in names]
            if missing:
                raise ValueError(
                    f"stage {stage.name!r} requires {', '.join(map(repr, missing))}, "
                    "which is not in the DAG"
                )
        dag = cls(tuple(stages))
        dag.topological_order()  # raises on a cycle
        return dag

    def only(self, *names: str) -> Dag:
        """The named stages of this DAG, to run part of a job (tests, benchmarks). Every stage
        a kept one requires must be kept too: ValueError otherwise, as :meth:`of` refuses."""
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise ValueError(f"no stage {', '.join(map(repr, unknown))} in the DAG")
        return Dag.of([stage for stage in self.stages if stage.name in names])

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
