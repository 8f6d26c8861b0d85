"""A quiet run: TensorFlow's C++ notes that say nothing about the run filtered out of the terminal.

Every TensorFlow process prints the oneDNN and CPU-feature notes, "Could not find cuda drivers" and, on a
machine without a GPU, a "failed call to cuInit" error, before absl logging is configured, so
``TF_CPP_MIN_LOG_LEVEL`` cannot silence them (``../shared`` notes, TF 2.21). While it trains, a CPU without
AVX-512 adds "E0000 … oneDNN supports DT_BOOL only on platforms with AVX-512", an *error* line that is only
a note. :func:`quiet_tensorflow` sends the process's stderr (file descriptor 2, so C++ writes too) through a
small filter process that drops exactly those lines and passes everything else on at once. A chapter's
entry module calls it first; ``--verbose`` skips it. It also sets ``TF_CPP_MIN_LOG_LEVEL=2`` (unless set)
for the C++ notes after start-up, and TensorFlow's Python INFO lines (each printed twice, by two handlers)
to warnings.

The filter is a process, not a thread: a thread needs the GIL to drain the pipe, so a C++ writer could
block on a full pipe while Python waits for it. It ignores Ctrl-C (the terminal sends it to the whole
process group), so the program's own "stopped (Ctrl-C)" line still gets through, and it ends when the
program's last copy of the pipe closes.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys

#: The lines that say nothing about a run on this machine.
NOISE = re.compile("|".join([
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"oneDNN custom operations are on",
    r"Could not find cuda drivers on your machine",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags",
    r"failed call to cuInit",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"oneDNN supports DT_\w+ only on platforms with AVX-512\. Falling back",  # while training, a note
]))

_FILTER = """
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
noise = re.compile(sys.argv[1])
for line in iter(sys.stdin.buffer.readline, b""):
    if not noise.search(line.decode("utf-8", "replace")):
        sys.stderr.buffer.write(line)
        sys.stderr.buffer.flush()
"""


def quiet_tensorflow(argv: list[str] | None = None) -> None:
    """Filter stderr (see the module) and import TensorFlow (unless ``--verbose`` is in ``argv``)."""
    argv = sys.argv if argv is None else argv
    if "--verbose" in argv or "--verbose=true" in argv or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the C++ notes after start-up (warnings and errors stay)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        filter_process = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER, NOISE.pattern],
                                          stdin=subprocess.PIPE, stderr=saved, stdout=subprocess.DEVNULL)
    except OSError:  # no filter is better than no program
        os.close(saved)
    else:
        os.dup2(filter_process.stdin.fileno(), 2)
        atexit.register(_stop_filter, filter_process, saved)
    import tensorflow as tf

    tf.config.list_physical_devices()  # the CUDA probe (cuInit) runs here, not at import
    tf.get_logger().setLevel("WARNING")  # its INFO lines repeat absl's (each was printed twice)


def _stop_filter(filter_process, saved: int) -> None:
    """At exit: give stderr back and let the filter pass on what is left."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(saved, 2)
    os.close(saved)
    filter_process.stdin.close()
    try:
        filter_process.wait(timeout=5)
    except subprocess.TimeoutExpired:  # a child process of ours still holds the pipe: it keeps forwarding
        pass
