"""The one exception type for failures a user can cause and fix.

The CLI turns a ``UserError`` into a single line on stderr and a non-zero exit, so its
message must say what is wrong and how to fix it. Anything else that escapes is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """A bad input (file, config, flag, board address, ...) explained in one line."""


class Interrupted(UserError):
    """The user stopped a long command (Ctrl-C); the message says how to continue it.

    The CLI prints it as one line and exits 130, the shell's code for SIGINT, so scripts can
    tell an interrupted run from a failed one."""

    exit_code = 130
