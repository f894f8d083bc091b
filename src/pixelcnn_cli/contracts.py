"""The small contract between the host and its dataset and model plugins.

A **dataset plugin** is an object with a ``name`` and a ``load`` method returning
:class:`ImageData`: the image size, the class names and two ``torch.utils.data.Dataset``
splits whose items are ``(uint8 tensor C x H x W, int label)``. The host quantises, batches,
shuffles and moves to the device. A dataset of **codes** (the integer maps of a VQ-VAE, say) sets
``ImageData.codes`` to their number ``K``: its items are then integer tensors ``1 x H x W`` of
values in ``0 .. K-1`` (any integer dtype), unordered categories that the host neither quantises
nor shows as grey levels, and ``color_levels`` is ``K``. A dataset of codes may give each example a
**condition map** (``ImageData.condition_codes`` and its size): its items' labels are then the
packed context of :func:`pack_context` (the class, then the map), which a model that says
``takes_condition = True`` unpacks with :func:`split_context`.

A **model plugin** is an object with a ``name``, an ``options_model`` (a pydantic model of its
options) and a ``build(options, spec)`` method returning an ``nn.Module`` whose
``forward(x, labels)`` takes images scaled to [-1, 1] (``float``, ``B x C x H x W``) and labels
(``long``, ``B``, or ``None`` for an unconditional model) and returns logits shaped
``(B, color_levels, C, H, W)``. The output at a pixel and colour must depend only on earlier
pixels and earlier colours of the same pixel (``pixelcnn inspect-masks`` checks this). Codes
(``spec.codes``) reach ``forward`` on the same scale, code ``k`` as ``2k / (K - 1) - 1``
(:func:`pixelcnn_cli.input_codes` turns them back into integers, :class:`pixelcnn_cli.CodeEmbedding`
embeds them). A model plugin
that models codes says so with ``takes_codes = True``; the host gives codes to no other.

A model whose likelihood is not a softmax over levels (PixelCNN++'s logistic mixture) returns
what it likes from ``forward`` and defines two methods that say what it means, both computed
pixel by pixel (:mod:`pixelcnn_cli.likelihood` is where the host uses them):

* ``nll(output, x)`` -> ``(B, C, H, W)``: ``-log p`` in nats of each colour of the images ``x``
  (the forward's input) given everything before it; training minimises its mean, ``eval``
  reports it;
* ``level_log_probs(output, x)`` -> ``(B, color_levels, C, H, W)``: each colour's
  log-distribution over every level given the earlier colours in ``x`` (never its own value);
  the samplers draw from it, and ``inspect-masks`` checks its dependencies.

It may also define ``draw_levels(output, x, colour, uniforms, temperature)`` -> ``(B, H, W)``
long: the levels of ``colour`` drawn from that distribution given the earlier colours in ``x``,
from the position's uniforms (``uniforms``, ``B x C x H x W``, float64 in [0, 1), one per colour;
colour ``c`` may read those of colours up to ``c``), for a model that draws cheaper than it computes
every level (the mixture: a component, a logistic value, its bin); ``temperature`` means what the
model says. Both samplers then draw through it; without it they draw from ``level_log_probs``
by the inverse CDF, with the distribution raised to ``1 / temperature``.

A model with logits needs neither: the host applies the softmax. Models written for the first
contract keep working unchanged.

Optional attributes the host reads when present:

* on either plugin, ``description``: one line shown by ``pixelcnn plugins --json``;
* on a model plugin, ``takes_codes = True``: it models datasets of codes (``spec.codes``);
* on a dataset plugin, ``options_model``: a pydantic model of its options (without one, the
  plugin takes none);
* on a built model, ``incremental_sampler(labels, count, height, width)`` returning an
  :class:`IncrementalState` (:class:`SupportsIncremental`): the cached sampler steps it pixel by
  pixel; a model without it is sampled by the naive sampler (one forward pass per pixel and colour).
  A state may also give one colour's logits (:class:`ColourwiseIncrementalState`) or the model's
  output at the pixel (:class:`PixelOutputState`, for a model with its own likelihood);
* on a built model, ``data_init(x, labels)`` (:class:`SupportsDataInit`): a data-dependent
  initialisation (PixelCNN++'s weight norm); a fresh ``train`` run calls it once, before the first
  step, on the first 16 training images (by index, the same on every process; ``x`` and
  ``labels`` as ``forward`` takes them, fp32, on the training device); a resumed run does not;
* on a built model, ``reach`` (an ``int``): how many pixels its view extends up and to the left,
  so ``inspect-masks`` checks an image just large enough to see it whole (``min_check_size``, an
  ``int``: a square the CPU check never shrinks below to fit its budget); ``has_blind_spot =
  True``: the model leaves some earlier pixels unseen by design (the classic PixelCNN), which
  ``inspect-masks`` reports without failing. Use ``nn.ReLU`` modules rather than ``F.relu``: the
  causality check swaps them for leaky ones so that no dependency hides behind a dead unit.

Plugins are registered through the entry-point groups ``pixelcnn.datasets`` and
``pixelcnn.models`` (see :mod:`pixelcnn_cli.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from pydantic import BaseModel
from torch import nn
from torch.utils.data import Dataset


@dataclass(frozen=True)
class ImageData:
    """What a dataset plugin hands the host."""

    channels: int
    height: int
    width: int
    classes: list[str] | None
    train: Dataset
    test: Dataset
    codes: int = 0  # K > 0: the values are K unordered codes (channels 1, integer items), not pixels
    # > 0: every example comes with a condition map of this many codes, condition_height x
    # condition_width (coarser than the data or the same size); its items' labels are then
    # packed contexts (:func:`pack_context`)
    condition_codes: int = 0
    condition_height: int = 0
    condition_width: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else 0


@dataclass(frozen=True)
class ModelSpec:
    """What the data fixes about a model: built from the dataset, saved in checkpoints."""

    channels: int
    height: int
    width: int
    color_levels: int
    num_classes: int = 0  # 0: unconditional
    class_names: list[str] | None = field(default=None, compare=False)
    codes: bool = False  # the values are color_levels unordered codes (channels 1), not pixel levels
    condition_codes: int = 0  # > 0: conditioned on a map of this many codes (ImageData's fields)
    condition_height: int = 0
    condition_width: int = 0

    @property
    def takes_labels(self) -> bool:
        """Whether the model is given ``labels``: classes, a condition map, or both (a context)."""
        return bool(self.num_classes or self.condition_codes)


def pack_context(classes: torch.Tensor | None, condition: torch.Tensor | None) -> torch.Tensor | None:
    """What an example is conditioned on, as the one ``labels`` tensor every command moves,
    slices and batches: ``classes`` (``B``) alone, or with a condition map (``B x h x w``) the
    packed ``B x (1 + h * w)``: the class (0 without classes), then the map in raster order."""
    if condition is None:
        return classes
    condition = condition.reshape(condition.shape[0], -1).long()
    if classes is None:
        classes = torch.zeros(condition.shape[0], dtype=torch.long, device=condition.device)
    return torch.cat([classes.long().reshape(-1, 1), condition], dim=1)


def split_context(labels: torch.Tensor | None, spec: ModelSpec) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``labels`` (:func:`pack_context`) back into the classes (``B``, or ``None`` for a model
    without classes) and the condition map (``B x h x w``, or ``None``)."""
    if labels is None or not spec.condition_codes:
        return (labels if spec.num_classes else None), None
    condition = labels[:, 1:].reshape(-1, spec.condition_height, spec.condition_width)
    return (labels[:, 0] if spec.num_classes else None), condition


