"""The error type for problems a user can cause (bad file, bad name), and the one warning type
for input a peer tool reads but that is not quite right.

Command-line tools catch :class:`UserError` and print its message as one line, with a
non-zero exit code, instead of a traceback. Packages above ``backbone`` (``proposals``,
``detector``) raise it too.

"Read what the peers read": a file that the VOC/ILSVRC devkits, pycocotools, OpenCV/Pillow or
ultralytics accept is read here too, with ONE counted warning per file or dataset
(:class:`InputWarning`, or a subclass; :class:`Tally` collects the cases and emits the one
warning with the count and the first examples). ``--strict`` (every console script that reads
input, :func:`detector.cli.common.add_strict_arg`) turns every :class:`InputWarning` into the
one-line error, through Python's own warning filters (``warnings.simplefilter("error",
InputWarning)``), so library code needs no ``strict`` parameter: it warns, and the filter decides.
"""

from __future__ import annotations

import warnings


class UserError(Exception):
    """A problem with the user's input: the message names the file or value and the problem."""


class InputWarning(UserWarning):
    """Input a peer tool reads, read here too, but not as it should be (inverted boxes, a
    truncated JPEG, a duplicate split line, an annotated size that disagrees with the image,
    ...). The message names the file, the count and the first examples. ``--strict`` makes it
    an error. (A UTF-8 BOM is no defect: it is skipped silently, as Python's ``utf-8-sig``.)"""


def strict_enabled() -> bool:
    """Whether :class:`InputWarning` is an error in this context (``--strict``), for code that
    must decide before warning (e.g. to stop early rather than after the work)."""
    with warnings.catch_warnings(record=True):  # the probe is never shown
        try:
            warnings.warn("probe", InputWarning)
        except InputWarning:
            return True
    return False


class Tally:
    """Count one kind of input defect over a file or dataset and emit ONE warning for all of it.

    ``tally.add("a.xml: box [3 4 1 2] inverted")`` for each case; ``tally.report()`` at the end
    warns ``"<what>: N <noun>; e.g. <first examples>"`` (nothing when N is 0). Under
    ``--strict`` the first :meth:`add` already raises (the one-line error names that case), so
    a strict run stops at the first defect instead of after the work.
    """

    def __init__(self, what: str, noun: str, category: type[Warning] = InputWarning, examples: int = 3,
                 hint: str = ""):
        self.what, self.noun, self.category, self.max_examples = what, noun, category, examples
        self.hint = hint
        self.count = 0
        self.examples: list[str] = []

    def add(self, example: str, n: int = 1) -> None:
        self.count += n
        if len(self.examples) < self.max_examples:
            self.examples.append(example)
        if self.count == n and strict_enabled():
            warnings.warn(f"{self.what}: {example} ({self.noun}; --strict makes this an error)",
                          self.category, stacklevel=2)

    def report(self, stacklevel: int = 2) -> None:
        if not self.count:
            return
        msg = f"{self.what}: {self.count} {self.noun}; e.g. " + "; ".join(self.examples)
        if self.hint:
            msg += f" ({self.hint})"
        warnings.warn(msg, self.category, stacklevel=stacklevel + 1)
