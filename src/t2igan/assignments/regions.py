"""Solution regions: find them, stub them out, splice a student's version into the reference.

A region is the lines between

    # BEGIN TASK <task> (<part>)
    # END TASK <task>

at the indentation of the code they hold (inside a function body). ``<part>`` names the function the
lines belong to (``Affine.call``); a task may have several parts, in one module. The stub keeps both
markers, so a student's copy can be graded region by region and a student sees exactly where to write.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN TASK (?P<task>\w+) \((?P<part>[^)]+)\)\s*$")
END = re.compile(r"^(?P<indent>[ \t]*)# END TASK (?P<task>\w+)\s*$")
TODO = "TODO(student)"


@dataclasses.dataclass(frozen=True)
class Region:
    task: str
    part: str
    indent: str
    begin: int  # index of the BEGIN line
    end: int  # index of the END line
    body: tuple[str, ...]  # the lines between, with their newlines


def find_regions(text: str, where: str) -> list[Region]:
    """Every region of ``text`` in order; ``where`` (a file name) appears in the errors."""
    lines = text.splitlines(keepends=True)
    regions, open_region = [], None
    for index, line in enumerate(lines):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if open_region:
                raise ValueError(f"{where}:{index + 1}: task region {begin['task']} begins inside region "
                                 f"{open_region['task']} (line {open_region['line'] + 1}); close it first with "
                                 f"'# END TASK {open_region['task']}'.")
            open_region = dict(task=begin["task"], part=begin["part"].strip(), indent=begin["indent"], line=index)
        elif end:
            if not open_region or end["task"] != open_region["task"]:
                raise ValueError(f"{where}:{index + 1}: '# END TASK {end['task']}' has no matching "
                                 f"'# BEGIN TASK {end['task']} (…)' above it.")
            regions.append(Region(open_region["task"], open_region["part"], open_region["indent"], open_region["line"],
                                  index, tuple(lines[open_region["line"] + 1:index])))
            open_region = None
        elif "# BEGIN TASK" in line or "# END TASK" in line:
            raise ValueError(f"{where}:{index + 1}: a task marker must read '# BEGIN TASK <name> (<part>)' or "
                             f"'# END TASK <name>' alone on its line.")
    if open_region:
        raise ValueError(f"{where}:{open_region['line'] + 1}: task region {open_region['task']} is never closed "
                         f"with '# END TASK {open_region['task']}'.")
    return regions


def task_regions(text: str, task: str, where: str) -> list[Region]:
    return [region for region in find_regions(text, where) if region.task == task]


def stub_lines(region: Region, statement: str, task_title: str, where: str) -> list[str]:
    """The student's starting point: the task's statement as comments, then a NotImplementedError."""
    indent = region.indent
    lines = [f"{indent}# {TODO}: {task_title} — {region.part}\n"]
    lines += [f"{indent}#   {line}".rstrip() + "\n" for line in statement.strip("\n").splitlines()]
    rest = (f" task '{region.task}' ({region.part} in {where}) is not written yet; "
            f"replace this line with your code between the task's BEGIN/END markers.")
    lines.append(f'{indent}raise NotImplementedError("TODO(student):{rest}")\n')
    return lines


def replace_regions(text: str, task: str, bodies: list[list[str]], where: str) -> str:
    """``text`` with the bodies of ``task``'s regions replaced, in order, by ``bodies``."""
    regions = task_regions(text, task, where)
    if len(regions) != len(bodies):
        raise ValueError(f"{where}: task {task} has {len(regions)} regions here but {len(bodies)} were given.")
    lines = text.splitlines(keepends=True)
    for region, body in sorted(zip(regions, bodies), key=lambda pair: -pair[0].begin):
        lines[region.begin + 1:region.end] = body
    return "".join(lines)


def solution_lines(regions: list[Region]) -> set[str]:
    """The stripped, non-empty lines of the regions: what a student copy must not contain."""
    return {line.strip() for region in regions for line in region.body if line.strip()}


# ------------------------------------------------------------------ the project's files
#: Never part of a student copy: the graders (they hold the oracles), build outputs and local state.
ALWAYS_HIDDEN = ("chapters/*/tasks.py", "tests/test_assignments*.py", "tools/mutation_score.py")
SKIPPED_FOLDERS = {".git", ".venv", "__pycache__", ".pytest_cache", ".eggs"}  # anywhere
SKIPPED_TOP_FOLDERS = {"runs", "data", "build", "dist"}  # local state at the top (src/t2igan/data is code)


def project_files(root: str) -> list[str]:
    """The project's files relative to ``root``: what git tracks (and untracked, unignored files), or, outside
    a git checkout, every file except build outputs and local state."""
    if os.path.isdir(os.path.join(root, ".git")) or os.path.isfile(os.path.join(root, ".git")):
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                                capture_output=True, check=False)
        if listed.returncode == 0:
            return sorted(path for path in listed.stdout.decode().split("\0")
                          if path and os.path.isfile(os.path.join(root, path)))
    found = []
    for folder, subfolders, files in os.walk(root):
        top = os.path.abspath(folder) == os.path.abspath(root)
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS and not name.endswith(".egg-info")
                         and not (top and name in SKIPPED_TOP_FOLDERS)]
        found += [os.path.relpath(os.path.join(folder, name), root) for name in files
                  if not name.endswith(".pyc") and not (top and name in ("results.json", ".assignment.json"))]
    return sorted(path.replace(os.sep, "/") for path in found)


def is_hidden(path: str, hidden: tuple[str, ...]) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(path, pattern) for pattern in (*ALWAYS_HIDDEN, *hidden))


def copy_project(root: str, out: str, hidden: tuple[str, ...], everything: bool = False) -> list[str]:
    """Copy the project's files (less the hidden ones, unless ``everything``) to ``out``; returns the copied
    paths."""
    copied = []
    for path in project_files(root):
        if not everything and is_hidden(path, hidden):
            continue
        target = os.path.join(out, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(root, path), target)
        copied.append(path)
    return copied


def leaked_lines(copy_root: str, solutions: dict[str, set[str]], files: list[str]) -> list[tuple[str, str, str]]:
    """(task, file, line) for every solution line found in the copy's text files."""
    found = []
    for path in files:
        if not path.endswith((".py", ".md", ".txt", ".json", ".cfg", ".toml", "Makefile")):
            continue
        with open(os.path.join(copy_root, path), encoding="utf-8", errors="replace") as handle:
            present = {line.strip() for line in handle}
        for task, lines in solutions.items():
            found += [(task, path, line) for line in sorted(lines & present)]
    return found
