"""Running experiments: results on disk (:mod:`.io`), the training loop (:mod:`.train`), configs
validated from the command line or a saved file (:mod:`.config`, :mod:`.cmdline`), independent runs
in worker processes (:mod:`.pool`), progress display (:mod:`.progress`). No science here: the studies
themselves live in the top-level ``analyses`` folder.
"""

from .io import (
    VERSIONED,
    git_sha,
    results_dir,
    save_run,
    seed_everything,
    single_threaded,
    to_jsonable,
    versions,
    write_json,
)
from .train import Diverged, History, evaluate, train

__all__ = ["VERSIONED", "Diverged", "History", "evaluate", "git_sha", "results_dir", "save_run",
           "seed_everything", "single_threaded", "to_jsonable", "train", "versions", "write_json"]
