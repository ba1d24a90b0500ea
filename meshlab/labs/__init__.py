"""Lab checks for meshlab's exercise notebooks (``q1.check()``, ``q1.hint()``, ``q1.solution()``).

A lab module (``meshlab/labs/lab01.py``, see ``meshlab/labs/example.py``) defines one
:class:`Question` subclass per exercise, instantiates them as ``q1``, ``q2``, ... and ends
with ``__all__ = bind_questions(globals())``. A lab notebook then does::

    from meshlab.labs.lab01 import q1, q2, ____

    replicas = 3
    q1.check()
"""

from meshlab.labs.blank import BLANK, Blank, contains_blank
from meshlab.labs.core import Incorrect, Outcome, Question, Result, bind_questions
from meshlab.labs.tracking import progress, reset_progress

____ = BLANK

__all__ = [
    "BLANK",
    "Blank",
    "Incorrect",
    "Outcome",
    "Question",
    "Result",
    "____",
    "bind_questions",
    "contains_blank",
    "progress",
    "reset_progress",
]
