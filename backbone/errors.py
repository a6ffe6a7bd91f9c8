"""The error type for problems a user can cause (bad file, bad name).

Command-line tools catch :class:`UserError` and print its message as one line, with a
non-zero exit code, instead of a traceback. Packages above ``backbone`` (``proposals``,
``detector``) raise it too.
"""


class UserError(Exception):
    """A problem with the user's input: the message names the file or value and the problem."""
