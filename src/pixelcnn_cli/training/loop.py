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
import json
import math
import signal
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__, distributed, registry
from ..building import build_model, build_data, place_model, spec_for, spec_to_dict
from ..checkpoint import save_checkpoint, state_bytes
from ..config import TrainConfig
from ..data.batches import make_loader
from ..data.quantize import levels_to_input, to_levels
from .ema import WeightAverage
from ..errors import CheckpointError, ConfigError, TrainingError
from ..likelihood import nll_per_dim
from ..runs import clear_running, open_run_dir, write_text_atomic, writing
from .schedules import lr_factor
from .callbacks import Callback, EpochMetrics, RunInfo, TrainResult
from .curves import CurvesFigure
from .epoch_end import evaluate_and_sample
from .loaders import LimitedLoader, train_loader
from .optimizer import guarded_step, load_state, make_adam
from .reproducibility import check_precision, deterministic_algorithms, seed_everything
from .resume import (
    ResumePoint,
    check_resume_config,
    load_resume,
    restore_rng,
    rng_states,
)
from .stopping import StopRequest, TrainingInterrupted

#: Steps between the points where the host waits for a GPU (progress, the NaN check, agreeing on a
#: stop under torchrun) when --log-every is not given. On the CPU every step is such a point: it
#: costs nothing there, since CPU work is never queued ahead.
GPU_LOG_EVERY = 20


# -- the loop ---------------------------------------------------------------------------------------

