"""A quiet start: TensorFlow's C++ start-up lines filtered out of the terminal.

Every TensorFlow process prints the oneDNN and CPU-feature notes, "Could not find cuda drivers" and, on a
machine without a GPU, a "failed call to cuInit" error, before absl logging is configured, so
``TF_CPP_MIN_LOG_LEVEL`` cannot silence them (``../shared`` notes, TF 2.21). They say nothing about the
run. :func:`quiet_tensorflow` imports TensorFlow and probes the devices with the process's stderr
(file descriptor 2) captured, then writes back every line that is not one of those. A chapter's entry
module calls it first; ``--verbose`` skips it. It also sets ``TF_CPP_MIN_LOG_LEVEL=2`` (unless set) for the
C++ notes after start-up, and TensorFlow's Python INFO lines (each printed twice, by two handlers) to warnings.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

#: The start-up lines that say nothing about a run on this machine.
NOISE = re.compile("|".join([
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"oneDNN custom operations are on",
    r"Could not find cuda drivers on your machine",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags",
    r"failed call to cuInit",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
]))


def quiet_tensorflow(argv: list[str] | None = None) -> None:
    """Import TensorFlow with its start-up noise filtered (unless ``--verbose`` is in ``argv``)."""
    argv = sys.argv if argv is None else argv
    if "--verbose" in argv or "--verbose=true" in argv or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the C++ notes after start-up (warnings and errors stay)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe (cuInit) runs here, not at import
            tf.get_logger().setLevel("WARNING")  # its INFO lines repeat absl's (each was printed twice)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        kept = [line for line in capture.read().decode("utf-8", "replace").splitlines() if not NOISE.search(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
