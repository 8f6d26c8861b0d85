"""Course assignments: solution regions in the reference code, student copies, and an autograder.

The reference implementation is the one source of truth. A chapter marks the paper's key pieces with

    # BEGIN TASK <task> (<part>)
    ...the reference lines...
    # END TASK <task>

inside function bodies (:mod:`t2igan.assignments.regions`). ``make assignment`` writes the whole project
with each chosen region replaced by a stub that states the task and raises ``NotImplementedError``
marked ``TODO(student)``; the markers stay, so the student writes between them. ``make grade`` splices
the student's regions, one task at a time, into the reference module and runs that task's checks in a
worker process with a time limit (:mod:`t2igan.assignments.grader`): every other line is the
reference's, so a mistake in one task never costs points in another.

A chapter declares its tasks in ``chapters/chN_name/tasks.py`` with :class:`Task`, :class:`Check` and
:class:`Mutation`. Checks compare against values computed *independently of the reference code* (NumPy,
or a float64 TensorFlow transcription of the equation written in the check), so the same checks, run on
the reference in ``make test``, also catch a bug planted in the reference. Each task lists typical
mistakes as mutations of its reference lines; a test plants every one and expects points lost.
"""

from __future__ import annotations

from t2igan.assignments.checks import (CheckFailed, assert_close, assert_shape, first_replica_device_count,
                                       numerical_gradient, relative_error, seed_everything, two_replicas)
from t2igan.assignments.tasks import Check, Mutation, Task

__all__ = ["Check", "CheckFailed", "Mutation", "Task", "assert_close", "assert_shape", "first_replica_device_count",
           "numerical_gradient", "relative_error", "seed_everything", "two_replicas"]
