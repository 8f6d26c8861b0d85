"""``python -m chapters.chN_name.tasks {list,assignment,grade,mutations}``: what ``make assignment`` and
``make grade`` run. A chapter's ``tasks.py`` ends with ``main(TASKS, chapter=N, tasks_file=__file__)``."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time

from t2igan.assignments import grader
from t2igan.assignments import regions as regions_module
from t2igan.assignments.tasks import Task, check_tasks

#: Lines too generic to count as giving a solution away when they appear elsewhere in a copy.
GENERIC_LINE = r"^(return|pass|else:|try:|[)\]}],?:?|[)\]}]\)?,?|return \w+|\w+ = \[\]|\"\"\"|#.*)$"


def project_root(tasks_file: str) -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(tasks_file))))


def choose(tasks: list[Task], names: str | None) -> list[Task]:
    if not names:
        return list(tasks)
    by_name = {task.name: task for task in tasks}
    chosen = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        if name not in by_name:
            close = difflib.get_close_matches(name, by_name, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ValueError(f"TASKS: no task {name!r} in this chapter.{hint} Its tasks: {', '.join(by_name)}.")
        chosen.append(by_name[name])
    return chosen


def reference_regions(root: str, task: Task):
    with open(os.path.join(root, task.file), encoding="utf-8") as handle:
        return regions_module.task_regions(handle.read(), task.name, task.file)


def check_declarations(root: str, tasks: list[Task]) -> None:
    """Every task's regions exist in its module, one stub per part, and every mutation applies once."""
    check_tasks(tasks)
    for task in tasks:
        found = reference_regions(root, task)
        parts = [region.part for region in found]
        if not found:
            raise ValueError(f"task {task.name}: no '# BEGIN TASK {task.name} (…)' region in {task.file}.")
        if sorted(parts) != sorted(task.stubs):
            raise ValueError(f"task {task.name}: the regions in {task.file} are {parts}, the stubs {list(task.stubs)}.")
        for mutation in task.mutations:
            mutated_bodies(found, mutation, task)


def mutated_bodies(found, mutation, task) -> list[list[str]]:
    separator = "\0REGION\0"
    joined = separator.join("".join(region.body) for region in found)
    if joined.count(mutation.old) != 1:
        raise ValueError(f"task {task.name}, mutation {mutation.name!r}: {mutation.old!r} occurs "
                         f"{joined.count(mutation.old)} times in the task's regions; it must occur once.")
    return [body.splitlines(keepends=True) for body in joined.replace(mutation.old, mutation.new).split(separator)]


# ------------------------------------------------------------------ make assignment
def write_assignment(root: str, chapter: int, tasks: list[Task], chosen: list[Task], out: str) -> list[str]:
    """The student copy in ``out``: the project, less the graders and the hidden files, with each chosen
    task's regions stubbed out; returns the copied files."""
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ValueError(f"OUT={out} exists and is not an empty folder; name a new folder (nothing is overwritten).")
    hidden = tuple(path for task in tasks for path in task.hidden_files)
    files = regions_module.copy_project(root, out, hidden)
    chosen_names = {task.name for task in chosen}
    for path in sorted({task.file for task in chosen}):
        target = os.path.join(out, path)
        with open(target, encoding="utf-8") as handle:
            text = handle.read()
        for task in (t for t in chosen if t.file == path):
            found = regions_module.task_regions(text, task.name, path)
            stubs = [regions_module.stub_lines(region, task.stubs[region.part], task.title, path) for region in found]
            text = regions_module.replace_regions(text, task.name, stubs, path)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)
    for path in files:  # the markers of tasks not handed out go: the copy reads as plain code there
        if not path.endswith(".py"):
            continue
        target = os.path.join(out, path)
        with open(target, encoding="utf-8") as handle:
            lines = handle.readlines()
        kept = [line for line in lines if not _foreign_marker(line, chosen_names)]
        if len(kept) != len(lines):
            with open(target, "w", encoding="utf-8") as handle:
                handle.writelines(kept)
    with open(os.path.join(out, ".assignment.json"), "w", encoding="utf-8") as handle:
        json.dump(dict(chapter=chapter, tasks=[task.name for task in chosen]), handle, indent=1)
    with open(os.path.join(out, "ASSIGNMENT.md"), "w", encoding="utf-8") as handle:
        handle.write(assignment_text(chapter, chosen))
    leaks = leaked(root, out, chosen)
    if leaks:
        task, path, line = leaks[0]
        raise RuntimeError(f"the student copy would contain solution line {line!r} of task {task} (in {path}); "
                           f"{len(leaks)} such lines in all. This is a bug of the project's task declarations.")
    return files


