"""Errors that ask the user to fix an input rather than the code.

The command-line tools (higherpose.cli) print these as one `error: ...` line with exit code 2
instead of a traceback; every other exception is treated as a bug and keeps its traceback.
"""

# Where the data sets and pretrained weights come from and where they go (in the source tree).
DATA_GUIDE = "docs/DATA.md"


class UserInputError(Exception):
    """A setting, file or flag given by the user is wrong; the message names it."""


class MissingInputError(UserInputError, FileNotFoundError):
    """A file the user has to provide does not exist: a data set's annotations or images, weights."""
