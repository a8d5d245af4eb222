"""Errors every layer may raise about a user's input after training."""


class InferenceError(ValueError):
    """Bad input to load, predict, eval or export (or a node they cannot use): one line saying
    what and where."""