class _Run:
    def __init__(self, config: TrainConfig, callbacks: list[Callback], stop: StopRequest,
                 resume: str | Path | ResumePoint | None):
        self.config = config
        self.all_callbacks = callbacks
        self.callbacks: list[Callback] = []
        self.stop = stop
        self.resume = resume
        self.result: TrainResult | None = None
        self.run_dir: Path | None = None
        self.last_checkpoint: Path | None = None
        self.saved_at: tuple[int, int, int] | None = None  # (epoch, batch, step) of the last save
        self.epoch, self.batch, self.step = 1, 0, 0
        self.evaluated = False
        self.trained_seconds = 0.0  # training steps' time over all sessions of the run (for --max-minutes)
        self.time_is_up = False
        self.budget_spent = 0.0  # the share of --max-minutes spent, as all ranks agree: it paces cosine/exponential
        self.epoch_clock: float | None = None  # when the epoch's training steps began (while they run)
        self.history: list[dict[str, Any]] = []
        self.best = math.inf
        self.loss_sum: torch.Tensor | float = 0.0  # this epoch's summed loss (a tensor on the device once set up)
        self.seen = 0
        self.started_callbacks = False
        self.rng_mark: dict[str, Any] | None = None  # random states where an interrupted evaluation began

    # -- set-up ------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.config
        ctx, device = self.ctx, self.device
        point = load_resume(self.resume) if self.resume is not None else None
        state: dict[str, Any] = point.checkpoint["train_state"] if point else {}
        if point is not None:
            check_resume_config(point.config, cfg)
            self.run_dir = point.run_dir
            pos = state.get("position") or {}
            self.epoch, self.batch = int(pos.get("epoch", 1)), int(pos.get("batch", 0))
            self.evaluated = bool(pos.get("evaluated", False))
            self.step = int(point.checkpoint.get("step", 0))
            self.trained_seconds = float(state.get("trained_seconds", 0.0))
            self.budget_spent = min(1.0, self._budget_share(0.0))
            finished = self.epoch > cfg.epochs or (self.evaluated and (
                (cfg.max_steps is not None and self.step >= cfg.max_steps) or self._out_of_time(0.0)))
            if finished:
                limits = "".join(f", {flag} {value}" for flag, value in
                                 (("--max-steps", cfg.max_steps), ("--max-minutes", cfg.max_minutes)) if value is not None)
                raise ConfigError(
                    f"nothing to resume: {self.run_dir} already reached its end (step {self.step}, --epochs {cfg.epochs}"
                    f"{limits}); pass a larger --epochs, --max-steps or --max-minutes to train longer"
                )
        check_precision(cfg.precision, device)
        self.callbacks = [cb for cb in self.all_callbacks if ctx.is_main or getattr(cb, "all_ranks", False)]
        if cfg.wandb and ctx.is_main:
            from .wandb_logging import check_ready

            check_ready()  # before a run folder is made
        seed_everything(cfg.seed)

        data = distributed.main_first(ctx, lambda: build_data(cfg.dataset, cfg.data_dir, cfg.download, cfg.dataset_options))
        spec = spec_for(cfg, data)
        if point is not None:
            saved_spec = point.checkpoint["spec"]
            keys = ("channels", "height", "width", "color_levels", "num_classes")
            if any(saved_spec.get(k) != getattr(spec, k) for k in keys):
                now = ", ".join(f"{k} {getattr(spec, k)}" for k in keys)
                was = ", ".join(f"{k} {saved_spec.get(k)}" for k in keys)
                raise ConfigError(f"the data no longer matches the run: it was trained on {was}, the data now gives {now}")
        self.spec = spec
        model, self.model_options = build_model(cfg, spec)
        model = place_model(model, device)
        self.model = model
        self.plugins = {
            "dataset": registry.provenance(registry.datasets, cfg.dataset),
            "model": registry.provenance(registry.models, cfg.model),
        }

        checkpoint_bytes = state_bytes(model) * (3 + (1 if cfg.ema else 0)) + 2**20
        record = {"config": cfg.model_dump(mode="json"), "spec": spec_to_dict(spec), "model_options": self.model_options,
                  "plugins": self.plugins, "package_version": __version__}
        existing = None if point is None else self.run_dir
        self.run_dir = distributed.on_main(ctx, lambda: open_run_dir(cfg, existing, record, checkpoint_bytes))

        # data order: a pure function of the data seed and the epoch (and the rank)
        if point is not None:
            data_seed = int(state["data_seed"])
        elif cfg.seed is not None:
            data_seed = cfg.seed
        else:
            data_seed = distributed.broadcast(ctx, int(torch.randint(0, 2**62, ()).item()))
        self.data_seed = data_seed
        if ctx.enabled:
            # every rank drew the same random numbers so far (the same seed, or torch's fixed default),
            # which built the same initial weights; from here on each needs its own stream, or dropout
            # would drop the same units on every rank
            torch.manual_seed((data_seed * 1_000_003 + ctx.rank) % 2**63)
        pin = device.type == "cuda"
        self.pin = pin
        self.sampler, self.train_loader, self.loader_generator = train_loader(
            data.train, ctx, data_seed, cfg.batch_size, cfg.num_workers, pin)
        test_loader = make_loader(data.test, max(cfg.batch_size, 128), False, None, cfg.num_workers, pin)
        self.test_loader = LimitedLoader(test_loader, cfg.limit_test_batches)
        batches = math.ceil(self.sampler.num_samples / cfg.batch_size)
        if cfg.limit_train_batches:
            batches = min(batches, cfg.limit_train_batches)
        if batches == 0:
            raise TrainingError(f"dataset {cfg.dataset!r} has no training images")
        self.batches = batches
        self.total_steps = batches * cfg.epochs if cfg.max_steps is None else min(batches * cfg.epochs, cfg.max_steps)

        self.optimizer = make_adam(model.parameters(), cfg.learning_rate, cfg.weight_decay, device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(cfg.lr_schedule, s, self.total_steps, cfg.warmup_steps, cfg.lr_decay,
                                               self.budget_spent)
        )
        if point is not None:
            raw = state.get("raw_model_state") or point.checkpoint["model_state"]
            self._load(lambda: model.load_state_dict(raw), "model weights")
        self.net: nn.Module = distributed.wrap_model(model, ctx, device, spec)
        if cfg.compile:  # opt-in: compilation costs a slow first step, pays off on long GPU runs
            self.net = torch.compile(self.net)
        self.ema = WeightAverage(model, cfg.ema) if cfg.ema else None
        self.log_every = cfg.log_every or (1 if device.type == "cpu" else GPU_LOG_EVERY)
        # checked on the device at every step, read back only where the host waits anyway
        self.first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.first_bad_loss = torch.zeros((), dtype=torch.float32, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        if point is not None:
            self._restore(point, state)
        self.result = TrainResult(self.run_dir, [EpochMetrics.from_dict(h) for h in self.history])

        info = RunInfo(
            self.run_dir, device, spec, sum(p.numel() for p in model.parameters()), len(data.train), len(data.test),
            batches, cfg, resumed_from=point.path if point else None, start_epoch=self.epoch, start_batch=self.batch,
            start_step=self.step, total_steps=self.total_steps, rank=ctx.rank, world_size=ctx.world_size,
        )
        if cfg.wandb and ctx.is_main:
            from .wandb_logging import WandbCallback

            self.callbacks.append(WandbCallback(cfg, self.run_dir))
        self.started_callbacks = True
        for cb in self.callbacks:
            cb.on_train_start(info, model)
        if point is not None:
            by_rank = state.get("rng_by_rank")
            if isinstance(by_rank, list) and len(by_rank) == ctx.world_size:
                restore_rng(by_rank[ctx.rank] or {}, device)
            else:
                restore_rng(state.get("rng") or {}, device)
                if ctx.enabled:  # another number of processes: new streams, one per rank
                    torch.manual_seed((int(torch.randint(0, 2**62, ())) + ctx.rank) % 2**63)

    def _load(self, fn, what: str) -> None:
        try:
            fn()
        except (RuntimeError, ValueError, KeyError, TypeError):
            raise CheckpointError(f"the checkpoint's {what} do not fit this run (was it changed by hand?)") from None

    def _restore(self, point: ResumePoint, state: dict[str, Any]) -> None:
        cfg, ckpt = self.config, point.checkpoint
        self._load(lambda: load_state(self.optimizer, ckpt["optimizer_state"]), "optimiser state")
        self._load(lambda: self.scheduler.load_state_dict(ckpt["scheduler_state"]), "schedule state")
        # the rate follows the (possibly new) --lr and --epochs/--max-steps from this step on
        self.scheduler.base_lrs = [cfg.learning_rate for _ in self.optimizer.param_groups]
        rate = cfg.learning_rate * lr_factor(cfg.lr_schedule, self.step, self.total_steps, cfg.warmup_steps, cfg.lr_decay,
                                            self.budget_spent)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = cfg.learning_rate
            group["lr"] = rate
        self.scheduler._last_lr = [rate for _ in self.optimizer.param_groups]
        if self.ema is not None:
            self._load(lambda: self.ema.load_state_dict(ckpt["model_state"], int(state.get("ema_updates", 0))), "averaged weights")
        best = ckpt.get("best_bits_per_dim", math.inf)
        self.best = float(best) if best is not None else math.inf
        # the epoch it carries on in is measured again at its end (after --max-steps, a partial record was kept)
        self.history = [h for h in state.get("history", []) if int(h.get("epoch", 0)) < self.epoch]
        saved_world, saved_batches = int(state.get("world_size", 1)), int(state.get("batches_per_epoch", self.batches))
        if self.batch >= saved_batches:
            self.batch = self.batches
        elif saved_world != self.ctx.world_size:  # same images onwards: all ranks together covered batch*world batches
            self.batch = min(self.batches, self.batch * saved_world // self.ctx.world_size)
        if self.ctx.is_main:
            self.loss_sum.fill_(float(state.get("epoch_loss_sum", 0.0)))
            self.seen = int(state.get("epoch_seen", 0))
            lines = "".join(json.dumps(h) + "\n" for h in self.history)
            with writing(self.run_dir / "metrics.jsonl"):
                write_text_atomic(self.run_dir / "metrics.jsonl", lines)
        self.last_checkpoint = point.path
        # stopping before any new step needs no new save, unless we resumed from another file than last.pt
        self.saved_at = (self.epoch, self.batch, self.step) if point.path.name == "last.pt" else None

    # -- checkpoints ---------------------------------------------------------------------------
    def _eval_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.model

    def _epoch_sums(self, trained: int = 0) -> tuple[float, int, int]:
        """The epoch's summed loss and images over all ranks, and ``trained``'s sum (images of this session)."""
        total, seen, trained_all = distributed.sum_all(self.ctx, [float(self.loss_sum), float(self.seen), float(trained)], self.device)
        return total, int(seen), int(trained_all)

    def _payload(self, metrics: dict[str, Any] | None, interrupted: bool, loss_sum: float, seen: int,
                 rngs: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.config
        train_state = {
            "position": {"epoch": self.epoch, "batch": self.batch, "evaluated": self.evaluated},
            "history": list(self.history),
            "rng": rngs[0],
            "data_seed": self.data_seed,
            "epoch_loss_sum": loss_sum,
            "epoch_seen": seen,
            "world_size": self.ctx.world_size,
            "batches_per_epoch": self.batches,
            "trained_seconds": self.trained_seconds + (0.0 if self.epoch_clock is None else time.perf_counter() - self.epoch_clock),
        }
        if len(rngs) > 1:  # each rank's stream (dropout draws differ between ranks)
            train_state["rng_by_rank"] = rngs
        if self.ema is not None:
            train_state["raw_model_state"] = self.model.state_dict()
            train_state["ema_updates"] = self.ema.updates
        return {
            "config": cfg.model_dump(mode="json"),
            "spec": spec_to_dict(self.spec),
            "model_options": self.model_options,
            "plugins": self.plugins,
            "model_state": self._eval_model().state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "epoch": self.history[-1]["epoch"] if self.history else 0,
            "step": self.step,
            "best_bits_per_dim": self.best,
            "metrics": metrics,
            "interrupted": interrupted,
            "ema_decay": cfg.ema,
            "train_state": train_state,
        }

    def _save(self, metrics: dict[str, Any] | None = None, *, best: bool = False, interrupted: bool = False) -> Path:
        """Save ``last.pt`` (and ``best.pt``) at the current position; every rank calls this."""
        self._check_finite()  # never write weights that a bad step may have touched
        loss_sum, seen, _ = self._epoch_sums()
        rngs = distributed.gather(self.ctx, self.rng_mark if self.rng_mark is not None else rng_states(self.device))
        last = self.run_dir / "checkpoints" / "last.pt"

        def write() -> None:
            payload = self._payload(metrics, interrupted, loss_sum, seen, rngs)
            try:
                save_checkpoint(last, payload)
                if best:
                    save_checkpoint(self.run_dir / "checkpoints" / "best.pt", payload)
            except CheckpointError as error:
                epoch = metrics["epoch"] if metrics else self.epoch
                raise TrainingError(f"{error}; training stopped at epoch {epoch}, step {self.step}") from None

        distributed.on_main(self.ctx, write)
        self.last_checkpoint = last
        self.saved_at = (self.epoch, self.batch, self.step)
        return last

    def _interrupted(self) -> TrainingInterrupted:
        signum = self.stop.signum or signal.SIGINT
        if self.saved_at != (self.epoch, self.batch, self.step):
            self._save(interrupted=True)
        name = signal.Signals(signum).name
        return TrainingInterrupted(
            f"interrupted by {name} at epoch {self.epoch}, step {self.step}; saved {self.last_checkpoint}",
            checkpoint=self.last_checkpoint, run_dir=self.run_dir, signum=signum, saved=True, epoch=self.epoch, step=self.step,
        )

    def _forced(self) -> TrainingInterrupted:
        signum = self.stop.forced or self.stop.signum or signal.SIGINT
        name = signal.Signals(signum).name
        kept = f"the last checkpoint is kept: {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint was saved"
        again = " again" if self.stop.forced is not None else ""  # else a KeyboardInterrupt nobody caught as a signal
        return TrainingInterrupted(
            f"interrupted{again} by {name}: stopped at once without saving; {kept}",
            checkpoint=self.last_checkpoint, run_dir=self.run_dir, signum=signum, saved=False, epoch=self.epoch, step=self.step,
        )

    # -- training ------------------------------------------------------------------------------
    def _agree_on_stop(self) -> bool:
        """Whether to stop, as all ranks see it: a stop asked of any rank (by its signal) stops them all."""
        if not self.ctx.enabled:
            return self.stop.requested
        (shared,) = distributed.max_all(self.ctx, [self.stop.signum or 0], self.device)
        if shared and not self.stop.requested:
            self.stop.request(int(shared))
        return bool(shared)

    def _check_finite(self) -> None:
        """Stop with a clear error if some step since the last check had a non-finite loss or gradient.

        That step was skipped on the device (:mod:`.optimizer`), so the weights are still the last
        good ones; they are not saved, and the last checkpoint stays the last good one.
        """
        bad_step = int(self.first_bad_step)  # waits for the device
        if self.ctx.enabled:
            (worst,) = distributed.max_all(self.ctx, [bad_step], self.device)
            if bad_step < 0 and worst >= 0:
                raise self._not_finite(None, int(worst), own=False)
        if bad_step >= 0:
            raise self._not_finite(float(self.first_bad_loss), bad_step, own=True)

    def _max_steps_reached(self) -> bool:
        return self.config.max_steps is not None and self.step >= self.config.max_steps

    def _budget_share(self, epoch_seconds: float) -> float:
        """The share of --max-minutes spent on training steps (evaluation and sampling do not count)."""
        limit = self.config.max_minutes
        return 0.0 if limit is None else (self.trained_seconds + epoch_seconds) / (limit * 60)

    def _out_of_time(self, epoch_seconds: float) -> bool:
        return self.config.max_minutes is not None and self._budget_share(epoch_seconds) >= 1.0

    def _time_up(self, epoch_seconds: float) -> bool:
        """--max-minutes reached, as all ranks see it: under torchrun they vote at report steps only,
        so that every rank ends at the same step."""
        if self.config.max_minutes is None:
            return False
        if self.ctx.enabled:
            if self.step % self.log_every:
                return False
            (share,) = distributed.max_all(self.ctx, [self._budget_share(epoch_seconds)], self.device)
        else:
            share = self._budget_share(epoch_seconds)
        self.budget_spent, self.time_is_up = min(1.0, share), share >= 1.0
        return self.time_is_up

    def _not_finite(self, loss_value: float | None, step: int, own: bool) -> TrainingError:
        if not own:
            where = "loss or gradients became non-finite on another process"
        elif loss_value is not None and not math.isfinite(loss_value):
            where = f"loss became {loss_value}"
        else:
            where = f"gradients became non-finite (loss {loss_value:.4g})"
        kept = (f"the last good checkpoint is kept: {self.last_checkpoint} (resume from it with a lower rate: "
                f"--resume {self.run_dir} --lr ...)" if self.last_checkpoint else "no checkpoint had been saved yet")
        return TrainingError(
            f"{where} at epoch {self.epoch}, step {step}; {kept}; try a lower --lr or a smaller --max-norm"
        )

    def _train_epoch(self) -> tuple[float, int]:
        """Train the rest of the epoch; returns its seconds and the images this process trained in them.

        The host waits for the device only every ``log_every`` steps and at the epoch's end: there
        the NaN flag is read and progress reported; under torchrun the ranks agree on a stop at the
        start of the next step.
        """
        cfg, device, model = self.config, self.device, self.net
        ln2 = math.log(2)
        self.sampler.set_epoch(self.epoch)
        self.sampler.skip_batches = self.batch
        self.loader_generator.manual_seed(self.data_seed + self.epoch)  # worker seeds, apart from the global RNG
        started = time.perf_counter()
        trained = 0
        if self.batch >= self.batches or self._max_steps_reached() or self.time_is_up:
            return 0.0, 0
        self.epoch_clock = started
        model.train()
        report_loss = torch.zeros((), dtype=torch.float64, device=device)  # summed loss since the last report
        report_images = 0
        for images, labels in self.train_loader:
            # a stop is taken before this step touches anything (resume starts here); under torchrun
            # the ranks agree on it at the first step after each report, all at the same step
            if (self.stop.requested if not self.ctx.enabled else
                    self.step % self.log_every == 0 and self._agree_on_stop()):
                raise self._interrupted()
            images = images.to(device, non_blocking=self.pin)
            labels = labels.to(device, non_blocking=self.pin) if self.spec.num_classes else None
            levels = to_levels(images, self.spec.color_levels)
            x = levels_to_input(levels, self.spec.color_levels)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                output = model(x, labels)
            # per dimension, then the mean: CUDA's reduced NLL kernel has no deterministic version
            loss = nll_per_dim(self.model, output, x, levels).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # max_norm 0 clips nothing; the norm is still wanted for the finite check
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_norm or math.inf)
            loss = loss.detach()
            bad = ~(torch.isfinite(loss) & torch.isfinite(norm))
            first = bad & (self.first_bad_step < 0)
            self.first_bad_step = torch.where(first, self.step + 1, self.first_bad_step)
            self.first_bad_loss = torch.where(first, loss, self.first_bad_loss)
            guarded_step(self.optimizer, bad)
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            self.batch += 1
            n = images.shape[0]
            self.seen += n
            trained += n
            self.loss_sum += loss * n
            report_loss += loss * n
            report_images += n
            last = self.batch >= self.batches or self._max_steps_reached() or self._time_up(time.perf_counter() - started)
            save = not last and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0
            if last or save or self.step % self.log_every == 0:
                self._check_finite()
                rate = trained * self.ctx.world_size / max(time.perf_counter() - started, 1e-9)
                loss_bits = float(report_loss) / max(report_images, 1) / ln2
                report_loss.zero_()
                report_images = 0
                for cb in self.callbacks:
                    cb.on_batch_end(self.epoch, self.batch, self.batches, loss_bits, rate, self.optimizer.param_groups[0]["lr"])
            if last:
                break
            if save:
                self._save()
        self.epoch_clock = None
        return time.perf_counter() - started, trained

    def _evaluate_and_sample(self) -> tuple[float, float, str | None, bool]:
        """Rank 0: test NLL and the epoch's sample grid (see :func:`.epoch_end.evaluate_and_sample`)."""
        return evaluate_and_sample(self._eval_model(), self.test_loader, self.spec, self.device, self.config,
                                   self.epoch, self.run_dir, self.callbacks, self.stop)

    def loop(self) -> TrainResult:
        cfg, ctx = self.config, self.ctx
        ln2 = math.log(2)
        assert self.result is not None
        while self.epoch <= cfg.epochs:
            for cb in self.callbacks:
                cb.on_epoch_start(self.epoch, cfg.epochs, self.batches)
            epoch_started = time.perf_counter()
            train_seconds, trained = self._train_epoch()
            self.trained_seconds += train_seconds
            loss_sum, seen, trained = self._epoch_sums(trained)
            self.rng_mark = rng_states(self.device)
            bits, nats, samples_path, abandoned = distributed.on_main(ctx, self._evaluate_and_sample)
            if self._agree_on_stop():
                self.evaluated = False
                raise self._interrupted()
            self.rng_mark = None
            improved = math.isfinite(bits) and bits < self.best
            metrics = EpochMetrics(
                epoch=self.epoch, step=self.step, train_bits_per_dim=loss_sum / max(seen, 1) / ln2,
                test_bits_per_dim=bits, test_nats_per_image=nats,
                learning_rate=self.optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - epoch_started,
                images_per_second=trained / train_seconds if train_seconds > 0 else 0.0, samples=samples_path,
                best=improved, train_images=trained, train_seconds=train_seconds,
            )
            if improved:
                self.best = bits
            self.history = [h for h in self.history if h["epoch"] != self.epoch] + [metrics.as_dict()]
            self.result.epochs = [m for m in self.result.epochs if m.epoch != self.epoch] + [metrics]
            finished_epoch = self.batch >= self.batches
            if finished_epoch:
                self.epoch, self.batch, self.evaluated = self.epoch + 1, 0, False
                self.loss_sum.zero_()
                self.seen = 0
            else:  # --max-steps or --max-minutes ended the run inside this epoch
                self.evaluated = True
            if ctx.is_main:
                with writing(self.run_dir / "metrics.jsonl"), open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(metrics.as_dict()) + "\n")
            self._save(metrics.as_dict(), best=improved)
            for cb in self.callbacks:
                cb.on_epoch_end(metrics)
            if self._max_steps_reached() or self.time_is_up:
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
                self._end_callbacks()
                if isinstance(error, KeyboardInterrupt):
                    raise self._forced() from None
                raise
            together = True
            for cb in self.callbacks:
                cb.on_train_end(result)
            return result
        finally:
            if self.ctx.owns_group:
                self.release()
            distributed.teardown(self.ctx, together)

    def release(self) -> None:
        """Drop the model, optimiser, DDP wrapper and loaders now (they form reference cycles), so
        memory is freed and DDP lets go of the process group before it is destroyed."""
        for name in ("net", "model", "ema", "optimizer", "scheduler", "train_loader", "test_loader", "sampler"):
            self.__dict__.pop(name, None)

    def _end_callbacks(self) -> None:
        if not self.started_callbacks:
            return
        result = self.result or TrainResult(self.run_dir or Path("."))
        for cb in self.callbacks:
            try:
                cb.on_train_end(result)
            except Exception:  # already failing: the first error is the one to report
                pass


def train(
    config: TrainConfig,
    callbacks: list[Callback] | None = None,
    *,
    resume: str | Path | ResumePoint | None = None,
    stop: StopRequest | None = None,
    handle_signals: bool = True,
) -> TrainResult:
    """Train as ``config`` says, or carry on the run of ``resume`` (a run folder or checkpoint).

    SIGINT/SIGTERM are caught while training (main thread only, unless ``handle_signals`` is
    false); ``stop.request()`` asks for the same clean stop from code. Raises
    :class:`TrainingInterrupted` after a stop, :class:`TrainingError` on a bad loss or a failed
    write, and other :class:`PixelCNNError` subclasses for bad options or data.
    """
    stop = stop if stop is not None else StopRequest()
    run = _Run(config, [*(callbacks or []), CurvesFigure()], stop, resume)
    with contextlib.ExitStack() as stack:
        if handle_signals:
            stack.enter_context(stop.catch_signals())
        stack.callback(run.release)
        stack.callback(lambda: clear_running(run.run_dir))
        return run.execute()
