"""The package's exception family.

Every error that unitprobe raises on bad user input is a :class:`UnitprobeError`, so callers
(and the CLI, which turns them into a one-line ``Error: ...``) can catch one type.
"""

from __future__ import annotations

__all__ = ["UnitprobeError", "TaskSpecError", "CheckpointError", "DataError", "TrainingError"]


class UnitprobeError(Exception):
    """Base class of every error unitprobe raises on bad input."""


class TaskSpecError(UnitprobeError, ValueError):
    """A task specification or relation expression is malformed, unsafe or diverges."""


class DataError(UnitprobeError, ValueError):
    """User data (a CSV file, arrays passed to a probe) has the wrong shape or content."""


class CheckpointError(UnitprobeError):
    """A checkpoint file is missing, unreadable, unsafe or inconsistent with its task."""


class TrainingError(UnitprobeError):
    """Training failed in a way the user can act on (diverged loss, empty data)."""