def with_classes(labels: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``labels`` with their classes replaced by ``classes`` (``B``), any condition map kept."""
    if labels.ndim == 1:
        return classes.to(labels)
    return torch.cat([classes.to(labels).reshape(-1, 1), labels[:, 1:]], dim=1)


@runtime_checkable
class DatasetPlugin(Protocol):
    name: str

    def load(self, data_dir: Path, download: bool, options: BaseModel | None) -> ImageData: ...


@runtime_checkable
class ModelPlugin(Protocol):
    name: str
    options_model: type[BaseModel]

    def build(self, options: BaseModel, spec: ModelSpec) -> nn.Module: ...


@runtime_checkable
class IncrementalState(Protocol):
    """Per-sampling-run state of a model that can be evaluated pixel by pixel (the cached sampler's).

    Rows are visited in order, starting at 0. For each row the caller either feeds a row it
    already knows (image completion) with :meth:`end_row`, or asks for every pixel's logits in
    column order with :meth:`pixel_logits` (several times per pixel, one per colour, as the
    pixel's colours are drawn) and then calls :meth:`end_row` with the finished row. Its results
    must equal the model's full forward pass (through the softmax, or ``level_log_probs``).
    """

    def pixel_logits(self, col: int, row: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, color_levels, C)`` at column ``col`` of the current row, given that row's
        input values so far ``(B, C, W)`` (model input scale; later pixels and the colours of
        pixel ``col`` not drawn yet are ignored)."""
        ...

    def end_row(self, row: torch.Tensor) -> None:
        """The current row is complete (``(B, C, W)``, model input scale): advance to the next."""
        ...


@runtime_checkable
class ColourwiseIncrementalState(IncrementalState, Protocol):
    """An :class:`IncrementalState` that can also give one colour's logits alone; the sampler then
    asks for one colour at a time (PixelCNN++'s mixture computes one colour for a third of the cost
    of three)."""

    def colour_logits(self, col: int, row: torch.Tensor, colour: int) -> torch.Tensor:
        """``pixel_logits(col, row)[:, :, colour]``: ``(B, color_levels)``."""
        ...


@runtime_checkable
class PixelOutputState(IncrementalState, Protocol):
    """An :class:`IncrementalState` that gives the model's output at a pixel itself, for a model
    with its own likelihood: the cached sampler then draws from it exactly as the naive sampler
    draws from the forward pass (through the model's ``draw_levels`` where it has one), and
    computes the logits only when asked for them."""

    def pixel_output(self, col: int, row: torch.Tensor) -> torch.Tensor:
        """The forward's output at column ``col`` of the current row, ``(B, *, 1, 1)`` (``row`` as
        for :meth:`~IncrementalState.pixel_logits`)."""
        ...


@runtime_checkable
class SupportsIncremental(Protocol):
    """A model that offers cached sampling: the cached sampler uses it, others fall back to the naive one."""

    def incremental_sampler(
        self, labels: torch.Tensor | None, count: int, height: int, width: int
    ) -> IncrementalState: ...


@runtime_checkable
class SupportsDataInit(Protocol):
    """A model initialised from data: a fresh training run calls ``data_init`` once on its init batch
    (images in [-1, 1], ``B x C x H x W``, and labels or ``None``), before the first step."""

    def data_init(self, x: torch.Tensor, labels: torch.Tensor | None) -> None: ...


class EmptyOptions(BaseModel):
    """Options model of a plugin that takes none."""

    model_config = {"extra": "forbid"}


class TensorImageDataset(Dataset):
    """A split held in memory as one ``uint8`` tensor ``N x C x H x W`` and its labels.

    ``__getitems__`` lets the DataLoader fetch a whole batch with one index operation instead
    of one Python call per image.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor N x C x H x W")
        self.images = images
        self.labels = labels if labels is not None else torch.zeros(len(images), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def __getitems__(self, indices: list[int]) -> Any:
        index = torch.as_tensor(indices, dtype=torch.long)
        return BatchedItems(self.images[index], self.labels[index])


@dataclass
class BatchedItems:
    """A batch already gathered by :meth:`TensorImageDataset.__getitems__`."""

    images: torch.Tensor
    labels: torch.Tensor
