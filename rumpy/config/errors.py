from __future__ import annotations


class ConfigError(Exception):
    """Bad input in a config: one line naming the file, the key path and what was expected."""

    def __init__(self, source: str, key_path: str, message: str):
        self.source = source
        self.key_path = key_path
        self.message = message
        where = f"{source}: {key_path}" if key_path else source
        super().__init__(f"{where}: {message}")
