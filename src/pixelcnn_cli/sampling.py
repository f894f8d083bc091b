"""Drawing images from a trained model, pixel by pixel and colour by colour.

Every sampler takes its randomness from one tensor of uniforms drawn up front (one per
image, pixel and colour), and draws each colour from the model's output at the pixel with the
same function (:func:`.likelihood.draw_levels`: the model's own draw, such as the mixture's
component-then-value draw, or the inverse CDF of the levels' distribution), so two samplers given
the same seed draw the same images whenever they compute the same outputs: that is how the fast
sampler is checked against the reference.

Two samplers:

* ``naive``, the reference: one full forward pass of the model per pixel and colour;
* ``cached``, the default: the model's cached incremental state
  (:class:`~.contracts.IncrementalState`, Ramachandran et al. 2017), constant work per pixel and layer.
  Models that do not offer it (``incremental_sampler``) fall back to ``naive``, with a notice.

:func:`complete` samples the bottom of images whose top rows are given (image completion).

Both run in full fp32 on CUDA (:func:`.tf32.full_fp32`; ``tf32=True`` opts out for
speed), so that the two samplers agree there too.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn

from .config import DEFAULT_SAMPLER, SAMPLERS  # noqa: F401  (re-exported: the sampler names)
from .contracts import ColourwiseIncrementalState, ModelSpec, PixelOutputState
from .data.quantize import levels_to_input
from .errors import PixelCNNError
from .images import levels_to_pictures
from .likelihood import draw_levels, inner_model, level_logits, pick  # noqa: F401  (pick: re-exported)
from .tf32 import full_fp32

Progress = Callable[[int, int], None]
#: ``on_logits(row, col, channel, logits (B, L))``: every step's logits (tests, debugging)
LogitsHook = Callable[[int, int, int, torch.Tensor], None]
Notice = Callable[[str], None]


#: Intra-op threads of the cached sampler on the CPU. Its per-pixel tensors are tiny (a batch
#: of feature vectors), so extra threads mostly add synchronisation: reductions such as softmax
#: split even a 16 x 2 tensor across threads, and every split waits for a free core. On the
#: 2-core machine, 16 images of 28x28 at the default model: quiet, 0.26 s with one thread and
#: 0.23 s with two; busy (other jobs running), 0.3 to 0.5 s with one and 3.5 to 13 s with two.
#: One thread is the robust choice; ``cpu_threads=None`` keeps torch's setting.
CACHED_CPU_THREADS = 1


def make_generator(seed: int | None, stream: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed + stream``, so that one ``--seed`` gives each use (uniforms,
    labels, images to complete) its own repeatable stream; without a seed, seeded from torch's
    global generator: different on every call."""
    if seed is None:
        return torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
    return torch.Generator().manual_seed(seed + stream)


def draw_uniforms(count: int, channels: int, height: int, width: int, seed: int | None) -> torch.Tensor:
    return torch.rand(count, channels, height, width, generator=make_generator(seed), dtype=torch.float64)


def resolve_labels(label: int, count: int, spec: ModelSpec, seed: int | None) -> torch.Tensor | None:
    """``label`` for every image, ``-1`` for random classes (repeatable with ``seed``); ``None`` for
    an unconditional model."""
    if not spec.num_classes:
        if label != -1:
            raise PixelCNNError("--label: this model was trained without labels (unconditional); omit --label")
        return None
    if label >= spec.num_classes:
        names = f" ({', '.join(spec.class_names)})" if spec.class_names else ""
        raise PixelCNNError(f"--label: must be -1 or between 0 and {spec.num_classes - 1}{names}; got {label}")
    if label >= 0:
        return torch.full((count,), label, dtype=torch.long)
    return torch.randint(spec.num_classes, (count,), generator=make_generator(seed, 1))


def per_class_labels(spec: ModelSpec, per_class: int) -> tuple[torch.Tensor, list[str]]:
    """``per_class`` images of every class in turn, and the classes' names (for one grid row each)."""
    if not spec.num_classes:
        raise PixelCNNError("--per-class: this model was trained without labels (unconditional)")
    names = list(spec.class_names or []) or [str(i) for i in range(spec.num_classes)]
    if len(names) != spec.num_classes:
        names = [str(i) for i in range(spec.num_classes)]
    return torch.arange(spec.num_classes).repeat_interleave(per_class), names


