"""The one error type the runner shows to people: its message is a complete, single-line explanation."""


class InfraError(RuntimeError):
    """Something a person can fix (missing tool, busy port, slow start); the message says what and where."""


class StartRefused(InfraError):
    """Settings unsafe outside development: one line per setting, shown one per line."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines
