from __future__ import annotations


class ConfigError(Exception):
    """Bad input in a config: one line naming the file, the key path and what was expected."""

    def __init__(self, source: str, key_path: str, message: str):
        self.source = source
        self.key_path = key_path
        self.message = message
        where = f"{source}: {key_path}" if key_path else source
        super().__init__(f"{where}: {message}")
        self.problems = [self]

    @classmethod
    def report(cls, problems: list["ConfigError"]) -> "ConfigError":
        """Every problem of a config at once: the first one's fields, one line per problem."""
        first = problems[0]
        error = cls(first.source, first.key_path, first.message)
        if len(problems) > 1:
            error.args = ("\n".join(str(p) for p in problems) +
                          f"\n({len(problems)} problems)",)
            error.problems = list(problems)
        return error
