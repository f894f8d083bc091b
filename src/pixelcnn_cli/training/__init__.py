"""Training, as a small package; ``from pixelcnn_cli.training import train`` is all most callers need.

Where to look:

* :mod:`.loop`: the training loop itself (:func:`train`): the step, the epoch, saving, stopping;
* :mod:`.setup`: from a config (and a checkpoint to resume) to the model, optimiser, loaders and
  run folder the loop trains with;
* :mod:`.state`: a run's state (position, time spent, best, history, data seed, random states)
  as it goes into a checkpoint and back;
* :mod:`.budget`: ``--max-steps`` and ``--max-minutes``, and the ranks' vote on the time;
* :mod:`.callbacks`: what the loop reports (:class:`RunInfo`, :class:`EpochMetrics`,
  :class:`TrainResult`) and the :class:`Callback` hooks the CLI draws progress with;
* :mod:`.resume`: resuming from a checkpoint, which options may change, random states;
* :mod:`.stopping`: SIGINT/SIGTERM handling (:class:`StopRequest`, :class:`TrainingInterrupted`);
* :mod:`.loaders`: the data order of a run (per epoch, per rank, skipping what was trained);
* :mod:`.epoch_end`: the test NLL and sample grid after each epoch;
* :mod:`.optimizer`: Adam whose bad steps are skipped on the device, and the guard that stops on them;
* :mod:`.schedules`: the learning rate as a function of the step;
* :mod:`.ema`: the moving average of the weights;
* :mod:`.reproducibility`: ``--deterministic``;
* :mod:`.wandb_logging`: the Weights & Biases callback (imported only with ``--wandb``);
* :mod:`..runs` (beside this package): run folders, free-space checks and atomic writes.

Imports go one way: ``loop`` uses the others; none of them imports ``loop``.
"""

from .callbacks import Callback, EpochMetrics, RunInfo, TrainResult
from .epoch_end import epoch_labels
from .loop import train
from .reproducibility import seed_everything
from .resume import (
    AUTO,
    RESUME_MAY_CHANGE,
    ResumePoint,
    RunFinished,
    auto_resume,
    check_resume_config,
    load_resume,
    resume_config,
)
from ..runs import check_free_space, prepare_run_dir
from .stopping import StopRequest, TrainingInterrupted

__all__ = [
    "AUTO", "RESUME_MAY_CHANGE", "RunFinished", "auto_resume", "Callback", "EpochMetrics", "ResumePoint", "RunInfo", "StopRequest", "TrainResult",
    "TrainingInterrupted", "check_free_space", "check_resume_config", "epoch_labels", "load_resume",
    "prepare_run_dir", "resume_config", "seed_everything", "train",
]