def grid_labels(spec: ModelSpec, label: int, count: int, seed: int | None,
                per_class: bool = False) -> tuple[torch.Tensor | None, list[str] | None]:
    """The classes of a grid of new images and its rows' names: ``count`` of every class, one row
    each (``per_class``), else ``count`` images of ``label`` (:func:`resolve_labels`) and no names."""
    if per_class:
        return per_class_labels(spec, count)
    return resolve_labels(label, count, spec, seed), None


# -- choosing a sampler ---------------------------------------------------------------------


def incremental_model(model: nn.Module) -> nn.Module | None:
    """The module that offers cached incremental state (``incremental_sampler(labels, count,
    height, width)``, see :class:`~.contracts.SupportsIncremental`), unwrapped from DDP
    or ``torch.compile``; ``None`` when there is none."""
    return inner_model(model, "incremental_sampler")


def supports_incremental(model: nn.Module) -> bool:
    return incremental_model(model) is not None


def choose_sampler(model: nn.Module, sampler: str = "auto") -> tuple[str, str | None]:
    """The sampler that will run for ``sampler`` (``auto``, ``naive`` or ``cached``) and, when it
    had to fall back to ``naive``, a notice saying so."""
    if sampler not in ("auto", *SAMPLERS):
        raise PixelCNNError(f"--sampler: unknown sampler {sampler!r}; available: {', '.join(SAMPLERS)}")
    if sampler == "naive":
        return "naive", None
    if supports_incremental(model):
        return "cached", None
    return "naive", (
        f"model {type(model).__name__} offers no incremental state (incremental_sampler); "
        "using the naive sampler, one full forward pass per pixel and colour (slow)"
    )


def _check(spec: ModelSpec, labels: torch.Tensor | None, uniforms: torch.Tensor, temperature: float) -> None:
    if not temperature > 0 or not math.isfinite(temperature):
        raise PixelCNNError(f"--temperature: must be a positive number; got {temperature}")
    if uniforms.dim() != 4 or uniforms.shape[1] != spec.channels:
        raise PixelCNNError(f"uniforms must be N x {spec.channels} x H x W; got {tuple(uniforms.shape)}")
    # a conditioned model's labels are packed contexts: the class, then the h x w condition map
    shape = (uniforms.shape[0],) if not spec.condition_codes else (uniforms.shape[0], 1 + spec.condition_height * spec.condition_width)
    if (labels is None and spec.condition_codes) or (labels is not None and labels.shape != shape):
        got = None if labels is None else tuple(labels.shape)
        raise PixelCNNError(f"labels must be {'None' if not spec.takes_labels else shape} for this model ({uniforms.shape[0]} images); got {got}")


def _start(model: nn.Module, spec: ModelSpec, labels, uniforms, known, keep_rows):
    """Common set-up: device, labels and uniforms moved, the level grid with the kept rows."""
    device = next(model.parameters()).device
    count, channels, height, width = uniforms.shape
    levels = torch.zeros(count, channels, height, width, dtype=torch.long, device=device)
    if keep_rows:
        levels[:, :, :keep_rows] = known[:, :, :keep_rows].to(device)
    labels = labels.to(device) if labels is not None else None
    return device, levels, labels, uniforms.to(device)


# -- the samplers ---------------------------------------------------------------------------


@torch.no_grad()
def sample_naive(
    model: nn.Module,
    spec: ModelSpec,
    labels: torch.Tensor | None,
    uniforms: torch.Tensor,
    temperature: float = 1.0,
    on_step: Progress | None = None,
    *,
    known: torch.Tensor | None = None,
    keep_rows: int = 0,
    on_logits: LogitsHook | None = None,
) -> torch.Tensor:
    """The reference sampler: one full forward pass per pixel and colour. Returns levels ``(N, C, H, W)``.

    With ``known`` levels and ``keep_rows``, the top ``keep_rows`` rows are copied from
    ``known`` and only the rest is sampled.
    """
    model.eval()
    device, levels, labels, uniforms = _start(model, spec, labels, uniforms, known, keep_rows)
    count, channels, height, width = uniforms.shape
    total = channels * (height - keep_rows) * width
    step = 0
    for row in range(keep_rows, height):
        for col in range(width):
            for ch in range(channels):
                x = levels_to_input(levels, spec.color_levels)
                output = model(x, labels)
                # likelihoods are computed pixel by pixel: only this pixel's (a 1 x 1 slice keeps the shapes)
                here = (..., slice(row, row + 1), slice(col, col + 1))
                if on_logits:
                    on_logits(row, col, ch, level_logits(model, output[here], x[here])[:, :, ch, 0, 0])
                chosen = draw_levels(model, output[here], x[here], ch, uniforms[:, :, row, col], temperature)
                levels[:, ch, row, col] = chosen.to(device)
                step += 1
                if on_step:
                    on_step(step, total)
    return levels


