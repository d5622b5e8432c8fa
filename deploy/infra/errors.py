"""The one error type the runner shows to people: its message is a complete, single-line explanation."""


class InfraError(RuntimeError):
    """Something a person can fix (missing tool, busy port, slow start); the message says what and where."""
