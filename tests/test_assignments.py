"""Course assignments: every chapter's tasks, its student copy and its grader.

For each chapter with a ``tasks.py``: the reference gets full points, every planted mistake loses points
(one row per mutation), a fresh student copy gets 0 and contains no solution line, its smoke training
stops with the task's message, and ``results.json`` has Gradescope's fields. The grader's robustness
(an endless loop, a process exit, NaN, a syntax error, missing markers) is checked once, on chapter 4.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, time_limit
from t2igan.assignments import cli as assignment_cli
from t2igan.assignments import grader, regions

CHAPTERS = {int(name[2]): name for name in sorted(os.listdir(os.path.join(ROOT, "chapters")))
            if name.startswith("ch") and os.path.isfile(os.path.join(ROOT, "chapters", name, "tasks.py"))}
TIME_FACTOR = time_limit(1.0)


def tasks_of(chapter):
    return importlib.import_module(f"chapters.{CHAPTERS[chapter]}.tasks").TASKS


def run_tasks_command(chapter, *arguments, cwd=ROOT, seconds=120):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                       PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), ROOT]))
    return subprocess.run([sys.executable, "-m", f"chapters.{CHAPTERS[chapter]}.tasks", *arguments], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=time_limit(seconds))


# ------------------------------------------------------------------ Gradescope's results.json
#: The fields Gradescope's autograder specification documents (gradescope-autograders.readthedocs.io, "specs").
TOP_LEVEL = {"score": (int, float), "execution_time": (int, float), "output": str, "output_format": str,
             "test_output_format": str, "test_name_format": str, "visibility": str, "stdout_visibility": str,
             "extra_data": dict, "tests": list, "leaderboard": list}
TEST_FIELDS = {"score": (int, float), "max_score": (int, float), "status": str, "name": str, "name_format": str,
               "number": str, "output": str, "output_format": str, "tags": list, "visibility": str,
               "extra_data": dict}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}


def gradescope_problems(results: dict) -> list[str]:
    problems = []
    for key, value in results.items():
        if key not in TOP_LEVEL:
            problems.append(f"unknown top-level field {key!r}")
        elif not isinstance(value, TOP_LEVEL[key]):
            problems.append(f"{key} has type {type(value).__name__}")
    if "score" not in results and not all("score" in test for test in results.get("tests", [])):
        problems.append("a score is needed at the top or on every test")
    for field in ("visibility", "stdout_visibility"):
        if field in results and results[field] not in VISIBILITY:
            problems.append(f"{field}={results[field]!r}")
    if results.get("output_format", "text") not in FORMATS:
        problems.append(f"output_format={results['output_format']!r}")
    for k, test in enumerate(results.get("tests", [])):
        for key, value in test.items():
            if key not in TEST_FIELDS:
                problems.append(f"tests[{k}]: unknown field {key!r}")
            elif not isinstance(value, TEST_FIELDS[key]):
                problems.append(f"tests[{k}].{key} has type {type(value).__name__}")
        if test.get("status") not in (None, "passed", "failed"):
            problems.append(f"tests[{k}].status={test['status']!r}")
        if test.get("visibility", "visible") not in VISIBILITY:
            problems.append(f"tests[{k}].visibility={test['visibility']!r}")
        if not 0 <= test.get("score", 0) <= test.get("max_score", float("inf")):
            problems.append(f"tests[{k}]: score {test.get('score')} outside [0, max_score]")
    return problems


def test_the_validator_rejects_what_gradescope_would():
    assert gradescope_problems({"score": 1.0, "tests": [{"score": 1, "max_score": 2, "status": "passed"}]}) == []
    bad = {"score": "1", "colour": 1, "tests": [{"score": 3, "max_score": 2, "status": "ok", "visibility": "public"}]}
    assert len(gradescope_problems(bad)) == 5


# ------------------------------------------------------------------ regions (no TensorFlow)
def test_markers_that_do_not_pair_are_named_with_their_line():
    text = "def f():\n    # BEGIN TASK a (f)\n    return 1\n"
    with pytest.raises(ValueError, match=r"x.py:2: task region a is never closed"):
        regions.find_regions(text, "x.py")
    with pytest.raises(ValueError, match=r"x.py:3: '# END TASK b' has no matching"):
        regions.find_regions("def f():\n    # BEGIN TASK a (f)\n    # END TASK b\n", "x.py")
    with pytest.raises(ValueError, match="begins inside region a"):
        regions.find_regions("    # BEGIN TASK a (f)\n    # BEGIN TASK b (g)\n", "x.py")
    with pytest.raises(ValueError, match="alone on its line"):
        regions.find_regions("x = 1  # BEGIN TASK a (f)\n", "x.py")


def test_splicing_replaces_only_the_task_bodies():
    text = ("def f():\n    # BEGIN TASK a (f)\n    return 1\n    # END TASK a\n"
            "def g():\n    # BEGIN TASK b (g)\n    return 2\n    # END TASK b\n")
    spliced = regions.replace_regions(text, "a", [["    return 10\n"]], "x.py")
    namespace = {}
    exec(spliced, namespace)  # noqa: S102
    assert namespace["f"]() == 10 and namespace["g"]() == 2
    stub = regions.stub_lines(regions.task_regions(text, "a", "x.py")[0], "return one.", "Task A", "x.py")
    namespace = {}
    exec(regions.replace_regions(text, "a", [stub], "x.py"), namespace)  # noqa: S102
    with pytest.raises(NotImplementedError, match=r"TODO\(student\): task 'a' \(f in x.py\)"):
        namespace["f"]()


# ------------------------------------------------------------------ every chapter
class ChapterAssignment:
    """The checks of one chapter's assignment. One class per chapter (below), so that pytest-xdist's
    ``--dist loadscope`` spreads the chapters over its workers."""

    chapter: int

    def test_tasks_are_declared_for_what_the_paper_teaches(self):
        tasks = tasks_of(self.chapter)
        assignment_cli.check_declarations(ROOT, tasks)  # regions exist, one stub per part, every mutation applies once
        assert len(tasks) >= 3, f"chapter {self.chapter} has {len(tasks)} tasks; the course needs at least 3"
        for task in tasks:
            assert len(task.mutations) >= 3, f"{task.name}: list at least 3 typical mistakes"
            assert task.week in ("1-week", "2-week"), f"{task.name}: say whether it fits a 1-week or 2-week assignment"

    def test_reference_full_points_every_planted_mistake_loses_points_and_the_copy_scores_zero(self, tmp_path):
        """``make assignment``, then one grading worker for the reference, every mutation of every task and
        the fresh student copy: the reference gets full points (the golden checks of ``make test``), every
        planted mistake loses points (the grader's mutation score), the copy gets 0. Then the copy's own
        smoke training stops with the task's sentence."""
        chapter, tasks = self.chapter, tasks_of(self.chapter)
        copy = tmp_path / "student"
        made = run_tasks_command(chapter, "assignment", "--out", str(copy))
        assert made.returncode == 0, made.stderr
        # nothing that gives a solution away: the graders, the hidden tests, any solution line
        files = regions.project_files(str(copy))
        assert not [path for path in files if re.fullmatch(r"chapters/\w+/tasks.py", path) or path.startswith("tests/test_assignments")]
        assert not [path for task in tasks for path in task.hidden_files if path in files]
        outside = assignment_cli.lines_outside_regions(ROOT)
        for task in tasks:
            solution = {line for line in regions.solution_lines(assignment_cli.reference_regions(ROOT, task))
                        if (line not in outside or len(line) > 40) and not re.match(assignment_cli.GENERIC_LINE, line)}
            assert solution, f"{task.name}: no distinctive solution line to check"
            with open(copy / task.file, encoding="utf-8") as handle:
                student_lines = {line.strip() for line in handle}
            assert not solution & student_lines, f"{task.name}: solution lines in the copy: {sorted(solution & student_lines)[:3]}"

        jobs, rows = [], []
        for task in tasks:
            found = assignment_cli.reference_regions(ROOT, task)
            lines = [region.begin + 1 for region in found]
            jobs.append(grader.Job(task.name, [list(r.body) for r in found], "reference", lines))
            rows.append((task.name, "(reference)"))
            for mutation in task.mutations:
                jobs.append(grader.Job(task.name, assignment_cli.mutated_bodies(found, mutation, task), mutation.name,
                                       lines, first_failure_only=True))
                rows.append((task.name, mutation.name))
        copy_jobs, problems = grader.jobs_for_student(str(copy), tasks)
        assert not problems and len(copy_jobs) == len(tasks)
        graded = grader.grade_jobs(ROOT, f"chapters.{CHAPTERS[chapter]}.tasks", tasks, jobs + copy_jobs, TIME_FACTOR)
        failures = []
        for (task_name, mutation), results in zip(rows, graded):
            lost = sum(r.max_points - r.points for r in results)
            if mutation == "(reference)" and lost:
                failures += [f"reference {task_name}: {r.check}: {r.message}" for r in results if not r.passed]
            elif mutation != "(reference)" and not lost:
                failures.append(f"{task_name}: planted mistake {mutation!r} lost no points")
        planted = sum(1 for _, mutation in rows if mutation != "(reference)")
        print(f"chapter {chapter}: mutation score {planted - sum('planted' in f for f in failures)} / {planted}")
        assert not failures, "\n".join(failures)
        student = [r for results in graded[len(jobs):] for r in results]
        assert sum(r.points for r in student) == 0 and len(student) == sum(len(task.checks) for task in tasks)
        assert all(r.message == "not implemented yet (the stub still raises NotImplementedError)." for r in student)
        report = grader.gradescope_results(chapter, tasks, student, 1.0, "summary")
        assert gradescope_problems(report) == [] and report["score"] == 0
        assert sum(test["max_score"] for test in report["tests"]) == sum(task.points for task in tasks)

        # the copy's own smoke training stops with the task's sentence, exit 2, no traceback
        environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        environment.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([str(copy / "src"), str(copy)]))
        venv = os.path.dirname(os.path.dirname(sys.executable))
        # -o: the copy's requirements.txt is newer than this venv's install stamp, and without it make would
        # reinstall the package from the copy, pointing this venv's editable t2igan at a temporary folder.
        train = subprocess.run(["make", "-s", "-o", os.path.join(venv, ".installed"), f"chapter{chapter}-train",
                                "PROFILE=smoke", f"VENV={venv}",
                                f"RUN_DIR={tmp_path / 'run'}", f"ARGS=--data_root={tmp_path / 'data'}"], cwd=copy,
                               env=environment, capture_output=True, text=True, timeout=time_limit(240))
        assert train.returncode == 2, train.stderr[-3000:]
        message = [line for line in train.stderr.strip().splitlines() if line.startswith("error: TODO(student): task '")]
        assert message, train.stderr[-3000:]
        assert "Traceback" not in train.stderr
        assert re.search(r"task '(\w+)'", message[-1])[1] in {task.name for task in tasks}


