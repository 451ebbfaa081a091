"""The one exception the config package raises."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """A config problem, rendered as one line: ``<file>: <key>: <problem>``."""

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        self.source = source
        self.key = key
        # Callers show this on one line (twistd exits with it), so fold any
        # newline a library message might carry.
        self.problem = " ".join(problem.split())
        # All three go to Exception so that pickling rebuilds the same error.
        super().__init__(source, key, self.problem)

    def __str__(self) -> str:
        if self.key is None:
            return f"{self.source}: {self.problem}"
        return f"{self.source}: {self.key}: {self.problem}"