@contextmanager
def intra_op_threads(threads: int | None):
    """Run the block with ``threads`` intra-op CPU threads (``None``: leave as is), then restore."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sample_cached(
    model: nn.Module,
    spec: ModelSpec,
    labels: torch.Tensor | None,
    uniforms: torch.Tensor,
    temperature: float = 1.0,
    on_step: Progress | None = None,
    *,
    known: torch.Tensor | None = None,
    keep_rows: int = 0,
    on_logits: LogitsHook | None = None,
    cpu_threads: int | None = CACHED_CPU_THREADS,
) -> torch.Tensor:
    """The fast sampler: the model's cached incremental state, one pixel at a time.

    Same arguments and result as :func:`sample_naive`; kept rows of ``known`` are fed through
    the caches row by row. On the CPU it runs with ``cpu_threads`` intra-op threads (see
    :data:`CACHED_CPU_THREADS`; ``None`` keeps torch's setting).
    """
    on_cpu = next(model.parameters()).device.type == "cpu"
    with intra_op_threads(cpu_threads if on_cpu else None), torch.no_grad():
        return _sample_cached(model, spec, labels, uniforms, temperature, on_step, known, keep_rows, on_logits)


def _colour_drawer(model: nn.Module, state, temperature: float, on_logits: LogitsHook | None):
    """``draw(row, col, row_inputs, ch, uniforms (B, C)) -> levels (B,)`` for the cached sampler: through the
    model's output at the pixel where the state gives it (:class:`~.contracts.PixelOutputState`), so
    both samplers draw with :func:`.likelihood.draw_levels` from the same numbers; else from the
    state's logits (one colour's where it can: :class:`~.contracts.ColourwiseIncrementalState`)."""
    if isinstance(state, PixelOutputState):
        def draw(row, col, row_inputs, ch, u):
            output, here = state.pixel_output(col, row_inputs), row_inputs[:, :, col, None, None]
            if on_logits:
                on_logits(row, col, ch, level_logits(model, output, here)[:, :, ch, 0, 0])
            return draw_levels(model, output, here, ch, u, temperature)
        return draw
    per_colour = state.colour_logits if isinstance(state, ColourwiseIncrementalState) else None

    def draw(row, col, row_inputs, ch, u):
        logits = (per_colour(col, row_inputs, ch) if per_colour is not None
                  else state.pixel_logits(col, row_inputs)[:, :, ch])
        if on_logits:
            on_logits(row, col, ch, logits)
        return pick(logits, u[:, ch], temperature)
    return draw


def _sample_cached(model, spec, labels, uniforms, temperature, on_step, known, keep_rows, on_logits) -> torch.Tensor:
    model.eval()
    device, levels, labels, uniforms = _start(model, spec, labels, uniforms, known, keep_rows)
    count, channels, height, width = uniforms.shape
    color_levels = spec.color_levels
    state = incremental_model(model).incremental_sampler(labels, count, height, width)
    draw = _colour_drawer(model, state, temperature, on_logits)
    dtype = next(model.parameters()).dtype
    total = channels * (height - keep_rows) * width
    inputs = levels_to_input(levels, color_levels, dtype)  # (B, C, H, W), filled in as we go
    step = 0
    for row in range(height):
        if row >= keep_rows:
            row_inputs = inputs[:, :, row]
            for col in range(width):
                pixel = row_inputs[:, :, col]  # (B, C) view
                for ch in range(channels):
                    chosen = draw(row, col, row_inputs, ch, uniforms[:, :, row, col])
                    levels[:, ch, row, col] = chosen
                    pixel[:, ch] = levels_to_input(chosen, color_levels, dtype)
                    step += 1
                    if on_step:
                        on_step(step, total)
        state.end_row(inputs[:, :, row])
    return levels


def _run(model, spec, labels, uniforms, temperature, sampler, on_step, on_notice, known, keep_rows, on_logits, tf32):
    _check(spec, labels, uniforms, temperature)
    chosen, notice = choose_sampler(model, sampler)
    if notice and on_notice:
        on_notice(notice)
    run = sample_cached if chosen == "cached" else sample_naive
    was_training = model.training
    try:
        with full_fp32(not tf32):
            return run(model, spec, labels, uniforms, temperature, on_step, known=known, keep_rows=keep_rows,
                       on_logits=on_logits)
    finally:
        model.train(was_training)


def sample(
    model: nn.Module,
    spec: ModelSpec,
    labels: torch.Tensor | None,
    uniforms: torch.Tensor,
    temperature: float = 1.0,
    sampler: str = "auto",
    on_step: Progress | None = None,
    on_notice: Notice | None = None,
    on_logits: LogitsHook | None = None,
    tf32: bool = False,
) -> torch.Tensor:
    """Draw ``len(uniforms)`` images of the uniforms' size (levels ``N x C x H x W``).

    ``sampler``: ``auto`` (cached when the model offers it, else naive), ``cached`` (the same,
    but a fallback is worth a notice) or ``naive``. ``on_notice(message)`` hears about a
    fallback; ``on_step(done, total)`` counts pixels x colours. On CUDA it runs in full fp32
    unless ``tf32`` (faster on recent GPUs; the two samplers' logits then differ by TF32 rounding, ~1e-3).
    """
    return _run(model, spec, labels, uniforms, temperature, sampler, on_step, on_notice, None, 0, on_logits, tf32)


def complete(
    model: nn.Module,
    spec: ModelSpec,
    known: torch.Tensor,
    keep_rows: int,
    labels: torch.Tensor | None,
    uniforms: torch.Tensor,
    temperature: float = 1.0,
    sampler: str = "auto",
    on_step: Progress | None = None,
    on_notice: Notice | None = None,
    on_logits: LogitsHook | None = None,
    tf32: bool = False,
) -> torch.Tensor:
    """Keep the top ``keep_rows`` rows of ``known`` (levels ``N x C x H x W``) and sample the rest.

    ``uniforms`` has ``known``'s shape (the kept rows' uniforms are not used). Both samplers
    support it; the cached one feeds the kept rows through its caches. ``tf32``: as for :func:`sample`.
    """
    if known.dim() != 4 or known.shape != uniforms.shape:
        raise PixelCNNError(f"images to complete must be shaped like the uniforms {tuple(uniforms.shape)}; got {tuple(known.shape)}")
    height = known.shape[2]
    if not 0 <= keep_rows < height:
        raise PixelCNNError(f"--keep-rows: must be between 0 and {height - 1} for {height}-row images; got {keep_rows}")
    if known.numel() and (int(known.min()) < 0 or int(known.max()) >= spec.color_levels):
        raise PixelCNNError(f"images to complete must hold levels between 0 and {spec.color_levels - 1}")
    return _run(model, spec, labels, uniforms, temperature, sampler, on_step, on_notice, known.long(), keep_rows,
                on_logits, tf32)


# -- pictures of completions ----------------------------------------------------------------


def hide_rows(pictures: torch.Tensor, keep_rows: int) -> torch.Tensor:
    """``uint8`` pictures ``N x C x H x W`` with the rows from ``keep_rows`` on covered by a
    grey checkerboard (what the model was not shown)."""
    shown = pictures.clone()
    h, w = shown.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    checker = torch.where((yy + xx) % 2 == 0, 96, 160).to(torch.uint8)
    shown[..., keep_rows:, :] = checker[keep_rows:, :]
    return shown


def completion_tiles(originals: torch.Tensor, completions: torch.Tensor, keep_rows: int, color_levels: int,
                     codes: bool = False) -> torch.Tensor:
    """Tiles of a completion grid, row by row: for each source, the original, the kept part and
    its completions. ``originals`` ``S x C x H x W`` and ``completions`` ``(S * n) x C x H x W``
    are levels (or codes), grouped by source; returns ``uint8`` ``(S * (n + 2)) x C' x H x W``."""
    sources = originals.shape[0]
    if sources == 0 or completions.shape[0] % sources:
        raise PixelCNNError("completions must come in equal groups, one per source image")
    per = completions.shape[0] // sources
    orig = levels_to_pictures(originals.cpu(), color_levels, codes)
    comp = levels_to_pictures(completions.cpu(), color_levels, codes).view(sources, per, *orig.shape[1:])
    rows = torch.cat([orig[:, None], hide_rows(orig, keep_rows)[:, None], comp], dim=1)
    return rows.reshape(sources * (per + 2), *orig.shape[1:])
