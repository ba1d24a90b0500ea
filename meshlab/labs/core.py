"""Lab checks: ``q1.check()``, ``q1.hint()``, ``q1.solution()`` (after Kaggle's learntools).

Theory of operation
-------------------
A lab author subclasses :class:`Question`, lists the notebook variables the question
reads in ``_vars`` and writes ``check(self, **answers)``: it returns normally (or
returns a string, used as the success message) when the answers are right and raises
:class:`Incorrect` with a helpful message, which must not give the answer away, when
they are wrong. ``Question.__init_subclass__`` moves the author's ``check`` aside (to
``_check_answers``) so that, on instances, ``check`` is the learner-facing method:

    q1.check()  ->  collect answers  ->  not attempted?  ->  author's check  ->  Result
                    (kwargs, then the     (variable        Incorrect -> "incorrect"
                     caller's frame,       missing, or     other exception -> "incorrect",
                     then __main__)        contains ____)    with the exception's text
                                                           returned -> "correct"

Every check shows one of three outcomes (correct / incorrect / not attempted) as
plain text with an emoji cue, displayed as rich output inside a Jupyter kernel and
printed elsewhere; it never shows a traceback. The outcome is kept on the question
(``last_outcome``, ``last_result``) and in the session's :func:`~meshlab.labs.progress`.

Answers written in Istio YAML go through :func:`load_yaml_answer` (a string, YAML, accepted
by Istio's validation, else :class:`Incorrect`) and :func:`describe_kinds` (what a wrong
answer holds instead); the playground functions of a lab read their YAML with
:func:`playground_yaml`, which tells the learner what is wrong instead of raising.

Exceptions::

    Exception
     └── Incorrect    raised by a question's check when the answer is wrong
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, ClassVar, Literal

from meshlab.config import ConfigError, Resource, load
from meshlab.labs import tracking
from meshlab.labs.blank import BLANK, BLANK_TEXT, contains_blank

__all__ = [
    "Incorrect",
    "Outcome",
    "Question",
    "Result",
    "bind_questions",
    "describe_kinds",
    "load_yaml_answer",
    "playground_yaml",
]

Outcome = Literal["correct", "incorrect", "not_attempted"]

_ICONS: dict[str, tuple[str, str]] = {
    "correct": ("✅", "Correct"),
    "incorrect": ("❌", "Not yet"),
    "not_attempted": ("⭕", "Not attempted"),
}


class Incorrect(Exception):
    """Raised by a question's ``check`` when the answer is wrong.

    The message is shown to the learner after "Not yet:"; it should point them in the
    right direction without containing the expected answer.
    """


@dataclass(frozen=True)
class Result:
    """What one check of one question concluded."""

    outcome: Outcome
    message: str
    error: Exception | None = None
    markdown_message: str | None = None  # when ``message`` holds text that is not Markdown

    @property
    def text(self) -> str:
        """The outcome as one line of plain text, e.g. ``❌ Not yet: ...``."""
        icon, label = _ICONS[self.outcome]
        return f"{icon} {label}: {self.message}"

    @property
    def markdown(self) -> str:
        """The outcome as Markdown, for display in a notebook."""
        icon, label = _ICONS[self.outcome]
        message = self.message if self.markdown_message is None else self.markdown_message
        return f"{icon} **{label}:** {message}"


def _markdown_literal(text: str) -> str:
    """Text that did not come from a lab author, as Markdown that shows it literally.

    One line: a space, then the text with Markdown syntax escaped. Several lines: a fenced block.
    """
    if "\n" in text.strip() and "```" not in text:
        return f"\n\n```\n{text.strip()}\n```"
    return " " + re.sub(r"([\\`*_{}\[\]<>()#+!|~])", r"\\\1", text)


def _in_kernel() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = shell.get_ipython()
    return ipython is not None and getattr(ipython, "kernel", None) is not None


def show(text: str, markdown: str | None = None) -> None:
    """Show ``text`` to the learner: rich Markdown in a Jupyter kernel, else print it."""
    if _in_kernel():
        from IPython.display import display

        data = {"text/plain": text}
        if markdown is not None:
            data["text/markdown"] = markdown
        display(data, raw=True)
    else:
        print(text)


def _format_names(names: Iterable[str]) -> str:
    quoted = [f"`{name}`" for name in names]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


_MISSING = object()


def _lookup(name: str, frame: FrameType | None) -> Any:
    """Find a notebook variable: caller's locals, caller's globals, then ``__main__``."""
    namespaces: list[Mapping[str, Any]] = []
    if frame is not None:
        namespaces += [frame.f_locals, frame.f_globals]
    main = sys.modules.get("__main__")
    if main is not None:
        namespaces.append(vars(main))
    for namespace in namespaces:
        if name in namespace:
            return namespace[name]
    return _MISSING


class Question:
    """One lab question. Subclass it, then create one instance per question in a lab module.

    Class attributes a lab author sets:

    - ``_vars``: names of the notebook variables the question reads, in order.
    - ``_hint``: a hint, or a list of progressively stronger hints.
    - ``_solution``: the solution, shown by :meth:`solution`.
    - ``_solution_lang``: language of the solution's code block ("python", "yaml", ...);
      ``""`` shows the solution as Markdown prose.
    - ``_correct_message``: shown after "Correct:" unless ``check`` returns a message.
    - ``_error_prefix``: starts the message when the check raises something other than
      :class:`Incorrect`, e.g. "your VirtualService was refused".

    and the method ``check(self, **answers)`` (one keyword per name in ``_vars``).
    """

    _vars: ClassVar[Sequence[str]] = ()
    _hint: ClassVar[str | Sequence[str] | None] = None
    _solution: ClassVar[str | None] = None
    _solution_lang: ClassVar[str] = "python"
    _correct_message: ClassVar[str] = "well done."
    _error_prefix: ClassVar[str] = "checking your answer raised an error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        author_check = cls.__dict__.get("check")
        if author_check is not None:
            cls._check_answers = author_check
            delattr(cls, "check")  # instances now use Question.check, the learner-facing one

    def __init__(self) -> None:
        self.name: str = type(self).__name__
        self.lab: str = ""
        self.last_result: Result | None = None
        self._hints_shown = 0

    # -- identity -------------------------------------------------------------------

    @property
    def qualified_name(self) -> str:
        """``lab.name`` (e.g. ``lab01.q1``) once bound by :func:`bind_questions`, else the name."""
        return f"{self.lab}.{self.name}" if self.lab else self.name

    @property
    def last_outcome(self) -> Outcome | None:
        """Outcome of the latest check: "correct", "incorrect", "not_attempted" or None."""
        return self.last_result.outcome if self.last_result else None

    def __repr__(self) -> str:
        n = self.name
        return f"<Question {self.qualified_name}: run {n}.check(), {n}.hint() or {n}.solution()>"

    # -- learner-facing -------------------------------------------------------------

    def check(self, **answers: Any) -> None:
        """Check your answer and show whether it is correct, not yet correct, or not attempted.

        Answers are read from your notebook's variables (the names this question lists);
        pass them as keywords (``q1.check(replicas=3)``) to check other values.
        """
        result = self._evaluate(answers, sys._getframe(1))
        show(result.text, result.markdown)

    def assert_correct(self, **answers: Any) -> None:
        """Check like :meth:`check`, silently, and raise AssertionError unless correct.

        For tests and solution notebooks; the AssertionError carries the learner message
        and is chained to the exception a failing check raised, if any.
        """
        result = self._evaluate(answers, sys._getframe(1))
        if result.outcome != "correct":
            raise AssertionError(f"{self.qualified_name}: {result.text}") from result.error

    def hint(self, n: int | None = None) -> None:
        """Show the next hint, or hint number ``n`` (1-based) if given."""
        hints = self._hints()
        if not hints:
            show("💡 There is no hint for this question.")
            return
        if n is None:
            n = min(self._hints_shown + 1, len(hints))
        if not 1 <= n <= len(hints):
            show(f"💡 This question has hints 1 to {len(hints)}.")
            return
        self._hints_shown = max(self._hints_shown, n)
        tracking.record_hint(self.qualified_name, n)
        header = "Hint" if len(hints) == 1 else f"Hint {n} of {len(hints)}"
        more = f" (next: {self.name}.hint())" if n < len(hints) else ""
        show(f"💡 {header}: {hints[n - 1]}{more}", f"💡 **{header}:** {hints[n - 1]}{more}")

    def solution(self) -> None:
        """Show the solution."""
        if not self._solution:
            show("💡 There is no written solution for this question.")
            return
        tracking.record_solution(self.qualified_name)
        body = self._solution.strip("\n")
        if self._solution_lang:
            text = "💡 Solution:\n" + "\n".join("    " + line for line in body.splitlines())
            markdown = f"💡 **Solution:**\n\n```{self._solution_lang}\n{body}\n```"
        else:
            text = markdown = f"💡 Solution: {body}"
        show(text, markdown)

    # -- machinery ------------------------------------------------------------------

    def _check_answers(self, **answers: Any) -> str | None:
        """The author's ``check``; ``__init_subclass__`` puts each subclass's here."""
        raise NotImplementedError(f"{type(self).__name__} does not define check(self, **answers)")

    def _hints(self) -> list[str]:
        if self._hint is None:
            return []
        return [self._hint] if isinstance(self._hint, str) else list(self._hint)

    def _evaluate(self, explicit: Mapping[str, Any], frame: FrameType | None) -> Result:
        """Collect the answers, run the author's check and record the result."""
        try:
            unknown = sorted(set(explicit) - set(self._vars))
            if unknown:
                raise TypeError(
                    f"{self.name}.check() got unexpected answer(s) {unknown}; it reads {list(self._vars)}"
                )
            answers = {}
            for name in self._vars:
                answers[name] = explicit[name] if name in explicit else _lookup(name, frame)
        finally:
            del frame
        result = self._judge(answers)
        self.last_result = result
        tracking.record_check(self.qualified_name, result.outcome)
        return result

    def _judge(self, answers: dict[str, Any]) -> Result:
        blank = [name for name, value in answers.items() if value is _MISSING or contains_blank(value)]
        if blank:
            fill = f" (replace every {BLANK_TEXT})" if any(answers[n] is not _MISSING for n in blank) else ""
            return Result("not_attempted", f"set {_format_names(blank)}{fill} and run this cell again.")
        try:
            message = self._check_answers(**answers)
        except Incorrect as exc:
            return Result("incorrect", str(exc) or "that is not it yet.")
        except Exception as exc:  # the learner's YAML does not parse, the mesh refuses it, ...
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Result(
                "incorrect",
                f"{self._error_prefix}: {detail}",
                error=exc,
                markdown_message=f"{self._error_prefix}:{_markdown_literal(detail)}",
            )
        return Result("correct", message if isinstance(message, str) else self._correct_message)


