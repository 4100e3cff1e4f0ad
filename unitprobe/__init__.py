"""unitprobe: what does each unit of a recurrent network hold?"""

from unitprobe.errors import (
    CheckpointError,
    DataError,
    TaskSpecError,
    TrainingError,
    UnitprobeError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "CheckpointError",
    "DataError",
    "TaskSpecError",
    "TrainingError",
    "UnitprobeError",
]
