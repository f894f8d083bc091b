"""``pixelcnn sample``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import config as cfg
from ..config import SampleConfig
from ..images import check_png_target, save_levels_grid
from ..sampling import SAMPLERS, draw_uniforms, resolve_labels, sample as run_sampler
from ..training import seed_everything
from . import common
from .common import device_from_flags, user_errors
from .loading import load_model


@user_errors
def sample(
    model_path: Annotated[Optional[str], typer.Option("--model-path", "-m", help="Checkpoint (or run folder) to sample from [default: the newest run's best]")] = None,
    output_fname: Annotated[str, typer.Option(help="PNG file to write the grid to")] = "samples/samples.png",
    label: Annotated[int, typer.Option("--label", "--l", help="Class of the sampled images; -1 for random classes")] = -1,
    count: Annotated[int, typer.Option("--count", "-c", help="Number of images to generate")] = 64,
    height: Annotated[Optional[int], typer.Option(help="Image height [default: the training height]")] = None,
    width: Annotated[Optional[int], typer.Option(help="Image width [default: the training width]")] = None,
    temperature: Annotated[float, typer.Option(help="Softmax temperature (below 1: safer, above 1: wilder)")] = 1.0,
    sampler: Annotated[str, typer.Option(help=f"Sampler: {', '.join(SAMPLERS)}")] = SAMPLERS[-1],
    seed: Annotated[Optional[int], typer.Option(help="Random seed for repeatable samples")] = None,
    nrow: Annotated[Optional[int], typer.Option(help="Images per grid row [default: square grid]")] = None,
    runs_dir: Annotated[str, typer.Option(help="Where to look for the newest run when -m is not given")] = "runs",
    cuda: Annotated[Optional[bool], typer.Option("--cuda/--no-cuda", help="Use CUDA (default: when available)")] = None,
    device: Annotated[Optional[str], typer.Option(help="torch device (overrides --cuda)")] = None,
) -> None:
    """Generate images from a trained model and save them as a PNG grid."""
    options = cfg.validate(
        SampleConfig,
        {"model_path": model_path, "output_fname": output_fname, "label": label, "count": count, "height": height,
         "width": width, "temperature": temperature, "seed": seed, "device": device_from_flags(device, cuda)},
    )
    target = check_png_target(options.output_fname)  # before minutes of sampling, not after
    model, spec, _, path, torch_device = load_model(options.model_path, runs_dir, options.device)
    labels = resolve_labels(options.label, options.count, spec, options.seed)
    h, w = options.height or spec.height, options.width or spec.width
    seed_everything(options.seed)
    uniforms = draw_uniforms(options.count, spec.channels, h, w, options.seed)
    with common_progress() as progress:
        levels = run_sampler(model, spec, labels, uniforms, options.temperature, sampler, progress)
    save_levels_grid(levels, spec.color_levels, target, nrow)
    what = f"label {options.label}" if options.label >= 0 else ("random labels" if spec.num_classes else "unconditional")
    common.out.print(f"wrote {options.count} samples ({h}x{w}, {what}) to {target}")


def common_progress():
    from .progress import SamplingProgress

    return SamplingProgress(common.err, "sampling pixels")