def bind_questions(namespace: MutableMapping[str, Any]) -> list[str]:
    """Name the questions of a lab module and return the names it exports.

    Call it at the end of a lab module as ``__all__ = bind_questions(globals())``: every
    :class:`Question` instance in the module learns its variable name (``q1``) and its
    lab (the module's last dotted component), and ``____`` is added so a notebook can
    ``from meshlab.labs.lab01 import q1, q2, ____``.
    """
    lab = str(namespace.get("__name__", "")).rpartition(".")[2]
    names = []
    for name, value in list(namespace.items()):
        if isinstance(value, Question) and not name.startswith("_"):
            value.name, value.lab = name, lab
            names.append(name)
    namespace[BLANK_TEXT] = BLANK
    return [*names, BLANK_TEXT]


# -- answers written in Istio YAML --------------------------------------------------------------


def load_yaml_answer(text: Any, var: str, should_hold: str) -> list[Resource]:
    """The resources of a YAML answer, validated like Istio's admission does; Incorrect if unusable.

    ``var`` is the notebook variable holding ``text``; ``should_hold`` ends the message shown when
    ``text`` does not look like YAML documents, after "`var` should hold ", e.g. "a whole
    VirtualService in YAML, several lines long, starting with `apiVersion:` and `kind:`."
    What the documents must be (their kinds, how many) is the question's to check.
    """
    if not isinstance(text, str):
        raise Incorrect(f"`{var}` should be a string holding YAML (use triple quotes); "
                        f"yours is a `{type(text).__name__}`.")
    if "\n" not in text.strip() or "kind:" not in text:
        raise Incorrect(f"`{var}` should hold {should_hold}")
    try:
        return load(text)
    except ConfigError as exc:
        raise Incorrect(f"Istio would refuse this YAML (kubectl apply would fail):\n{exc}") from None


def describe_kinds(resources: Iterable[Resource]) -> str:
    """How many documents of each kind, for a message: "1 DestinationRule, 2 VirtualService"."""
    kinds = Counter(r.kind for r in resources)
    return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no document"


def playground_yaml(text: Any, again: str) -> list[Resource] | None:
    """The resources of the YAML a playground function (``preview``, ``trial``) was given, or None
    after telling the learner why not (a ``____`` left, YAML Istio would refuse); ``again`` names
    the function in "then run preview() again"."""
    if contains_blank(text):
        show(f"⭕ Replace every ____ in your YAML first, then run {again} again.")
        return None
    try:
        return load(text)
    except ConfigError as exc:
        show(f"❌ Istio would refuse this YAML:\n{exc}")
        return None
