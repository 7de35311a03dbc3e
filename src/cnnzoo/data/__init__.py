"""Data: Fashion-MNIST and MNIST loaded whole onto the device, batched, augmented and resized there.

- :func:`load_data` / :func:`load_split` -> :class:`DataBundle` / :class:`DataSplit`
- :class:`BatchIterator` (with :class:`Augment`) yields ``(x, y)`` batches on the device
- :class:`InputSpec` is what a model is fed (size, mean, std, resize mode); :func:`preprocess` is the
  one uint8 -> model-input conversion that applies it
- :func:`load_image` reads a user's image for ``predict``
"""

from cnnzoo.data.batches import Augment, BatchIterator, epoch_seed
from cnnzoo.data.catalog import (
    DATASETS,
    SPLITS,
    DatasetInfo,
    canonical_dataset_name,
    get_dataset_info,
    resolve_data_root,
)
from cnnzoo.data.files import clear_cache
from cnnzoo.data.idx import IdxFormatError, decode_idx_gz, parse_idx
from cnnzoo.data.splits import DataBundle, DataSplit, load_data, load_split
from cnnzoo.data.transforms import InputSpec, preprocess, resolve_input_size
from cnnzoo.data.images import MAX_IMAGE_PIXELS, load_image

__all__ = [
    "Augment",
    "BatchIterator",
    "DATASETS",
    "DataBundle",
    "DataSplit",
    "DatasetInfo",
    "IdxFormatError",
    "InputSpec",
    "MAX_IMAGE_PIXELS",
    "SPLITS",
    "canonical_dataset_name",
    "clear_cache",
    "decode_idx_gz",
    "epoch_seed",
    "get_dataset_info",
    "load_data",
    "load_image",
    "load_split",
    "parse_idx",
    "preprocess",
    "resolve_data_root",
    "resolve_input_size",
]