def _foreign_marker(line: str, chosen: set[str]) -> bool:
    match = regions_module.BEGIN.match(line) or regions_module.END.match(line)
    return bool(match) and match["task"] not in chosen


def leaked(root: str, out: str, chosen: list[Task]) -> list[tuple[str, str, str]]:
    """Solution lines of the chosen tasks found in the student copy. A line that the reference also has
    outside every task region (``with tf.GradientTape() as tape:``) cannot be kept out; it is let through
    when it is short (≤ 40 characters), so a later chapter that repeats a task's logic is still caught."""
    import re

    generic = re.compile(GENERIC_LINE)
    outside = lines_outside_regions(root)
    solutions = {task.name: {line for line in regions_module.solution_lines(reference_regions(root, task))
                             if not generic.match(line) and (line not in outside or len(line) > 40)}
                 for task in chosen}
    return regions_module.leaked_lines(out, solutions, regions_module.project_files(out))


def lines_outside_regions(root: str) -> set[str]:
    """The stripped lines of the reference's Python files that lie outside every task region."""
    found = set()
    for path in regions_module.project_files(root):
        if not path.endswith(".py") or regions_module.is_hidden(path, ()):
            continue
        with open(os.path.join(root, path), encoding="utf-8") as handle:
            text = handle.read()
        lines = text.splitlines()
        inside = set()
        try:
            found_regions = regions_module.find_regions(text, path)
        except ValueError:  # a file that only mentions the markers (this package's docstrings)
            found_regions = []
        for region in found_regions:
            inside.update(range(region.begin, region.end + 1))
        found.update(line.strip() for k, line in enumerate(lines) if k not in inside)
    return found


