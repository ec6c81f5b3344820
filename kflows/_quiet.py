"""Imports TensorFlow without its start-up log lines, unless the user asked for them.

TensorFlow writes log lines to stderr when it starts: the oneDNN notice, "Could not find
cuda drivers", ``cpu_feature_guard``, "Unable to register cuDNN factory", a failed
``cuInit`` on a machine without a GPU, each behind absl's "All log messages before
absl::InitializeLog() is called are written to STDERR". ``TF_CPP_MIN_LOG_LEVEL`` silences
only some of them: the lines written while TensorFlow's shared libraries load come before
TensorFlow reads it.

So, when the user has not set ``TF_CPP_MIN_LOG_LEVEL`` and TensorFlow is not imported yet,
:func:`import_tensorflow` sets it to ``"2"`` (warnings and info hidden, errors shown; the
variable is inherited by child processes) and imports TensorFlow and lists its devices
with file descriptor 2 pointed at a temporary file. Afterwards it writes back every
captured line except absl-formatted log lines (``I0000 00:00:...  file.cc:12] ...``) and
absl's "before InitializeLog" notice; if the import fails, it writes back everything. A
user who sets ``TF_CPP_MIN_LOG_LEVEL`` (to anything, ``0`` for every line), or who passes
``verbose=True`` (the command line's ``--verbose``), sees TensorFlow's lines as they come.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

#: A C++ log line from absl or TensorFlow below fatal severity, or absl's start-up notice.
_START_UP_LINE = re.compile(
    rb"[IWE]\d{4} [\d:.]+ +\d+ [^\]\s]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
)


@contextlib.contextmanager
def _start_up_lines_dropped():
    """Points fd 2 at a temporary file; on exit writes back its lines but the start-up ones."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        yield
        return
    failed = True
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().splitlines(keepends=True)
            kept = lines if failed else [x for x in lines if not _START_UP_LINE.match(x)]
            if kept:
                os.write(2, b"".join(kept))


def import_tensorflow(verbose: bool = False) -> None:
    """Imports TensorFlow, quietly unless ``verbose`` or ``TF_CPP_MIN_LOG_LEVEL`` is set.

    Does nothing when TensorFlow is imported already (its lines, if any, are out).

    Args:
        verbose: let every log line of TensorFlow's start-up through.
    """
    if "tensorflow" in sys.modules:
        return
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        import tensorflow  # noqa: F401

        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    with _start_up_lines_dropped():
        import tensorflow as tf

        tf.config.list_physical_devices()  # initialises the platforms (cuInit) here
