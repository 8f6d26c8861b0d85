"""The autograder: splice, run each task's checks in a worker process with a time limit, report.

The parent never imports TensorFlow or the student's code. It extracts the student's regions, writes one
job per task and starts a worker (``python -m chapters.chN_name.tasks worker …``) that splices each job's
regions into the reference module and runs the checks, writing one JSON line per result. A task that
exceeds its time limit, or a worker that dies (``sys.exit``, a segfault, memory), costs that task's
remaining checks; the parent starts a fresh worker for the tasks after it. A student's exception or NaN
is an ordinary failed check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import linecache
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import types

from t2igan.assignments import regions as regions_module
from t2igan.assignments.tasks import Task

#: Seconds a worker may take to start (import TensorFlow, split the CPU) before its first task.
STARTUP_LIMIT_S = 120.0


@dataclasses.dataclass
class Job:
    """One task to grade: the bodies of its regions, from a student's file (or a planted mutation)."""

    task: str
    bodies: list[list[str]]
    origin: str  # the student's file, for messages
    origin_lines: list[int]  # 1-based line of each region's BEGIN marker in that file
    first_failure_only: bool = False  # stop at the first failed check (a mutation test needs one)


@dataclasses.dataclass
class CheckResult:
    task: str
    check: str
    points: float
    max_points: float
    passed: bool
    message: str = ""
    hint: str = ""
    seconds: float = 0.0


# ------------------------------------------------------------------ the worker (TensorFlow side)
def build_module(root: str, task: Task, job: dict) -> types.ModuleType:
    """The reference module with the job's regions spliced in, as a fresh module (``sys.modules`` untouched)."""
    path = os.path.join(root, task.file)
    with open(path, encoding="utf-8") as handle:
        reference = handle.read()
    source = regions_module.replace_regions(reference, task.name, job["bodies"], task.file)
    filename = f"<{task.name}: {job['origin']} spliced into {task.file}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    module = types.ModuleType(task.module)
    module.__file__ = path
    module.__package__ = task.module.rpartition(".")[0]
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 — grading runs the student's code
    module.__grading_filename__ = filename
    module.__grading_regions__ = [(region.begin + 2, len(region.body)) for region in
                                  regions_module.task_regions(source, task.name, filename)]
    return module


def describe_exception(error: BaseException, module: types.ModuleType | None, job: dict, task: Task) -> str:
    """One line: what was raised, and where in the student's file when it came from their lines."""
    from t2igan.assignments.checks import CheckFailed

    text = str(error) if isinstance(error, CheckFailed) else f"{type(error).__name__}: {error}".strip()
    if isinstance(error, NotImplementedError) and regions_module.TODO in str(error):
        return "not implemented yet (the stub still raises NotImplementedError)."
    if len(text) > 600:
        text = text[:600] + " …"
    if module is not None:
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            if frame.filename != getattr(module, "__grading_filename__", None):
                continue
            for k, (first, count) in enumerate(module.__grading_regions__):
                if first <= frame.lineno < first + count:
                    line = job["origin_lines"][k] + 1 + frame.lineno - first
                    return f"{text} (raised at {job['origin']}:{line}: {frame.line})"
            break
    return text


