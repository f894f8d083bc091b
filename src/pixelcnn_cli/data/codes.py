"""``codes``: integer code maps (a VQ-VAE's, say) from ``.npy`` / ``.npz`` files, for a prior over them.

``path`` is an ``N x H x W`` integer array: a ``.npy`` file, or the ``codes`` array of an ``.npz``
(which may also hold ``labels``, ``N`` class numbers, and ``num_codes``, the codebook size ``K``).
The test maps are ``test_path`` (the same layout), or else a seeded ``test_fraction`` of ``path``.
``K`` is ``num_codes`` (the option, then the file's), else the largest code + 1.

A **condition** map per example (a hierarchical prior's coarser level, VQ-VAE-2's top map for its
bottom prior) is the ``condition`` array of the ``.npz`` (or the ``condition`` / ``test_condition``
options, ``.npy`` files): ``N x h x w`` integers, ``h <= H`` and ``w <= W``, of
``condition_codes`` codes (the option, the file's, else the largest + 1). Items then carry the
class and the map packed as one ``labels`` tensor (:func:`~pixelcnn_cli.contracts.pack_context`).

Arrays are memory-mapped (``.npy``, and ``.npz`` members stored without compression, as
``np.savez`` writes them), so opening a million maps reads them once to check their codes and
keeps none in memory; a batch reads only its maps. A compressed ``.npz`` (``np.savez_compressed``)
cannot be mapped and is read into memory.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

from ..contracts import BatchedItems, ImageData, pack_context
from ..errors import DataError

CHUNK_BYTES = 64 * 2**20  # the code check reads this much at a time
MAX_CODES = 65536


class CodesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="N x H x W integer codes: a .npy file, or an .npz with 'codes' (and 'labels', 'num_codes')")
    test_path: Optional[str] = Field(None, description="The test maps, as path [default: a seeded test_fraction of path]")
    labels_path: Optional[str] = Field(None, description="A .npy of N class numbers for a .npy path (an .npz holds its own 'labels')")
    test_labels_path: Optional[str] = Field(None, description="The same for a .npy test_path")
    num_codes: Optional[int] = Field(None, ge=2, le=MAX_CODES, description="The codebook size K [default: the file's num_codes, else the largest code + 1]")
    condition: Optional[str] = Field(None, description="A .npy of N x h x w condition codes for a .npy path (an .npz holds its own 'condition')")
    test_condition: Optional[str] = Field(None, description="The same for a .npy test_path")
    condition_codes: Optional[int] = Field(None, ge=2, le=MAX_CODES, description="The condition's codebook size [default: the file's condition_codes, else the largest + 1]")
    test_fraction: float = Field(0.1, gt=0, lt=1, description="Without test_path: the share of path held out as the test split")
    split_seed: int = Field(0, description="Without test_path: the seed of the split")


class CodeMaps(Dataset):
    """Maps ``maps[indices]`` (``None``: all) as ``(long 1 x H x W, label)`` items; a batch in one
    read. With ``condition`` maps, an item's label is its packed context (class, then the map)."""

    def __init__(self, maps: np.ndarray, labels: np.ndarray | None, indices: np.ndarray | None = None,
                 condition: np.ndarray | None = None):
        self.maps, self.labels, self.indices, self.condition = maps, labels, indices, condition

    def __len__(self) -> int:
        return len(self.maps) if self.indices is None else len(self.indices)

    def _rows(self, index: Any) -> Any:
        return index if self.indices is None else self.indices[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        batch = self.__getitems__([index])
        label = batch.labels[0]
        return batch.images[0], (int(label) if label.ndim == 0 else label)

    def __getitems__(self, indices: list[int]) -> BatchedItems:
        rows = self._rows(np.asarray(indices, dtype=np.int64))
        maps = torch.from_numpy(np.asarray(self.maps[rows], dtype=np.int64))[:, None]
        labels = torch.from_numpy(np.asarray(self.labels[rows], dtype=np.int64)) if self.labels is not None \
            else torch.zeros(len(rows), dtype=torch.long)
        if self.condition is not None:
            labels = pack_context(labels, torch.from_numpy(np.asarray(self.condition[rows], dtype=np.int64)))
        return BatchedItems(maps, labels)


def _npz_member(archive: Path, name: str) -> np.ndarray | None:
    """Member ``name`` of an .npz, memory-mapped where it is stored uncompressed; ``None`` if absent."""
    with zipfile.ZipFile(archive) as z:
        info = next((i for i in z.infolist() if i.filename == f"{name}.npy"), None)
        if info is None:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            with z.open(info) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
    with open(archive, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the local file header: its name and extra field lengths at 26 and 28
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
        f.seek(start)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise DataError(f"{archive}['{name}'] holds Python objects, not numbers")
    return np.memmap(archive, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _open(path: Path, name: str, required: bool = True) -> np.ndarray | None:
    """Array ``name`` of ``path`` (a .npy is its one array)."""
    if not path.is_file():
        raise DataError(f"codes: no such file: {path}")
    try:
        if path.suffix == ".npz":
            array = _npz_member(path, name)
        elif path.suffix == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            raise DataError(f"codes: {path} is neither .npy nor .npz")
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"codes: {path} is not a readable {path.suffix} file ({error})") from None
    if array is None and required:
        raise DataError(f"codes: {path} has no '{name}' array")
    return array


def _where(path: Path, name: str) -> str:
    return f"{path}['{name}']" if path.suffix == ".npz" else str(path)


def _checked_maps(path: Path) -> np.ndarray:
    maps = _open(path, "codes")
    where = _where(path, "codes")
    if not np.issubdtype(maps.dtype, np.integer):
        raise DataError(f"codes: {where} is {maps.dtype}; code maps must be integers")
    if maps.ndim != 3:
        raise DataError(f"codes: {where} is shaped {maps.shape}; code maps must be N x H x W")
    if len(maps) == 0:
        raise DataError(f"codes: {where} holds no maps")
    return maps


def _code_range(maps: np.ndarray) -> tuple[int, int]:
    """The smallest and largest code, read a chunk at a time."""
    per = max(1, CHUNK_BYTES // max(1, maps[0].nbytes))
    low, high = None, None
    for start in range(0, len(maps), per):
        chunk = np.asarray(maps[start:start + per])
        low = int(chunk.min()) if low is None else min(low, int(chunk.min()))
        high = int(chunk.max()) if high is None else max(high, int(chunk.max()))
    return low, high


def _labels(path: Path, labels_path: str | None, count: int) -> np.ndarray | None:
    if path.suffix == ".npz":
        if labels_path is not None:
            raise DataError("codes: labels_path is for a .npy path; an .npz holds its own 'labels'")
        labels, where = _open(path, "labels", required=False), _where(path, "labels")
    elif labels_path is not None:
        labels, where = _open(Path(labels_path), "labels"), labels_path
    else:
        return None
    if labels is None:
        return None
    if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
        raise DataError(f"codes: {where} is {labels.dtype} shaped {labels.shape}; labels must be N integers")
    if len(labels) != count:
        raise DataError(f"codes: {where} has {len(labels)} labels for {count} maps")
    if len(labels) and int(labels.min()) < 0:
        raise DataError(f"codes: {where} has a negative label ({int(labels.min())})")
    return labels


def _file_codes(path: Path, name: str = "num_codes") -> int | None:
    """The codebook size an .npz records (``num_codes``, ``condition_codes``), if any."""
    if path.suffix != ".npz":
        return None
    value = _open(path, name, required=False)
    if value is None:
        return None
    if value.shape not in ((), (1,)) or not np.issubdtype(value.dtype, np.integer):
        raise DataError(f"codes: {_where(path, name)} must be one integer")
    return int(value.reshape(()))


def _condition(path: Path, condition_path: str | None, maps: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The condition maps of ``maps`` (the .npz's ``condition``, or the .npy ``condition_path``), checked."""
    if path.suffix == ".npz":
        if condition_path is not None:
            raise DataError("codes: condition is for a .npy path; an .npz holds its own 'condition'")
        condition, where = _open(path, "condition", required=False), _where(path, "condition")
    elif condition_path is not None:
        condition, where = _open(Path(condition_path).expanduser(), "condition"), condition_path
    else:
        return None, ""
    if condition is None:
        return None, ""
    if not np.issubdtype(condition.dtype, np.integer) or condition.ndim != 3:
        raise DataError(f"codes: {where} is {condition.dtype} shaped {condition.shape}; condition maps must be N x h x w integers")
    if len(condition) != len(maps):
        raise DataError(f"codes: {where} has {len(condition)} condition maps for {len(maps)} maps")
    if condition.shape[1] > maps.shape[1] or condition.shape[2] > maps.shape[2]:
        raise DataError(f"codes: {where} holds {condition.shape[1]}x{condition.shape[2]} condition maps, larger than the "
                        f"{maps.shape[1]}x{maps.shape[2]} maps; a condition is coarser or the same size")
    return condition, where


def _count(declared: int | None, arrays: list[tuple[str, np.ndarray]], option: str) -> int:
    """K: asked, recorded or seen; every code of every array must lie in 0 .. K-1."""
    ranges = [(where, *_code_range(m)) for where, m in arrays]
    for where, low, high in ranges:
        if low < 0:
            raise DataError(f"codes: {where} holds a negative code ({low}); codes run from 0 to K-1")
        if declared is not None and high >= declared:
            raise DataError(f"codes: {where} holds code {high}, outside 0..{declared - 1} ({option} {declared})")
    count = declared or 1 + max(high for _, _, high in ranges)
    if not 2 <= count <= MAX_CODES:
        raise DataError(f"codes: {count} codes; pixelcnn models 2 to {MAX_CODES}")
    return count


class _Split:
    """One file's maps, labels and condition maps, checked."""

    def __init__(self, path: Path, labels_path: str | None, condition_path: str | None):
        self.path = path
        self.maps = _checked_maps(path)
        self.labels = _labels(path, labels_path, len(self.maps))
        self.condition, self.condition_where = _condition(path, condition_path, self.maps)

    def agrees_with(self, train: "_Split") -> None:
        """A test file must hold what the training file holds, shaped alike."""
        mine, theirs = _where(self.path, "codes"), _where(train.path, "codes")
        if self.maps.shape[1:] != train.maps.shape[1:]:
            raise DataError(f"codes: {mine} holds {self.maps.shape[1]}x{self.maps.shape[2]} "
                            f"maps, {theirs} {train.maps.shape[1]}x{train.maps.shape[2]}")
        for what, a, b in (("labels", self.labels, train.labels), ("condition maps", self.condition, train.condition)):
            if (a is None) != (b is None):
                raise DataError(f"codes: only {train.path if a is None else self.path} has {what}")
        if self.condition is not None and self.condition.shape[1:] != train.condition.shape[1:]:
            raise DataError(f"codes: {self.condition_where} holds {self.condition.shape[1]}x{self.condition.shape[2]} "
                            f"condition maps, {train.condition_where} {train.condition.shape[1]}x{train.condition.shape[2]}")


class Codes:
    name = "codes"
    description = "integer code maps (a VQ-VAE's) from .npy/.npz files, memory-mapped, with optional condition maps"
    options_model = CodesOptions

    def load(self, data_dir: Path, download: bool, options: CodesOptions | None = None) -> ImageData:
        if options is None:
            raise DataError("codes: give the maps with --dataset-option path=FILE.npy (or .npz)")
        path = Path(options.path).expanduser()
        splits = [_Split(path, options.labels_path, options.condition)]
        if options.test_path is not None:
            splits.append(_Split(Path(options.test_path).expanduser(), options.test_labels_path, options.test_condition))
            splits[1].agrees_with(splits[0])
        first = splits[0]
        count = _count(options.num_codes or _file_codes(path), [(_where(s.path, "codes"), s.maps) for s in splits],
                       "num_codes")
        condition_count, (h, w) = 0, (0, 0)
        if first.condition is not None:
            condition_count = _count(options.condition_codes or _file_codes(path, "condition_codes"),
                                     [(s.condition_where, s.condition) for s in splits], "condition_codes")
            h, w = first.condition.shape[1:]
        classes = None
        if first.labels is not None:
            classes = [str(i) for i in range(1 + max(int(s.labels.max()) for s in splits if len(s.labels)))]
        if options.test_path is not None:
            train, test = (CodeMaps(s.maps, s.labels, condition=s.condition) for s in splits)
        else:
            train, test = _split(first, options.test_fraction, options.split_seed)
        return ImageData(1, first.maps.shape[1], first.maps.shape[2], classes, train, test, codes=count,
                         condition_codes=condition_count, condition_height=h, condition_width=w)


def _split(whole: _Split, fraction: float, seed: int) -> tuple[CodeMaps, CodeMaps]:
    order = np.random.default_rng(seed).permutation(len(whole.maps))
    held = max(1, round(len(whole.maps) * fraction)) if len(whole.maps) > 1 else 0
    test, train = np.sort(order[:held]), np.sort(order[held:])
    return (CodeMaps(whole.maps, whole.labels, rows, whole.condition) for rows in (train, test))


def read_conditions(path: str | Path, spec: Any, count: int) -> torch.Tensor:
    """The condition maps of ``count`` new maps of a conditioned prior (``spec``): a ``.npy`` of
    ``count`` maps, or of one for all, ``h x w`` as the prior was trained on; ``count x h x w`` long."""
    path = Path(path).expanduser()
    if path.suffix != ".npy":
        raise DataError(f"--condition: {path} is not a .npy file of condition maps")
    if not path.is_file():
        raise DataError(f"--condition: no such file: {path}")
    maps = _open(path, "condition")
    shape = (spec.condition_height, spec.condition_width)
    if maps.ndim == 2:
        maps = maps[None]
    if not np.issubdtype(maps.dtype, np.integer) or maps.ndim != 3 or maps.shape[1:] != shape:
        raise DataError(f"--condition: {path} is {maps.dtype} shaped {maps.shape}; the prior reads N x {shape[0]} x {shape[1]} "
                        "integer maps (one per sample, or one for all)")
    if len(maps) not in (1, count):
        raise DataError(f"--condition: {path} holds {len(maps)} condition maps for {count} samples; give {count} or one")
    low, high = _code_range(maps)
    if low < 0 or high >= spec.condition_codes:
        raise DataError(f"--condition: {path} holds code {low if low < 0 else high}, outside 0..{spec.condition_codes - 1}")
    return torch.from_numpy(np.array(maps, dtype=np.int64)).expand(count, *shape).contiguous()  # a copy: the file stays read-only
