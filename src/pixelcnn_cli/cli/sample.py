"""``pixelcnn sample``: new images, or completions of the bottom of given ones (``--complete``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .. import config as cfg
from ..config import DEFAULT_SAMPLER, SAMPLERS, SampleConfig
from ..errors import ConfigError, DataError
from . import common
from .common import device_from_flags, parse_key_values, user_errors
from .options import (Cuda, DataDir, Dataset, DatasetOptions, Device, Download, Label, RunsDir, SampleModelPath,
                      SampleTf32, Split)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..completion_sources import CompletionSources
    from ..contracts import ModelSpec

SAMPLE_COUNT = 64  # images drawn by default
COMPLETION_COUNT = 4  # completions per source image by default
COMPLETION_SOURCES = 4  # random test images completed by default
PER_CLASS_COUNT = 8  # images per class with --per-class
ANIMATION_FRAMES = 48  # frames of --animate by default (before the held last one)


@user_errors
def sample(
    ctx: typer.Context,
    model_path: SampleModelPath = None,
    output_fname: Annotated[Optional[str], typer.Option("--output", "-o", "--output-fname", help="PNG file to write the grid to [default: samples/samples.png, samples/completions.png with --complete]")] = None,
    label: Label = None,
    count: Annotated[Optional[int], typer.Option("--count", "-c", help=f"Number of images to generate; with --complete, completions per image [default: {SAMPLE_COUNT}; {COMPLETION_COUNT} with --complete]")] = None,
    height: Annotated[Optional[int], typer.Option(help="Image height [default: the training height]")] = None,
    width: Annotated[Optional[int], typer.Option(help="Image width [default: the training width]")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature, > 0 (below 1: safer, above 1: wilder; a mixture's weights ^ 1/T and scales x T)")] = 1.0,
    sampler: Annotated[str, typer.Option(help=f"Sampler: cached (fast, exact; models without incremental state fall back to naive) or naive (one forward pass per pixel and colour) [default: {DEFAULT_SAMPLER}]", show_default=False)] = DEFAULT_SAMPLER,
    seed: Annotated[Optional[int], typer.Option(help="Random seed for repeatable samples")] = None,
    nrow: Annotated[Optional[int], typer.Option(help="Images per grid row [default: square grid]")] = None,
    per_class: Annotated[bool, typer.Option("--per-class", help=f"One row per class, named, -c images each [default -c: {PER_CLASS_COUNT}]")] = False,
    scale: Annotated[Optional[int], typer.Option(min=1, max=32, help="Enlarge the grid this many times [default: a 28x28 or 32x32 image 4x]")] = None,
    animate: Annotated[Optional[str], typer.Option(help="Also write the grid filling in pixel by pixel, from the same draw: .gif (256 colours a frame) or .png (animated PNG, exact)")] = None,
    frame_every: Annotated[Optional[int], typer.Option(min=1, help="With --animate: pixels between frames [default: about 48 frames]")] = None,
    complete: Annotated[bool, typer.Option("--complete", help="Complete images: keep their top rows and sample the rest")] = False,
    images: Annotated[Optional[list[str]], typer.Option("--images", help="With --complete: image files to complete (--images a.png b.png ...), converted to the model's colours and size")] = None,
    indices: Annotated[Optional[str], typer.Option(help="With --complete: test images of the checkpoint's dataset to complete, e.g. 0,5,7 [default: random ones, by --seed]")] = None,
    sources: Annotated[int, typer.Option(help="With --complete: how many random test images to complete when neither --indices nor --images is given")] = COMPLETION_SOURCES,
    keep_rows: Annotated[Optional[int], typer.Option(help="With --complete: rows kept from the top of each image [default: half]")] = None,
    condition: Annotated[Optional[str], typer.Option(help="A prior conditioned on maps: a .npy of its condition maps, one per sample or one for all (--complete uses each test map's own)")] = None,
    dataset: Dataset = None,
    split: Split = "test",
    dataset_option: DatasetOptions = None,
    data_dir: DataDir = None,
    download: Download = None,
    more_images: Annotated[Optional[list[str]], typer.Argument(metavar="IMAGES", help="More image files for --images (--images a.png b.png)", show_default=False)] = None,
    runs_dir: RunsDir = "runs",
    cuda: Cuda = None,
    device: Device = None,
    tf32: SampleTf32 = False,
) -> None:
    """Generate images from a trained model and save them as a PNG grid.

    With --complete, complete test images of the checkpoint's dataset (--indices or random
    ones) or image files (--images): the grid has one row per image, showing the original,
    the kept top rows and the completions. --dataset, --split, --dataset-option, --data-dir and
    --download choose the dataset images, as on eval and score.
    """
    files = [*(images or []), *(more_images or [])]
    label = -1 if label is None else label  # the seed's spelling of "none fixed", which SampleConfig keeps
    choice = _data_choice(complete, files, dataset, split, dataset_option, data_dir, download)
    _check_flags(sampler, label, nrow, per_class, frame_every, animate)
    _check_completion_flags(complete, files, indices, keep_rows, per_class, animate, nrow, [] if images else more_images)
    default_count = COMPLETION_COUNT if complete else PER_CLASS_COUNT if per_class else SAMPLE_COUNT
    default_name = "samples/completions.png" if complete else "samples/samples.png"
    options = cfg.validate(
        SampleConfig,
        {"model_path": model_path, "output_fname": output_fname or default_name, "label": label,
         "count": default_count if count is None else count, "height": height, "width": width,
         "temperature": temperature, "seed": seed, "device": device_from_flags(device, cuda)},
        common.flag_names(ctx),
    )
    wanted = _completion_inputs(complete, sources, indices, files)
    # torch loads here, not at import: --help and completion stay quick
    from ..training import seed_everything
    from .checkpoint_choice import load_model

    target, movie = _targets(options.output_fname, animate)  # before minutes of sampling, not after
    model, spec, train_config, path, torch_device = load_model(options.model_path, runs_dir, options.device)
    _check_condition(spec, condition, complete, height, width, target)
    job = _Job(model, spec, options.height or spec.height, options.width or spec.width, options, sampler, tf32,
               scale, target, condition)
    seed_everything(options.seed)
    if not complete:
        _sample_grid(job, per_class, nrow, movie, frame_every)
        return
    from ..completion_sources import dataset_sources, file_sources

    chosen = (file_sources(files, spec, job.height, job.width) if files else
              dataset_sources(train_config, choice, wanted, sources, options.seed, spec, job.height, job.width))
    _complete(job, chosen, keep_rows)


@dataclass
class _Job:
    """What both flows share once the model is loaded: what to draw, how, and where the grid goes."""

    model: nn.Module
    spec: ModelSpec
    height: int
    width: int
    options: SampleConfig
    sampler: str
    tf32: bool
    scale: int | None
    target: Path  # the still grid
    condition: str | None = None  # a conditioned prior's .npy of condition maps

    def draw(self, what: str, count: int, labels: torch.Tensor | None, uniforms: torch.Tensor,
             known: torch.Tensor | None = None, keep_rows: int = 0) -> torch.Tensor:
        """Levels of ``count`` images, under a progress bar saying ``what``; with ``known``, completions."""
        from ..sampling import complete, sample

        o = self.options
        with sampling_progress(what, count) as progress:
            if known is None:
                return sample(self.model, self.spec, labels, uniforms, o.temperature, self.sampler, progress, _notice,
                              tf32=self.tf32)
            return complete(self.model, self.spec, known, keep_rows, labels, uniforms, o.temperature, self.sampler,
                            progress, _notice, tf32=self.tf32)


def _check_flags(sampler: str, label: int, nrow: int | None, per_class: bool, frame_every: int | None,
                 animate: str | None) -> None:
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler: must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    if per_class and (label != -1 or nrow is not None):
        raise ConfigError(f"--per-class: not with {'--label' if label != -1 else '--nrow'} (one row per class)")
    if frame_every is not None and not animate:
        raise ConfigError("--frame-every: only with --animate")


def _data_choice(complete: bool, files: list[str], dataset: str | None, split: str, dataset_option: list[str] | None,
                 data_dir: str | None, download: bool | None):
    """The dataset images --complete completes; the data flags only with --complete, and not with --images."""
    from ..datachoice import DataChoice

    given = [flag for flag, value in (("--dataset", dataset), ("--split", split != "test"),
                                      ("--dataset-option", dataset_option), ("--data-dir", data_dir),
                                      ("--download", download is not None)) if value]
    if given and not complete:
        raise ConfigError(f"{', '.join(given)}: only with --complete")
    if given and files:
        raise ConfigError(f"--images and {', '.join(given)}: give image files or dataset images, not both")
    return DataChoice(dataset, split, parse_key_values(dataset_option, "--dataset-option"), data_dir, download)


def _check_completion_flags(complete: bool, files: list[str], indices: str | None, keep_rows: int | None,
                            per_class: bool, animate: str | None, nrow: int | None, loose: list[str] | None) -> None:
    """The --complete flags only with --complete, and the plain sampling ones not with it. ``loose``: the
    positional arguments when --images was not typed (`sample 3`, `--animate -c 2`: not image files)."""
    if not complete and loose:
        quoted = " ".join(repr(arg) for arg in loose)
        raise ConfigError(f"unexpected argument{'s' if len(loose) > 1 else ''} {quoted} (image files to complete go "
                          "with --complete --images)")
    if not complete:
        given = [flag for flag, value in (("--images", files), ("--indices", indices), ("--keep-rows", keep_rows))
                 if value]
        if keep_rows == 0:
            given.append("--keep-rows")
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --complete")
    elif per_class or animate:
        raise ConfigError(f"{'--per-class' if per_class else '--animate'}: not with --complete")
    elif files and indices:
        raise ConfigError("--images and --indices: give one or the other")
    elif nrow is not None:
        raise ConfigError("--nrow: not with --complete (the grid has one row per image)")


def _completion_inputs(complete: bool, sources: int, indices: str | None, files: list[str]) -> list[int] | None:
    """The --indices asked for (``None``: none), once --sources and the --images files are checked."""
    if complete and sources < 1:
        raise ConfigError("--sources: must be at least 1")
    wanted = parse_indices(indices) if indices else None
    for name in files:
        if not Path(name).is_file():
            raise DataError(f"--images: no such file: {name}")
    return wanted


def _targets(output_fname: str, animate: str | None) -> tuple[Path, Path | None]:
    """-> (the still grid's file, the --animate file or ``None``), checked writable and distinct."""
    from ..images import check_png_target, check_target

    target = check_png_target(output_fname)
    movie = check_target(animate, (".gif", ".png")) if animate else None
    if movie is not None and movie.resolve() == target.resolve():
        raise ConfigError(f"--animate: {movie} is also the still grid (-o/--output); give it another name")
    return target, movie


def _check_condition(spec: ModelSpec, condition: str | None, complete: bool, height: int | None, width: int | None,
                     target: Path) -> None:
    """--condition goes with a prior conditioned on maps, and such a prior needs it (--complete
    completes dataset maps, each under its own condition map)."""
    if condition is not None and not spec.condition_codes:
        raise ConfigError("--condition: this model reads no condition maps")
    if not spec.condition_codes:
        return
    if complete and condition is not None:
        raise ConfigError("--condition: not with --complete (each map is completed under its own condition map)")
    if not complete and condition is None:
        raise ConfigError(f"the prior is conditioned on {spec.condition_height}x{spec.condition_width} maps of "
                          f"{spec.condition_codes} codes: give them with --condition FILE.npy")
    if height or width:
        raise ConfigError(f"{'--height' if height else '--width'}: not for a prior conditioned on maps (its condition "
                          f"network fills the training size, {spec.height}x{spec.width})")
    if condition is not None and target.with_suffix(".npy").resolve() == Path(condition).expanduser().resolve():
        raise ConfigError(f"-o/--output: the maps would go to {target.with_suffix('.npy')}, which is the --condition "
                          "file; give the grid another name")


def _sample_grid(job: _Job, per_class: bool, nrow: int | None, movie: Path | None, frame_every: int | None) -> None:
    """New images: the grid, its summary line and, with ``movie``, the generation."""
    from ..contracts import pack_context
    from ..data.codes import read_conditions
    from ..images import levels_to_pictures, render_grid, save_png
    from ..sampling import draw_uniforms, grid_labels

    o, spec = job.options, job.spec
    labels, row_names = grid_labels(spec, o.label, o.count, o.seed, per_class)
    if per_class:
        nrow = o.count
    total = labels.shape[0] if labels is not None else o.count
    if job.condition is not None:  # each sample's class and condition map, packed as its labels
        labels = pack_context(labels, read_conditions(job.condition, spec, total))
    uniforms = draw_uniforms(total, spec.channels, job.height, job.width, o.seed)
    levels = job.draw("sampling", total, labels, uniforms)
    pictures = levels_to_pictures(levels.cpu(), spec.color_levels, spec.codes)
    save_png(render_grid(pictures, nrow, job.scale, row_names), job.target)
    what = (f"{o.count} per class, one row each" if per_class else f"label {o.label}" if o.label >= 0
            else "random labels" if spec.num_classes else "unconditional")
    if job.condition is not None:
        what = f"{what if spec.num_classes else 'no classes'}, given the condition maps of {job.condition}"
    noun = ("code map" if spec.codes else "sample") + ("s" if total != 1 else "")
    common.out.print(f"wrote {total} {noun} ({job.height}x{job.width}, {what}) to "
                     f"{_save_codes(job, levels)}{' (preview: ' + str(job.target) + ')' if spec.codes else ''}")
    if movie is not None:
        _save_movie(job, pictures, movie, frame_every, nrow, row_names)


def _save_movie(job: _Job, pictures: torch.Tensor, movie: Path, frame_every: int | None, nrow: int | None,
                row_names: list[str] | None) -> None:
    from ..images import generation_frames, save_animation

    every = frame_every or max(1, -(-job.height * job.width // ANIMATION_FRAMES))
    frames = generation_frames(pictures, every, nrow, job.scale, row_names)
    save_animation(frames, movie)
    common.out.print(f"wrote the generation, {len(frames)} frames (one every {every} pixels), to {movie}")


def _complete(job: _Job, chosen: CompletionSources, keep_rows: int | None) -> None:
    """Completions of ``chosen``: one grid row per source, and the summary line."""
    from ..completion_sources import completion_batch
    from ..images import render_grid, save_png
    from ..sampling import completion_tiles

    o, spec = job.options, job.spec
    per = o.count
    batch = completion_batch(chosen, spec, per, keep_rows, o.label, o.seed)
    levels = job.draw("completing", batch.known.shape[0], batch.labels, batch.uniforms, batch.known, batch.keep_rows)
    tiles = completion_tiles(batch.originals, levels, batch.keep_rows, spec.color_levels, spec.codes)
    save_png(render_grid(tiles, per + 2, job.scale), job.target)
    maps = f" (the maps: {_save_codes(job, levels)})" if spec.codes else ""
    common.out.print(
        f"wrote {per} completion{'s' if per > 1 else ''} of each of {chosen.description} ({job.height}x{job.width}, "
        f"top {batch.keep_rows} rows kept; columns: original, kept part, completions) to {job.target}{maps}"
    )


def _save_codes(job: _Job, levels: torch.Tensor) -> Path:
    """A codes model's maps, ``N x H x W`` integers, as ``.npy`` beside the preview grid (``-o``); its
    file (the grid itself for pictures, which have no other)."""
    if not job.spec.codes:
        return job.target
    import numpy as np

    from ..images import write_atomic

    maps = levels[:, 0].cpu().numpy()
    maps = maps.astype(np.int16 if job.spec.color_levels <= 2**15 else np.int32)
    return write_atomic(lambda f: np.save(f, maps), job.target.with_suffix(".npy"), (".npy",))


def _notice(message: str) -> None:
    common.err.print(f"notice: {message}", markup=False)


def parse_indices(text: str) -> list[int]:
    """``"0,5,7"`` -> ``[0, 5, 7]``; one-line errors for anything else."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise ConfigError(f"--indices: expected comma-separated image numbers like 0,5,7; got {text!r}")
        values.append(int(part))
    if not values:
        raise ConfigError("--indices: no image numbers given")
    return values


def sampling_progress(description: str, images: int):
    from .progress import SamplingProgress

    return SamplingProgress(common.err, description, images=images)

