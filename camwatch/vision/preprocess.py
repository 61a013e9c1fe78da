"""Transitional: the names that moved to prepare, stats, regions, images and analyse (issue 16).

Removed once the callers import from the new modules.
"""

from camwatch.vision.analyse import analyse, analyse_batch  # noqa: F401
from camwatch.vision.images import ImageFileError, read_image_file  # noqa: F401
from camwatch.vision.prepare import (  # noqa: F401
    MODEL_INPUT_ROUTE,
    PREPARE_WORKERS,
    InputSpec,
    prepare,
    prepare_batch,
    single_threaded_opencv,
)
from camwatch.vision.regions import apply_regions  # noqa: F401
from camwatch.vision.stats import STATS_ROUTE, STATS_WIDTH, ViewStats, view_stats  # noqa: F401