def run_worker(root: str, tasks: list[Task], jobs_path: str, results_path: str) -> None:
    """Grade every job in ``jobs_path``, appending one JSON line per event to ``results_path``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    from t2igan.assignments.checks import seed_everything

    by_name = {task.name: task for task in tasks}
    with open(jobs_path, encoding="utf-8") as handle:
        jobs = json.load(handle)
    with open(results_path, "a", encoding="utf-8") as out:
        def emit(**event):
            out.write(json.dumps(event) + "\n")
            out.flush()

        for job in jobs:
            task = by_name[job["task"]]
            emit(event="start", job=job["id"])
            module, error = None, None
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    module = build_module(root, task, job)
            except BaseException as exception:  # noqa: BLE001 — a student's import-time error costs the task
                error = exception
            failed = False
            for check in task.checks:
                started = time.time()
                emit(event="check", job=job["id"], check=check.name)
                if failed and job.get("first_failure_only"):
                    emit(event="result", job=job["id"], check=check.name, passed=False,
                         message="not run: an earlier check failed", seconds=0.0)
                    continue
                failed = True  # until the check passes
                if module is None:
                    emit(event="result", job=job["id"], check=check.name, passed=False,
                         message=f"the module does not load with your code: {describe_exception(error, None, job, task)}",
                         seconds=0.0)
                    continue
                try:
                    seed_everything(0)
                    with contextlib.redirect_stdout(io.StringIO()):
                        check.run(module)
                    emit(event="result", job=job["id"], check=check.name, passed=True, message="",
                         seconds=time.time() - started)
                    failed = False
                except BaseException as exception:  # noqa: BLE001 — SystemExit and all: never the grader's end
                    emit(event="result", job=job["id"], check=check.name, passed=False,
                         message=describe_exception(exception, module, job, task), seconds=time.time() - started)
            emit(event="end", job=job["id"])


# ------------------------------------------------------------------ the parent
def grade_jobs(root: str, tasks_module: str, tasks: list[Task], jobs: list[Job], time_factor: float = 1.0,
               log=None) -> list[list[CheckResult]]:
    """Run ``jobs`` in worker processes; for each job, one :class:`CheckResult` per check of its task, in
    the task's order."""
    by_name = {task.name: task for task in tasks}
    results: dict[int, list[CheckResult]] = {i: [] for i in range(len(jobs))}
    pending = list(range(len(jobs)))
    with tempfile.TemporaryDirectory(prefix="t2igan-grade-") as scratch:
        attempt = 0
        while pending:
            attempt += 1
            jobs_path = os.path.join(scratch, f"jobs-{attempt}.json")
            results_path = os.path.join(scratch, f"results-{attempt}.jsonl")
            with open(jobs_path, "w", encoding="utf-8") as handle:
                json.dump([dict(id=i, **dataclasses.asdict(jobs[i])) for i in pending], handle)
            done, stopped_in = _run_one_worker(root, tasks_module, by_name, jobs, jobs_path, results_path, scratch,
                                               attempt, time_factor, results, log)
            pending = [i for i in pending if i not in done]
            if stopped_in is not None:
                pending.remove(stopped_in)
    ordered = []
    for i, job in enumerate(jobs):
        names = [check.name for check in by_name[job.task].checks]
        ordered.append(sorted(results[i], key=lambda r: names.index(r.check)))
    return ordered


def _run_one_worker(root, tasks_module, by_name, jobs, jobs_path, results_path, scratch, attempt, time_factor,
                    results, log):
    """One worker over the pending jobs; returns (finished job ids, the job it was stopped in or None)."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1",
                       PYTHONPATH=os.pathsep.join([root, os.path.join(root, "src"), os.environ.get("PYTHONPATH", "")]))
    log_path = os.path.join(scratch, f"worker-{attempt}.log")
    with open(log_path, "w", encoding="utf-8") as worker_log:
        process = subprocess.Popen([sys.executable, "-m", tasks_module, "worker", jobs_path, results_path], cwd=root,
                                   env=environment, stdout=worker_log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    started_at, current, current_check, seen, done = time.time(), None, None, 0, set()
    reported = {}  # job → checks with a result
    while True:
        events = _read_events(results_path, seen)
        seen += len(events)
        for event in events:
            if event["event"] == "start":
                current, started_at = event["job"], time.time()
                reported[current] = set()
            elif event["event"] == "check":
                current_check = event["check"]
            elif event["event"] == "result":
                task = by_name[jobs[event["job"]].task]
                check = next(c for c in task.checks if c.name == event["check"])
                result = CheckResult(task.name, check.name, check.points if event["passed"] else 0, check.points,
                                     event["passed"], event["message"], "" if event["passed"] else check.hint,
                                     event["seconds"])
                results[event["job"]].append(result)
                reported[event["job"]].add(check.name)
                if log:
                    log(result)
            elif event["event"] == "end":
                done.add(event["job"])
                current = None
        exit_code = process.poll()
        if exit_code is not None and not _read_events(results_path, seen):
            if current is None and len(done) == len(json.load(open(jobs_path, encoding="utf-8"))):
                return done, None
            reason = f"the grading process ended (exit code {exit_code}) during this check"
            return done, _fail_rest(current, jobs, by_name, reported, results, log, reason, current_check,
                                    _tail(log_path), jobs_path)
        if current is None:
            limit = STARTUP_LIMIT_S * max(1.0, time_factor)  # a short task limit must not starve the start-up
            if time.time() - started_at > limit:
                _stop(process)
                reason = f"the grader could not start within {limit:.0f} s"
                return done, _fail_rest(None, jobs, by_name, reported, results, log, reason, None, _tail(log_path),
                                        jobs_path)
        else:
            limit = by_name[jobs[current].task].time_limit_s * time_factor
            if time.time() - started_at > limit:
                _stop(process)
                reason = f"time limit: the task's checks took more than {limit:.0f} s (an endless loop?)"
                return done, _fail_rest(current, jobs, by_name, reported, results, log, reason, current_check, "",
                                        jobs_path)
        time.sleep(0.05)


def _read_events(path, skip):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    complete = [line for line in lines[skip:] if line.endswith("}")]
    return [json.loads(line) for line in complete]


def _fail_rest(current, jobs, by_name, reported, results, log, reason, current_check, tail, jobs_path):
    """Record every check of ``current`` without a result as failed; returns ``current`` (or the first
    pending job when the worker never started one)."""
    if current is None:
        with open(jobs_path, encoding="utf-8") as handle:
            pending = [job["id"] for job in json.load(handle) if job["id"] not in reported]
        if not pending:
            return None
        current = pending[0]
    task = by_name[jobs[current].task]
    for check in task.checks:
        if check.name in reported.get(current, set()):
            continue
        message = reason if check.name == current_check or current_check is None else f"not run: {reason}"
        if tail and check.name == current_check:
            message += f"; its last output: {tail}"
        result = CheckResult(task.name, check.name, 0, check.points, False, message, check.hint, 0.0)
        results[current].append(result)
        if log:
            log(result)
    return current


def _tail(path, characters=400):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read().strip()
    except OSError:
        return ""
    return " ".join(text[-characters:].split())


def _stop(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()


# ------------------------------------------------------------------ students' files → jobs
def student_file(student: str, task: Task) -> str | None:
    """Where a task's module is in a student's submission: the same path in a copy of the project, or a
    file of the same name at the top of the folder (a Gradescope upload), or ``student`` itself."""
    if os.path.isfile(student):
        if os.path.basename(student) == os.path.basename(task.file):
            return student
        with open(student, encoding="utf-8", errors="replace") as handle:  # a renamed file: its markers tell
            return student if f"# BEGIN TASK {task.name} (" in handle.read() else None
    for candidate in (os.path.join(student, task.file), os.path.join(student, os.path.basename(task.file))):
        if os.path.isfile(candidate):
            return candidate
    return None


def jobs_for_student(student: str, tasks: list[Task]) -> tuple[list[Job], dict[str, str]]:
    """(jobs, task → why it cannot be graded) for a student's folder or file."""
    jobs, problems = [], {}
    for task in tasks:
        path = student_file(student, task)
        if path is None:
            problems[task.name] = (f"{task.file} is not in the submission ({student}); hand in the project folder or "
                                   f"the file {os.path.basename(task.file)}.")
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        try:
            found = regions_module.task_regions(text, task.name, path)
        except ValueError as error:
            problems[task.name] = f"the task markers in the file are broken: {error}"
            continue
        expected = len(task.stubs)
        if len(found) != expected:
            problems[task.name] = (f"{path} has {len(found)} of the {expected} regions of task {task.name} "
                                   f"(# BEGIN TASK {task.name} (…) … # END TASK {task.name}); keep the markers of the "
                                   f"assignment copy and write your code between them.")
            continue
        jobs.append(Job(task.name, [list(region.body) for region in found], path,
                        [region.begin + 1 for region in found]))
    return jobs, problems


