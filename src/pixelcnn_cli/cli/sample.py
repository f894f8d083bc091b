"""``pixelcnn sample``: new images, or completions of the bottom of given ones (``--complete``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import config as cfg
from ..config import DEFAULT_SAMPLER, SAMPLERS, SampleConfig
from ..errors import ConfigError, DataError
from . import common
from .common import device_from_flags, user_errors
from .options import Cuda, Device, RunsDir, SampleModelPath, SampleTf32

SAMPLE_COUNT = 64  # images drawn by default
COMPLETION_COUNT = 4  # completions per source image by default
COMPLETION_SOURCES = 4  # random test images completed by default
PER_CLASS_COUNT = 8  # images per class with --per-class
ANIMATION_FRAMES = 48  # frames of --animate by default (before the held last one)


@user_errors
def sample(
    model_path: SampleModelPath = None,
    output_fname: Annotated[Optional[str], typer.Option(help="PNG file to write the grid to [default: samples/samples.png, samples/completions.png with --complete]")] = None,
    label: Annotated[int, typer.Option("--label", "--l", help="Class of the sampled images; -1 for random classes (with --complete: each dataset image's own class)")] = -1,
    count: Annotated[Optional[int], typer.Option("--count", "-c", help=f"Number of images to generate; with --complete, completions per image [default: {SAMPLE_COUNT}; {COMPLETION_COUNT} with --complete]")] = None,
    height: Annotated[Optional[int], typer.Option(help="Image height [default: the training height]")] = None,
    width: Annotated[Optional[int], typer.Option(help="Image width [default: the training width]")] = None,
    temperature: Annotated[float, typer.Option(help="Softmax temperature, > 0 (below 1: safer, above 1: wilder)")] = 1.0,
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
    data_dir: Annotated[Optional[str], typer.Option(help="With --complete: dataset folder [default: the training one]")] = None,
    more_images: Annotated[Optional[list[str]], typer.Argument(metavar="IMAGES", help="More image files for --images (--images a.png b.png)", show_default=False)] = None,
    runs_dir: RunsDir = "runs",
    cuda: Cuda = None,
    device: Device = None,
    tf32: SampleTf32 = False,
) -> None:
    """Generate images from a trained model and save them as a PNG grid.

    With --complete, complete test images of the checkpoint's dataset (--indices or random
    ones) or image files (--images): the grid has one row per image, showing the original,
    the kept top rows and the completions.
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler: must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    files = [*(images or []), *(more_images or [])]
    if per_class and (label != -1 or nrow is not None):
        raise ConfigError(f"--per-class: not with {'--label' if label != -1 else '--nrow'} (one row per class)")
    if frame_every is not None and not animate:
        raise ConfigError("--frame-every: only with --animate")
    if not complete:
        given = [flag for flag, value in (("--images", files), ("--indices", indices), ("--keep-rows", keep_rows),
                                          ("--data-dir", data_dir)) if value]
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
    default_count = COMPLETION_COUNT if complete else PER_CLASS_COUNT if per_class else SAMPLE_COUNT
    default_name = "samples/completions.png" if complete else "samples/samples.png"
    options = cfg.validate(
        SampleConfig,
        {"model_path": model_path, "output_fname": output_fname or default_name, "label": label,
         "count": default_count if count is None else count, "height": height, "width": width,
         "temperature": temperature, "seed": seed, "device": device_from_flags(device, cuda)},
    )
    if complete and sources < 1:
        raise ConfigError("--sources: must be at least 1")
    wanted = parse_indices(indices) if indices else None
    for name in files:
        if not Path(name).is_file():
            raise DataError(f"--images: no such file: {name}")
    # torch loads here, not at import: --help and completion stay quick
    from ..completion_sources import dataset_sources, file_sources
    from ..data.quantize import to_levels
    from ..data.quantize import levels_to_uint8
    from ..images import check_png_target, check_target, generation_frames, render_grid, save_animation, save_png
    from ..sampling import complete as run_completion
    from ..sampling import completion_tiles, draw_uniforms, per_class_labels, resolve_labels
    from ..sampling import sample as run_sampler
    from ..training import seed_everything
    from .checkpoint_choice import load_model

    target = check_png_target(options.output_fname)  # before minutes of sampling, not after
    movie = check_target(animate, (".gif", ".png")) if animate else None
    if movie is not None and movie.resolve() == target.resolve():
        raise ConfigError(f"--animate: {movie} is also the still grid (--output-fname); give it another name")
    model, spec, train_config, path, torch_device = load_model(options.model_path, runs_dir, options.device)
    h, w = options.height or spec.height, options.width or spec.width
    seed_everything(options.seed)
    notice = lambda message: common.err.print(f"notice: {message}", markup=False)  # noqa: E731

    if not complete:
        row_names = None
        if per_class:
            labels, row_names = per_class_labels(spec, options.count)
            nrow = options.count
        else:
            labels = resolve_labels(options.label, options.count, spec, options.seed)
        total = labels.shape[0] if labels is not None else options.count
        uniforms = draw_uniforms(total, spec.channels, h, w, options.seed)
        with sampling_progress("sampling", total) as progress:
            levels = run_sampler(model, spec, labels, uniforms, options.temperature, sampler, progress, notice,
                                 tf32=tf32)
        pictures = levels_to_uint8(levels.cpu(), spec.color_levels)
        save_png(render_grid(pictures, nrow, scale, row_names), target)
        what = (f"{options.count} per class, one row each" if per_class else f"label {options.label}" if options.label >= 0
                else "random labels" if spec.num_classes else "unconditional")
        common.out.print(f"wrote {total} samples ({h}x{w}, {what}) to {target}")
        if movie is not None:
            every = frame_every or max(1, -(-h * w // ANIMATION_FRAMES))
            frames = generation_frames(pictures, every, nrow, scale, row_names)
            save_animation(frames, movie)
            common.out.print(f"wrote the generation, {len(frames)} frames (one every {every} pixels), to {movie}")
        return

    # -- completion -------------------------------------------------------------------------
    chosen = (file_sources(files, spec, h, w) if files else
              dataset_sources(train_config, data_dir, wanted, sources, options.seed, spec, h, w))
    pictures, source_labels, where = chosen.pictures, chosen.labels, chosen.description

    n_sources = pictures.shape[0]
    per = options.count
    keep = h // 2 if keep_rows is None else keep_rows
    if not 0 <= keep < h:
        raise ConfigError(f"--keep-rows: must be between 0 and {h - 1} for {h}-row images; got {keep}")
    if options.label >= 0 or not spec.num_classes or source_labels is None:
        labels = resolve_labels(options.label, n_sources, spec, options.seed)
    else:
        if int(source_labels.max()) >= spec.num_classes:
            raise DataError(f"a test image's class is beyond the {spec.num_classes} classes the model knows")
        labels = source_labels
    originals = to_levels(pictures, spec.color_levels)
    known = originals.repeat_interleave(per, dim=0)
    labels = labels.repeat_interleave(per) if labels is not None else None
    uniforms = draw_uniforms(n_sources * per, spec.channels, h, w, options.seed)
    with sampling_progress("completing", n_sources * per) as progress:
        levels = run_completion(model, spec, known, keep, labels, uniforms, options.temperature, sampler, progress, notice,
                                tf32=tf32)
    save_png(render_grid(completion_tiles(originals, levels, keep, spec.color_levels), per + 2, scale), target)
    common.out.print(
        f"wrote {per} completion{'s' if per > 1 else ''} of each of {where} ({h}x{w}, top {keep} rows kept; "
        f"columns: original, kept part, completions) to {target}"
    )


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