for _number in sorted(CHAPTERS):
    globals()[f"TestChapter{_number}Assignment"] = type(f"TestChapter{_number}Assignment", (ChapterAssignment,),
                                                         {"chapter": _number})


# ------------------------------------------------------------------ the grader survives the student
BROKEN = {
    "affine_fusion": ["        import time\n        while True:  # an endless loop (asleep: it need not burn the CPU)\n"
                      "            time.sleep(0.05)\n", None],
    "magp": ["    import os\n    os._exit(3)\n", None],
    "hinge_loss": ["    real = tf.nn.relu(1.0 - real_logits) * float('nan')\n"
                   "    fake = tf.nn.relu(1.0 + fake_logits)\n    mismatch = tf.nn.relu(1.0 + mismatch_logits)\n"
                   "    return average(real) + 0.5 * (average(fake) + average(mismatch)), (real, fake, mismatch)\n",
                   None, None],
    "rat_controller": ["        state = [self.h0(z), self.c0(z)\n"],
}


@pytest.mark.skipif(4 not in CHAPTERS, reason="chapter 4 has no tasks")
class TestGraderRobustness:
    """On chapter 4: what a student can do wrong costs only that task, and the report says so."""

    def test_an_endless_loop_an_exit_nan_and_a_syntax_error_cost_only_their_task(self, tmp_path):
        path = os.path.join(ROOT, "chapters", CHAPTERS[4], "model.py")
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        for task, bodies in BROKEN.items():
            reference = regions.task_regions(text, task, path)
            text = regions.replace_regions(text, task, [body.splitlines(keepends=True) if body is not None else
                                                        list(region.body) for body, region in zip(bodies, reference)], path)
        student = tmp_path / "model.py"
        student.write_text(text, encoding="utf-8")
        # the endless loop has a 90 s limit × this factor; the factor keeps it short here and generous under load
        factor = max(0.2, TIME_FACTOR / 15)
        graded = run_tasks_command(4, "grade", "--student", str(student), "--time_factor", str(factor), seconds=240)
        assert graded.returncode == 0, graded.stderr[-2000:]
        out = graded.stdout
        assert re.search(r"task affine_fusion .*: 0 / 12", out) and "time limit" in out
        assert re.search(r"task magp .*: 0 / 11", out) and "grading process ended (exit code 3)" in out
        assert "non-finite" in out  # the NaN is a failed check, with where it is
        hinge = re.search(r"task hinge_loss .*: (\d+) / 11", out)
        assert hinge and 0 < int(hinge[1]) < 11  # the correct parts (pairs, generator loss) keep their points
        assert re.search(r"task rat_controller .*: 0 / 9", out) and "SyntaxError" in out
        assert out.strip().splitlines()[-1] == f"score: {hinge[1]} / 43"
        with open(tmp_path / "results.json", encoding="utf-8") as handle:
            assert gradescope_problems(json.load(handle)) == []


    def test_make_grade_of_a_fresh_copy_prints_zero_last_and_writes_results_json(self, tmp_path):
        copy = tmp_path / "hw4"
        assert run_tasks_command(4, "assignment", "--out", str(copy), "--tasks", "magp,hinge_loss").returncode == 0
        graded = run_tasks_command(4, "grade", "--student", str(copy), "--time_factor", str(TIME_FACTOR), seconds=180)
        assert graded.returncode == 0, graded.stderr[-2000:]
        assert graded.stdout.strip().splitlines()[-1] == "score: 0 / 22"  # only the tasks handed out
        assert "not implemented yet" in graded.stdout and "affine_fusion" not in graded.stdout
        with open(copy / "results.json", encoding="utf-8") as handle:
            results = json.load(handle)
        assert gradescope_problems(results) == [] and results["score"] == 0 and len(results["tests"]) == 10

    def test_missing_markers_and_a_wrong_submission_are_explained(self, tmp_path):
        tasks = tasks_of(4)
        student = tmp_path / "model.py"
        with open(os.path.join(ROOT, tasks[0].file), encoding="utf-8") as handle:
            student.write_text(handle.read().replace("        # END TASK affine_fusion\n", "", 1), encoding="utf-8")
        jobs, problems = grader.jobs_for_student(str(student), tasks)
        assert "affine_fusion" not in {job.task for job in jobs}
        assert "markers" in problems["affine_fusion"] or "never closed" in problems["affine_fusion"]
        missing = run_tasks_command(4, "grade", "--student", str(tmp_path / "nothing"))
        assert missing.returncode == 2 and missing.stderr.startswith("error: STUDENT=") and "Traceback" not in missing.stderr
        unknown = run_tasks_command(4, "assignment", "--out", str(tmp_path / "x"), "--tasks", "hinge_los")
        assert unknown.returncode == 2 and "Did you mean hinge_loss?" in unknown.stderr