def unreachable(task: Task, reason: str) -> list[CheckResult]:
    return [CheckResult(task.name, check.name, 0, check.points, False, reason, "", 0.0) for check in task.checks]


# ------------------------------------------------------------------ reports
def report_lines(tasks: list[Task], results: list[CheckResult]) -> list[str]:
    lines = []
    for task in tasks:
        mine = [r for r in results if r.task == task.name]
        if not mine:
            continue
        score = sum(r.points for r in mine)
        lines.append(f"task {task.name} — {task.title}: {score:g} / {task.points}")
        for r in mine:
            mark = "ok  " if r.passed else "FAIL"
            lines.append(f"  {mark} {r.check} ({r.points:g} / {r.max_points:g}, {r.seconds:.1f} s)")
            if not r.passed:
                lines.append(f"       {r.message}")
                if r.hint:
                    lines.append(f"       hint: {r.hint}")
    return lines


def gradescope_results(chapter: int, tasks: list[Task], results: list[CheckResult], seconds: float,
                       summary: str) -> dict:
    """Gradescope's autograder ``results.json`` (https://gradescope-autograders.readthedocs.io/en/latest/specs/):
    one test per check, its score and max_score, status, output and visibility."""
    index = {task.name: k + 1 for k, task in enumerate(tasks)}
    titles = {task.name: task.title for task in tasks}
    tests = []
    for r in results:
        check_number = [c.name for c in next(t for t in tasks if t.name == r.task).checks].index(r.check) + 1
        output = "passed" if r.passed else r.message + (f"\nHint: {r.hint}" if r.hint else "")
        tests.append(dict(name=f"{r.task} ({titles[r.task]}): {r.check}", number=f"{chapter}.{index[r.task]}.{check_number}",
                          score=float(r.points), max_score=float(r.max_points),
                          status="passed" if r.passed else "failed", output=output, output_format="text",
                          visibility="visible", tags=[f"chapter{chapter}", r.task]))
    return dict(score=float(sum(r.points for r in results)), execution_time=round(seconds, 1), output=summary,
                output_format="text", visibility="visible", stdout_visibility="hidden", tests=tests)
