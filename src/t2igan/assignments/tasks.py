"""What a chapter declares: its tasks, each with checks (points) and planted mistakes (mutations)."""

from __future__ import annotations

import dataclasses
import types
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Check:
    """One graded property of a task.

    ``run(module)`` receives the module under test — the reference module with the student's regions of
    this task spliced in — and raises :class:`~t2igan.assignments.CheckFailed` (or any exception) when
    the property does not hold. ``hint`` is shown to the student when it fails.
    """

    name: str
    points: int
    run: Callable[[types.ModuleType], None]
    hint: str = ""


@dataclasses.dataclass(frozen=True)
class Mutation:
    """A typical mistake, planted by replacing ``old`` with ``new`` in the task's reference regions (``old``
    must occur exactly once there). A test plants each one and expects the grader to take points off."""

    name: str
    old: str
    new: str


@dataclasses.dataclass(frozen=True)
class Task:
    """A piece of the paper a student writes: one or more regions of one module.

    * ``module``: the dotted module that holds the regions (``chapters.ch4_dfgan_ratgan.model``).
    * ``stubs``: for each part named in a ``# BEGIN TASK <name> (<part>)`` marker, the text that replaces
      the reference lines in the student copy: the equation, the shapes, what to return.
    * ``hidden_files``: files (relative to the project root) left out of a student copy because they
      would give the solution away (golden tests of the same lines).
    * ``time_limit_s``: the checks of this task together, on a 2-core CPU, before the factor.
    """

    name: str
    title: str
    module: str
    stubs: dict[str, str]
    checks: tuple[Check, ...]
    mutations: tuple[Mutation, ...] = ()
    hidden_files: tuple[str, ...] = ()
    time_limit_s: float = 90.0
    week: str = ""

    @property
    def points(self) -> int:
        return sum(check.points for check in self.checks)

    @property
    def file(self) -> str:
        """The module's path relative to the project root."""
        return self.module.replace(".", "/") + ".py"


def check_tasks(tasks: list[Task]) -> None:
    """Declaration errors a chapter author should see at once (a test runs this for every chapter)."""
    names = [task.name for task in tasks]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise ValueError(f"task names must be unique; repeated: {', '.join(sorted(duplicates))}.")
    for task in tasks:
        if not task.name.isidentifier():
            raise ValueError(f"task name {task.name!r} must be a Python identifier (it appears in markers and TASKS=).")
        if not task.checks or any(check.points <= 0 for check in task.checks):
            raise ValueError(f"task {task.name}: every check needs points > 0, and a task at least one check.")
        check_names = [check.name for check in task.checks]
        if len(set(check_names)) != len(check_names):
            raise ValueError(f"task {task.name}: check names must be unique.")
