"""The one exception type users see: a one-line message naming the file and the fix."""


class Fcos3dError(Exception):
    """Bad input or a failed precondition. The CLI prints ``error: <message>`` and exits non-zero.

    Messages are one line, name the offending file or field, and say how to fix it.
    """

    exit_code = 2