def assignment_text(chapter: int, chosen: list[Task]) -> str:
    lines = [f"# Chapter {chapter} assignment", "",
             "Write the code of each task between its `# BEGIN TASK` and `# END TASK` markers (keep the markers:",
             "the grader finds your code by them). Each stub states the equation, the shapes and what to return,",
             "and raises `NotImplementedError` until you replace it. Everything else in this copy is the reference",
             "implementation and runs as it is; a command that needs a missing piece stops with that task's message.",
             "", "| task | what | points | file |", "|---|---|---|---|"]
    lines += [f"| `{task.name}` | {task.title} | {task.points} | `{task.file}` |" for task in chosen]
    lines += ["", f"Try your code with `make chapter{chapter}-train PROFILE=smoke` and the chapter README's exercises.",
              "Your instructor grades it with `make grade`; the grader's checks compare your functions with the",
              "paper's equations on fixed inputs and weights (values and gradients), and test properties such as",
              "masking, `tf.function` and two replicas.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ make grade
def grade(root: str, tasks_module: str, chapter: int, tasks: list[Task], student: str, results_path: str | None,
          time_factor: float, quiet: bool = False) -> tuple[float, int]:
    if not os.path.exists(student):
        raise ValueError(f"STUDENT={student} does not exist; name the student's copy (a folder) or one file.")
    marker = os.path.join(student, ".assignment.json") if os.path.isdir(student) else None
    if marker and os.path.isfile(marker):
        with open(marker, encoding="utf-8") as handle:
            handed_out = json.load(handle)
        if handed_out.get("chapter") != chapter:
            raise ValueError(f"{student} is a chapter {handed_out.get('chapter')} assignment; grade it with "
                             f"CHAPTER={handed_out.get('chapter')}.")
        names = set(handed_out.get("tasks", []))
        tasks = [task for task in tasks if task.name in names] or tasks
    elif os.path.isfile(student):
        present = [task for task in tasks if grader.student_file(student, task)]
        if not present:
            raise ValueError(f"{student} holds no task of chapter {chapter}; its tasks are in "
                             f"{', '.join(sorted({t.file for t in tasks}))}.")
        tasks = present
    started = time.time()
    say = (lambda *a: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    say(f"grading chapter {chapter}: {', '.join(task.name for task in tasks)} ({student})")
    jobs, problems = grader.jobs_for_student(student, tasks)
    results = [r for task in tasks if task.name in problems for r in grader.unreachable(task, problems[task.name])]
    for graded in grader.grade_jobs(root, tasks_module, tasks, jobs, time_factor,
                                    log=lambda r: say(f"  {'ok  ' if r.passed else 'FAIL'} {r.task}: {r.check}")):
        results += graded
    order = [task.name for task in tasks]
    results.sort(key=lambda r: order.index(r.task))
    score, total = sum(r.points for r in results), sum(task.points for task in tasks)
    seconds = time.time() - started
    lines = grader.report_lines(tasks, results)
    summary = f"chapter {chapter}: {score:g} / {total} points in {seconds:.0f} s"
    if results_path is None:
        results_path = os.path.join(student if os.path.isdir(student) else os.path.dirname(os.path.abspath(student)),
                                    "results.json")
    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    with open(results_path, "w", encoding="utf-8") as handle:
        json.dump(grader.gradescope_results(chapter, tasks, results, seconds, "\n".join(lines + [summary])), handle,
                  indent=1)
    if not quiet:
        print("\n".join(lines))
        print(f"results.json: {results_path}")
        print(f"score: {score:g} / {total}")
    return score, total


# ------------------------------------------------------------------ mutation score
def mutation_score(root: str, tasks_module: str, tasks: list[Task], time_factor: float = 1.0,
                   first_failure_only: bool = False):
    """Plant every task's mutations in the reference and grade them: rows (task, mutation, lost points,
    results). ``first_failure_only``: a mutation's grading stops at its first failed check (caught is
    all a test needs; the table then shows the points of the checks that ran)."""
    jobs, rows = [], []
    for task in tasks:
        found = reference_regions(root, task)
        jobs.append(grader.Job(task.name, [list(r.body) for r in found], f"reference {task.file}",
                               [r.begin + 1 for r in found]))
        for mutation in task.mutations:
            jobs.append(grader.Job(task.name, mutated_bodies(found, mutation, task), f"{task.file} with {mutation.name}",
                                   [r.begin + 1 for r in found], first_failure_only))
    results = grader.grade_jobs(root, tasks_module, tasks, jobs, time_factor)  # one worker, per-job results
    index = 0
    for task in tasks:
        reference = results[index]
        index += 1
        rows.append((task.name, "(reference)", task.points - sum(r.points for r in reference), reference))
        for mutation in task.mutations:
            graded = results[index]
            index += 1
            rows.append((task.name, mutation.name, task.points - sum(r.points for r in graded), graded))
    return rows


def mutation_score_of_tests(root: str, tasks: list[Task], pytest_arguments: list[str], timeout_s: float = 900.0):
    """Plant every mutation in a scratch copy of the project and run pytest there: rows (task, mutation,
    caught, seconds). The number for the project's own tests, beside the grader's."""
    import subprocess
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory(prefix="t2igan-mutants-") as scratch:
        copy = os.path.join(scratch, "project")
        regions_module.copy_project(root, copy, (), everything=True)  # the graders and their tests too
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                           PYTHONPATH=os.pathsep.join([os.path.join(copy, "src"), copy]))
        command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *pytest_arguments]
        control = subprocess.run(command, cwd=copy, env=environment, capture_output=True, text=True, timeout=timeout_s)
        if control.returncode != 0:  # a red suite would count every mutation as caught
            raise RuntimeError(f"pytest {' '.join(pytest_arguments)} fails on the unmutated project; fix that first: "
                               f"{control.stdout[-800:]}")
        for task in tasks:
            path = os.path.join(copy, task.file)
            with open(path, encoding="utf-8") as handle:
                original = handle.read()
            found = regions_module.task_regions(original, task.name, task.file)
            for mutation in task.mutations:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(regions_module.replace_regions(original, task.name,
                                                                mutated_bodies(found, mutation, task), task.file))
                started = time.time()
                try:
                    finished = subprocess.run(command, cwd=copy, env=environment, capture_output=True, text=True,
                                              timeout=timeout_s)
                    caught = finished.returncode != 0
                except subprocess.TimeoutExpired:
                    caught = True
                rows.append((task.name, mutation.name, caught, time.time() - started))
                print(f"{task.name:<22} {mutation.name:<44} {'caught' if caught else 'MISSED'} "
                      f"({rows[-1][3]:.0f} s)", flush=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(original)
    return rows


def main(tasks: list[Task], chapter: int, tasks_file: str) -> None:
    root = project_root(tasks_file)
    tasks_module = os.path.relpath(os.path.abspath(tasks_file), root)[:-3].replace(os.sep, ".")
    parser = argparse.ArgumentParser(prog=f"python -m {tasks_module}", description=f"Chapter {chapter} assignments.")
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the tasks, their points and parts")
    handout = commands.add_parser("assignment", help="write a student copy (make assignment)")
    handout.add_argument("--out", required=True, help="a new folder for the student copy")
    handout.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    grading = commands.add_parser("grade", help="grade a student copy or file (make grade)")
    grading.add_argument("--student", required=True, help="the student's copy (folder) or one file")
    grading.add_argument("--tasks", default="", help="only these tasks (default: those handed out)")
    grading.add_argument("--results", default=None, help="where results.json goes (default: in the student folder)")
    grading.add_argument("--time_factor", type=float, default=float(os.environ.get("T2IGAN_GRADER_TIME_FACTOR", 1)),
                         help="multiply every time limit (a slow or busy machine)")
    mutants = commands.add_parser("mutations", help="plant every listed mistake in the reference and grade it")
    mutants.add_argument("--tasks", default="")
    mutants.add_argument("--time_factor", type=float, default=float(os.environ.get("T2IGAN_GRADER_TIME_FACTOR", 1)))
    mutants.add_argument("--pytest", default="", help="instead of the grader, run pytest with these arguments on each "
                         "mutated copy (e.g. --pytest tests/test_chapter04_model.py): the project tests' mutation score")
    worker = commands.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("jobs")
    worker.add_argument("results")
    arguments = parser.parse_args()
    try:
        if arguments.command == "worker":
            grader.run_worker(root, tasks, arguments.jobs, arguments.results)
            return
        check_declarations(root, tasks)
        if arguments.command == "list":
            for task in tasks:
                parts = ", ".join(task.stubs)
                print(f"{task.name:<22} {task.points:>3} points  {task.title}  [{task.file}: {parts}]")
                for check in task.checks:
                    print(f"    {check.points:>2}  {check.name}")
            print(f"total: {sum(task.points for task in tasks)} points")
        elif arguments.command == "assignment":
            chosen = choose(tasks, arguments.tasks)
            write_assignment(root, chapter, tasks, chosen, arguments.out)
            print(f"wrote the chapter {chapter} assignment ({', '.join(t.name for t in chosen)}) to {arguments.out}; "
                  f"its ASSIGNMENT.md says what to do.")
        elif arguments.command == "grade":
            selected = choose(tasks, arguments.tasks) if arguments.tasks else tasks
            grade(root, tasks_module, chapter, selected, arguments.student, arguments.results, arguments.time_factor)
        elif arguments.command == "mutations" and arguments.pytest:
            import shlex

            rows = mutation_score_of_tests(root, choose(tasks, arguments.tasks), shlex.split(arguments.pytest))
            print(f"mutation score of pytest {arguments.pytest}: {sum(r[2] for r in rows)} / {len(rows)} planted bugs caught")
        elif arguments.command == "mutations":
            rows = mutation_score(root, tasks_module, choose(tasks, arguments.tasks), arguments.time_factor)
            caught = sum(1 for task, name, lost, _ in rows if name != "(reference)" and lost > 0)
            planted = sum(1 for _, name, _, _ in rows if name != "(reference)")
            for task, name, lost, graded in rows:
                failed = ", ".join(r.check for r in graded if not r.passed) or "-"
                print(f"{task:<22} {name:<40} points lost {lost:>3g}   failed: {failed}")
            print(f"mutation score: {caught} / {planted} planted bugs caught")
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        if arguments.traceback:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
