"""The training loop. It reports through callbacks and never prints.

Each epoch: train (gradient clipping, a per-step learning-rate schedule, optionally a moving
average of the weights), measure test bits/dim, sample ``epoch_samples`` images into a PNG grid,
append the epoch's metrics to ``metrics.jsonl`` and save ``checkpoints/last.pt`` and, when test
bits/dim improved, ``checkpoints/best.pt``. Only the current weights are kept in memory.

A run never gets lost:

* ``train(config, resume=RUN_DIR_OR_CHECKPOINT)`` carries on exactly where a checkpoint left
  off (weights, optimiser, schedule, moving average, position inside the epoch, random states,
  best metric, metrics history): the data order of an epoch depends only on the run's data
  seed and the epoch number, so a resumed run sees the batches an uninterrupted one would.
* SIGINT (Ctrl-C) or SIGTERM: the step in flight is abandoned, ``last.pt`` is saved at the
  current position (mid-epoch; an interrupted evaluation is redone on resume) and
  :class:`TrainingInterrupted` is raised with its path. A second signal stops at once, without
  saving (the previous checkpoint stays). The same signal delivered twice within
  :attr:`StopRequest.DEBOUNCE_S` (a launcher forwarding it) counts once.
* A loss that is not finite stops training before the bad step is applied and before anything
  is saved, so the last checkpoint written stays the last good one.
* Checkpoints are written atomically; a full disk is a one-line error and keeps the old file.

Under ``torchrun`` (see :mod:`..distributed`) every process runs this loop; only rank 0 writes
files and calls the callbacks (except those with ``all_ranks = True``).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..checkpoint import save_checkpoint
from ..config import TrainConfig
from ..data.quantize import data_levels, levels_to_input
from ..errors import CheckpointError, TrainingError
from ..likelihood import nll_per_dim
from ..runs import append_metrics, clear_running, rewrite_metrics
from .budget import Budget
from .callbacks import Callback, CallbackGroup, EpochMetrics, RunInfo, TrainResult
from .curves import CurvesFigure
from .epoch_end import evaluate_and_sample
from .optimizer import NonFiniteGuard
from .reproducibility import check_precision, deterministic_algorithms, seed_everything
from .resume import ResumePoint, check_resume_config, load_resume, restore_run_rng, resumed_state, rng_states
from .schedules import lr_factor
from .setup import build_run
from .state import RunState
from .stopping import StopRequest, TrainingInterrupted

#: Steps between the points where the host waits for a GPU (progress, the NaN check, agreeing on a
#: stop under torchrun) when --log-every is not given. On the CPU every step is such a point: it
#: costs nothing there, since CPU work is never queued ahead.
GPU_LOG_EVERY = 20


class _Run:
    def __init__(self, config: TrainConfig, callbacks: list[Callback], stop: StopRequest,
                 resume: str | Path | ResumePoint | None):
        self.config, self.all_callbacks, self.stop, self.resume = config, callbacks, stop, resume
        self.callbacks = CallbackGroup([], True)
        self.result: TrainResult | None = None
        self.run_dir: Path | None = None
        self.last_checkpoint: Path | None = None
        self.saved_at: tuple[int, int, int] | None = None  # (epoch, batch, step) of the last save
        self.state = RunState()
        self.epoch_clock: float | None = None  # when the epoch's training steps began (while they run)
        self.seen = 0  # this process's images of the epoch; their summed loss is loss_sum, on the device
        self.rng_mark: dict[str, Any] | None = None  # random states where an interrupted evaluation began

    # -- set-up ------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, ctx, device = self.config, self.ctx, self.device
        self.log_every = cfg.log_every or (1 if device.type == "cpu" else GPU_LOG_EVERY)
        self.budget = Budget(cfg, ctx, device, self.log_every)
        point = self._resume_point()
        check_precision(cfg.precision, device)
        self.callbacks = CallbackGroup(self.all_callbacks, ctx.is_main)
        if cfg.wandb and ctx.is_main:
            from .wandb_logging import check_ready

            check_ready()  # before a run folder is made
        seed_everything(cfg.seed)
        parts = build_run(cfg, ctx, device, self.state, point)
        self.parts, self.run_dir, self.config = parts, parts.run_dir, parts.config  # codes set color_levels
        self.batches, self.total_steps, self.pin = parts.data.batches, parts.data.total_steps, device.type == "cuda"
        self.guard = NonFiniteGuard(device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._set_lr()  # from the (possibly new) --lr and --epochs/--max-steps, at this step
        self._start_callbacks(point, parts.train_images, parts.test_images)

    def _resume_point(self) -> ResumePoint | None:
        if self.resume is None:
            return None
        point = load_resume(self.resume)
        check_resume_config(point.config, self.config)
        self.run_dir = point.run_dir
        self.state = resumed_state(point, self.config, self.budget)
        return point

    def _start_callbacks(self, point: ResumePoint | None, train_images: int, test_images: int) -> None:
        cfg, ctx, st = self.config, self.ctx, self.state
        if point is not None:
            if ctx.is_main:
                self.loss_sum.fill_(st.epoch_loss_sum)
                self.seen = st.epoch_seen
                rewrite_metrics(self.run_dir, st.history)
            self.last_checkpoint = point.path
            # stopping before any new step needs no new save, unless we resumed from another file than last.pt
            self.saved_at = (st.epoch, st.batch, st.step) if point.path.name == "last.pt" else None
        self.result = TrainResult(self.run_dir, [EpochMetrics.from_dict(h) for h in st.history], self.parts.spec.codes)
        info = RunInfo(self.run_dir, self.device, self.parts.spec, sum(p.numel() for p in self.parts.model.parameters()),
                       train_images, test_images, self.batches, cfg, resumed_from=point.path if point else None,
                       start_epoch=st.epoch, start_batch=st.batch, start_step=st.step, total_steps=self.total_steps,
                       rank=ctx.rank, world_size=ctx.world_size)
        if cfg.wandb and ctx.is_main:
            from .wandb_logging import WandbCallback

            self.callbacks.add(WandbCallback(cfg, self.run_dir))
        self.callbacks.on_train_start(info, self.parts.model)
        if point is not None:  # after the callbacks start: they may draw random numbers
            restore_run_rng(st, ctx, self.device)

    # -- checkpoints ---------------------------------------------------------------------------
    def _epoch_sums(self, trained: int = 0) -> tuple[float, int, int]:
        """The epoch's summed loss and images over all ranks, and ``trained``'s sum (images of this session)."""
        total, seen, trained_all = distributed.sum_all(self.ctx, [float(self.loss_sum), float(self.seen), float(trained)], self.device)
        return total, int(seen), int(trained_all)

    def _save(self, metrics: dict[str, Any] | None = None, *, best: bool = False, interrupted: bool = False) -> Path:
        """Save ``last.pt`` (and ``best.pt``) at the current position; every rank calls this."""
        self._check_finite()  # never write weights that a bad step may have touched
        loss_sum, seen, _ = self._epoch_sums()
        rngs = distributed.gather(self.ctx, self.rng_mark if self.rng_mark is not None else rng_states(self.device))
        st = self.state
        running = 0.0 if self.epoch_clock is None else time.perf_counter() - self.epoch_clock
        snapshot = replace(st, trained_seconds=st.trained_seconds + running, epoch_loss_sum=loss_sum, epoch_seen=seen,
                           rng=rngs[0], rng_by_rank=rngs if len(rngs) > 1 else None)
        last = self.run_dir / "checkpoints" / "last.pt"

        def write() -> None:
            payload = self.parts.checkpoint(snapshot, metrics, interrupted)
            try:
                save_checkpoint(last, payload)
                if best:
                    save_checkpoint(self.run_dir / "checkpoints" / "best.pt", payload)
            except CheckpointError as error:
                epoch = metrics["epoch"] if metrics else st.epoch
                raise TrainingError(f"{error}; training stopped at epoch {epoch}, step {st.step}") from None

        distributed.on_main(self.ctx, write)
        self.last_checkpoint = last
        self.saved_at = (st.epoch, st.batch, st.step)
        return last

    def _interrupted(self) -> TrainingInterrupted:
        st = self.state
        if self.saved_at != (st.epoch, st.batch, st.step):
            self._save(interrupted=True)
        return self.stop.interrupted(saved=True, checkpoint=self.last_checkpoint, run_dir=self.run_dir, epoch=st.epoch,
                                     step=st.step)

    def _check_finite(self) -> None:
        self.guard.check(self.ctx, self.device, self.state.epoch, self.last_checkpoint, self.run_dir)

    # -- training ------------------------------------------------------------------------------
    def _set_lr(self) -> None:
        """The rate of the next step: ``--lr`` times the schedule's factor at this step."""
        cfg = self.config
        rate = cfg.learning_rate * lr_factor(cfg.lr_schedule, self.state.step, self.total_steps, cfg.warmup_steps,
                                             cfg.lr_decay, self.budget.spent)
        for group in self.parts.optimizer.param_groups:
            group["lr"] = rate

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One optimiser step on a batch; returns its mean loss (nats/dim, on the device)."""
        cfg, device, spec = self.config, self.device, self.parts.spec
        images = images.to(device, non_blocking=self.pin)
        labels = labels.to(device, non_blocking=self.pin) if spec.takes_labels else None
        levels = data_levels(images, spec.color_levels, spec.codes)
        x = levels_to_input(levels, spec.color_levels)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            output = self.parts.net(x, labels)
        # per dimension, then the mean: CUDA's reduced NLL kernel has no deterministic version
        loss = nll_per_dim(self.parts.model, output, x, levels).mean()
        self.parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # max_norm 0 clips nothing; the norm is still wanted for the finite check
        norm = nn.utils.clip_grad_norm_(self.parts.model.parameters(), cfg.max_norm or math.inf)
        loss = loss.detach()
        self.guard.step(self.parts.optimizer, loss, norm, self.state.step + 1)
        self.state.step += 1
        self.state.batch += 1
        self._set_lr()
        if self.parts.ema is not None:
            self.parts.ema.update(self.parts.model)
        return loss

    def _train_epoch(self) -> tuple[float, int]:
        """Train the rest of the epoch; returns its seconds and the images this process trained in them.

        The host waits for the device only every ``log_every`` steps and at the epoch's end: there
        the NaN flag is read and progress reported; under torchrun the ranks agree on a stop at the
        start of the next step.
        """
        cfg, st, ctx = self.config, self.state, self.ctx
        self.parts.data.sampler.set_epoch(st.epoch)
        self.parts.data.sampler.skip_batches = st.batch
        self.parts.data.generator.manual_seed(st.data_seed + st.epoch)  # worker seeds, apart from the global RNG
        started = time.perf_counter()
        trained = 0
        if st.batch >= self.batches or self.budget.over(st.step):
            return 0.0, 0
        self.epoch_clock = started
        self.parts.net.train()
        report_loss = torch.zeros((), dtype=torch.float64, device=self.device)  # summed loss since the last report
        report_images = 0
        for images, labels in self.parts.data.train:
            # a stop is taken before this step touches anything (resume starts here); under torchrun
            # the ranks agree on it at the first step after each report, all at the same step
            if self.stop.requested if not ctx.enabled else st.step % self.log_every == 0 and self.stop.agreed(ctx, self.device):
                raise self._interrupted()
            loss, n = self._step(images, labels), images.shape[0]
            self.seen, trained, report_images = self.seen + n, trained + n, report_images + n
            self.loss_sum += loss * n
            report_loss += loss * n
            last = (st.batch >= self.batches or self.budget.steps_done(st.step)
                    or self.budget.vote(st.step, st.trained_seconds + time.perf_counter() - started))
            save = not last and cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0
            if last or save or st.step % self.log_every == 0:
                self._check_finite()
                rate = trained * ctx.world_size / max(time.perf_counter() - started, 1e-9)
                loss_bits = float(report_loss) / max(report_images, 1) / math.log(2)
                report_loss.zero_()
                report_images = 0
                self.callbacks.on_batch_end(st.epoch, st.batch, self.batches, loss_bits, rate, self.parts.optimizer.param_groups[0]["lr"])
            if last:
                break
            if save:
                self._save()
        self.epoch_clock = None
        return time.perf_counter() - started, trained

    def _measure_epoch(self, train_seconds: float, trained: int, started: float) -> EpochMetrics:
        """Rank 0 measures test bits/dim and draws the epoch's grid; a stop during that is taken here."""
        st = self.state
        loss_sum, seen, trained = self._epoch_sums(trained)
        self.rng_mark = rng_states(self.device)
        bits, nats, samples, _ = distributed.on_main(self.ctx, lambda: evaluate_and_sample(
            self.parts.eval_model, self.parts.data.test, self.parts.spec, self.device, self.config, st.epoch, self.run_dir,
            self.callbacks, self.stop))
        if self.stop.agreed(self.ctx, self.device):
            st.evaluated = False
            raise self._interrupted()
        self.rng_mark = None
        return EpochMetrics(
            epoch=st.epoch, step=st.step, train_bits_per_dim=loss_sum / max(seen, 1) / math.log(2),
            test_bits_per_dim=bits, test_nats_per_image=nats, learning_rate=self.parts.optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - started, images_per_second=trained / train_seconds if train_seconds > 0 else 0.0,
            samples=samples, best=math.isfinite(bits) and bits < st.best, train_images=trained,
            train_seconds=train_seconds,
        )

    def loop(self) -> TrainResult:
        cfg, st = self.config, self.state
        assert self.result is not None
        while st.epoch <= cfg.epochs:
            self.callbacks.on_epoch_start(st.epoch, cfg.epochs, self.batches)
            started = time.perf_counter()
            train_seconds, trained = self._train_epoch()
            st.trained_seconds += train_seconds
            metrics = self._measure_epoch(train_seconds, trained, started)
            if metrics.best:
                st.best = metrics.test_bits_per_dim
            st.record(metrics.as_dict())
            self.result.epochs = [m for m in self.result.epochs if m.epoch != st.epoch] + [metrics]
            if st.batch >= self.batches:  # the epoch is done
                st.epoch, st.batch, st.evaluated = st.epoch + 1, 0, False
                self.loss_sum.zero_()
                self.seen = 0
            else:  # --max-steps or --max-minutes ended the run inside this epoch
                st.evaluated = True
            if self.ctx.is_main:
                append_metrics(self.run_dir, metrics.as_dict())
            self._save(metrics.as_dict(), best=metrics.best)
            self.callbacks.on_epoch_end(metrics)
            if self.budget.over(st.step):
                break
        return self.result

    # -- whole run -------------------------------------------------------------------------------
    def execute(self) -> TrainResult:
        self.ctx, self.device = distributed.setup(self.config.device)
        together = False  # all ranks ended the same way (finished, or stopped at one step)
        try:
            try:
                with deterministic_algorithms(self.config.deterministic):
                    self.setup()
                    result = self.loop()
            except BaseException as error:
                together = isinstance(error, TrainingInterrupted) and error.saved
                self.callbacks.end_quietly(self.result or TrainResult(self.run_dir or Path(".")))
                if isinstance(error, KeyboardInterrupt):
                    raise self.stop.interrupted(saved=False, checkpoint=self.last_checkpoint, run_dir=self.run_dir,
                                                epoch=self.state.epoch, step=self.state.step) from None
                raise
            together = True
            self.callbacks.on_train_end(result)
            return result
        finally:
            if self.ctx.owns_group:
                self.release()
            distributed.teardown(self.ctx, together)

    def release(self) -> None:
        """Drop the model, optimiser, DDP wrapper and loaders now (they form reference cycles), so
        memory is freed and DDP lets go of the process group before it is destroyed."""
        self.__dict__.pop("parts", None)


def train(
    config: TrainConfig,
    callbacks: list[Callback] | None = None,
    *,
    resume: str | Path | ResumePoint | None = None,
    stop: StopRequest | None = None,
    handle_signals: bool = True,
) -> TrainResult:
    """Train as ``config`` says, or carry on the run of ``resume`` (a run folder or checkpoint).

    SIGINT/SIGTERM are caught while training (main thread only, unless ``handle_signals`` is false);
    ``stop.request()`` asks for the same clean stop from code. Raises :class:`TrainingInterrupted` after a
    stop, :class:`TrainingError` on a bad loss, a failed write or a torchrun peer gone (``PeerLost``),
    and other :class:`PixelCNNError` subclasses for bad options or data."""
    stop = stop if stop is not None else StopRequest()
    with contextlib.ExitStack() as stack:
        stack.enter_context(distributed.peer_loss_as_error())  # outermost: setup and teardown too
        run = _Run(config, [*(callbacks or []), CurvesFigure()], stop, resume)
        if handle_signals:
            stack.enter_context(stop.catch_signals())
        stack.callback(run.release)
        stack.callback(lambda: clear_running(run.run_dir))  # run_dir is set by execute()
        return run.execute()
