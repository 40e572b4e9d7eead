"""The errors a user sees, and the rule for which one is raised.

* :class:`ParamsError`: what the user asked for cannot be done: a parameters file, a ``--set``
  override, a command-line argument, or an argument of a public function (an unknown variant,
  rule or emotion, an impossible K).
* :class:`DataError`: a file the study reads is missing, malformed or inconsistent: the user's data
  (CK+, videos, ``labels.csv``, landmark files) and the run folder's own files (an earlier stage's
  output that is absent or damaged, or a stage's outputs that fail the check at the end of its
  notebook). The message names the file and says what to do.
* :class:`EmolibError` itself: the run cannot go on for a reason outside both (a stage's notebook
  failed, a worker process died, the notebooks or a kernel cannot be found, a broken installation).

The command line prints any of them as its message, without a traceback. A programming error (an
internal function called with the wrong types or shapes, a state that cannot happen) raises a
plain ``ValueError``, ``TypeError`` or ``RuntimeError`` instead, so that its traceback is shown.
"""


class EmolibError(Exception):
    """Base class: the message is shown to the user as it is, without a traceback."""


class ParamsError(EmolibError):
    """What the user asked for (parameters, --set, a command-line or function argument) is invalid."""


class DataError(EmolibError):
    """Input data or a run folder's file is missing, malformed or inconsistent."""
