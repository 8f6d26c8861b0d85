"""Errors shown to users as one message (no traceback); importable without the chapters' flags."""


class UserError(ValueError):
    """A problem with the user's input that a message explains better than a traceback."""
