"""The files of a split on disk: where they may be, their checksums, downloading them, and reading
them (checked) into tensors, cached in-process.

The files are the official gzipped IDX files in torchvision's layout
(``<root>/FashionMNIST/raw/train-images-idx3-ubyte.gz`` ...). Every problem a user can cause
(missing file, corrupt file, wrong layout) raises a :class:`~cnnzoo.errors.CnnzooError` whose
message is one sentence that names the file, says what is wrong and what to do. A split is either
read whole and valid, or not at all.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torchvision.datasets.utils import download_url

from cnnzoo.data.catalog import DATASETS, DatasetInfo, PathLike, resolve_data_root
from cnnzoo.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, IdxFormatError, decode_idx_gz, parse_idx
from cnnzoo.errors import CnnzooError

__all__ = ["clear_cache", "read_split"]

_FIX = "set CNNZOO_DATA (or --data-dir) to a folder that holds good copies"

# torchvision lists the MD5 of each official .gz only; an extracted copy (``gunzip``'s output) is
# checked against the MD5 of the official file's decompressed bytes, keyed here by the .gz's MD5.
# Computed once from the official files (whose .gz MD5s match torchvision's list).
EXTRACTED_MD5 = {
    # Fashion-MNIST
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "25c81989df183df01b3e8a0aad5dffbe": "9018921c3c673c538a1fc5bad174d6f9",
    "bef4ecab320f06d8554ea6380940ec79": "8181f5470baa50b63fa0f6fddb340f0a",
    "bb300cfdad3c16e7a12a480ee83cd310": "15d484375f8d13e6eb1aabb0c3f46965",
    # MNIST
    "f68b3c2dcbeaaa9fbdd348bbdeb94873": "6bbc9ace898e44ae57da46a324031adb",
    "d53e105ee54ea40749a09fcbcd1e9432": "a25bea736e30d166cdddb491f175f624",
    "9fb629c4189551a2d022fa330f9573f3": "2646ac647ad5339dbf082846283269ea",
    "ec29112dd5afa0611ce80d1b7f02629c": "27ae3e4e09519cfbb04c329615203637",
}


def _raw_dir_candidates(root: Path, info: DatasetInfo) -> list[Path]:
    """Where the files of a data set may be: ``root/<folder>/raw`` (torchvision's layout);
    also accept a root that already points at ``<folder>`` or at ``<folder>/raw``."""
    candidates = [root / info.folder / "raw"]
    if root.name == info.folder:
        candidates.append(root / "raw")
    if root.name == "raw" and root.parent.name == info.folder:
        candidates.append(root)
    return candidates


def _md5(data: bytes) -> str:
    # The same digest as torchvision.datasets.utils.calculate_md5, taken from the bytes we
    # decode (one read, so the checked bytes are the parsed bytes).
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CnnzooError(f"Cannot read {path} ({exc.strerror or exc}); check its permissions or {_FIX}.") from None


def _load_idx_file(path: Path, md5: str | None, expect_magic: int) -> torch.Tensor:
    """Read ``path`` (a ``.gz``, or an already-extracted file), checked against ``md5`` (the official
    MD5 of that form of the file) whenever one is known."""
    data = _read_bytes(path)
    name = str(path)
    gzipped = path.suffix == ".gz"
    if md5 is not None:
        got = _md5(data)
        if got != md5:
            try:  # say what is wrong with it, if we can tell
                parse_idx(decode_idx_gz(data, name=name) if gzipped else data, name=name, expect_magic=expect_magic)
                diagnosis = "its contents differ from the official file"
            except IdxFormatError as exc:
                diagnosis = exc.reason
            raise CnnzooError(
                f"{name} fails its checksum (MD5 {got}, expected the official {md5}: {diagnosis}); "
                f"delete it so it is downloaded again, or {_FIX}."
            )
    return parse_idx(decode_idx_gz(data, name=name) if gzipped else data, name=name, expect_magic=expect_magic)


def _decode_split(info: DatasetInfo, split: str, images_path: Path, labels_path: Path, md5s) -> tuple[torch.Tensor, torch.Tensor]:
    images = _load_idx_file(images_path, md5s[0], IDX_IMAGES_MAGIC)
    labels = _load_idx_file(labels_path, md5s[1], IDX_LABELS_MAGIC)
    _, height, width = info.image_shape
    if tuple(images.shape[1:]) != (height, width):
        raise CnnzooError(
            f"{images_path} holds images of {tuple(images.shape[1:])} pixels, not the {height}x{width} of "
            f"{info.display_name}; {_FIX}."
        )
    expected_n = info.split_size(split)
    if images.shape[0] != labels.shape[0]:
        raise CnnzooError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels "
            f"(the counts must match); {_FIX}."
        )
    if images.shape[0] != expected_n:
        raise CnnzooError(
            f"{images_path} holds {images.shape[0]} images, not the {expected_n} of the {info.display_name} "
            f"{split} split; {_FIX}."
        )
    if labels.numel() and int(labels.max()) >= info.num_classes:
        bad = int((labels >= info.num_classes).nonzero()[0, 0])
        raise CnnzooError(
            f"{labels_path} has label {int(labels[bad])} at index {bad}, out of range for the "
            f"{info.num_classes} classes of {info.display_name}; {_FIX}."
        )
    return images.unsqueeze(1).contiguous(), labels.to(torch.int64)


@functools.lru_cache(maxsize=8)
def _decode_split_cached(key: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    name, split, images_path, labels_path, md5s = key[:5]
    return _decode_split(DATASETS[name], split, Path(images_path), Path(labels_path), md5s)


def clear_cache() -> None:
    """Forget the decoded splits kept in memory by :func:`load_split`."""
    _decode_split_cached.cache_clear()


def _find_files(root: Path, info: DatasetInfo, split: str):
    """``(raw_dir, [(path, md5 or None), ...])`` if both files of ``split`` exist somewhere
    among the candidate folders (gz preferred, an extracted copy accepted, each with its official
    MD5), else ``(None, (folder, its missing files))`` for the folder that holds most of them."""
    wanted = info.files(split)
    candidates = _raw_dir_candidates(root, info)
    nearest = (candidates[0], [f for f, _ in wanted])
    for raw in candidates:
        found, missing = [], []
        for filename, md5 in wanted:
            gz = raw / filename
            plain = raw / filename[: -len(".gz")]
            if gz.is_file():
                found.append((gz, md5))
            elif plain.is_file():
                found.append((plain, EXTRACTED_MD5.get(md5)))
            else:
                missing.append(filename)
        if not missing:
            return raw, found
        if len(missing) < len(nearest[1]):
            nearest = (raw, missing)
    return None, nearest


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _download(info: DatasetInfo, raw_dir: Path, split: str) -> None:
    """Fetch the missing files of ``split`` into ``raw_dir`` from torchvision's mirrors. Each
    file is downloaded into a temporary folder, MD5-checked, then renamed into place, so an
    interrupted download never leaves a partial file behind."""
    for filename, md5 in info.files(split):
        target = raw_dir / filename
        if target.is_file():
            continue
        errors = []
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=raw_dir))
        try:
            for mirror in info.mirrors:
                try:
                    download_url(f"{mirror}{filename}", root=str(tmp), filename=filename, md5=md5)
                    downloaded = tmp / filename
                    if not downloaded.is_file() or _md5(downloaded.read_bytes()) != md5:
                        raise RuntimeError("the downloaded file is missing or fails its MD5 check")
                    os.replace(downloaded, target)
                    break
                except Exception as exc:  # network errors come in many types
                    errors.append(f"{mirror}: {exc}")
            else:
                raise CnnzooError(
                    f"Could not download {filename} for {info.display_name} into {raw_dir} "
                    f"({'; '.join(errors) or 'no mirrors'}); put the official files there by hand, or {_FIX}."
                )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def read_split(info: DatasetInfo, split: str, root: PathLike | None = None,
               download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of one official split, uint8 (N, 1, H, W) and int64 (N,), on the CPU.

    ``root`` defaults to :func:`~cnnzoo.data.resolve_data_root`. Missing files are downloaded from
    torchvision's mirrors when ``download`` is true and the folder is writable. The ``.gz`` files
    are MD5-checked and parsed in memory (an already-extracted IDX file next to them is accepted
    when the ``.gz`` is absent, checked against the official extracted file's MD5). Decoded tensors are cached in-process, keyed by path, size and
    modification time, so repeated reads are cheap; treat them as read-only.
    """
    root_path = resolve_data_root(root)
    _check_root(root_path, explicit=(root is not None and str(root) != "") or bool(os.environ.get("CNNZOO_DATA")))
    raw_dir, found = _find_files(root_path, info, split)
    if raw_dir is None:
        target, missing = found
        hint = (
            f"set CNNZOO_DATA (or --data-dir) to the folder that contains {info.folder}/raw/, "
            f"or put the official files in {target}"
        )
        if not download:
            raise CnnzooError(
                f"{info.display_name} {split} data not found: {target} lacks {', '.join(missing)}; "
                f"{hint}, or allow downloading."
            )
        if not _writable_dir(target):
            raise CnnzooError(
                f"{info.display_name} {split} data not found and cannot be downloaded: {target} lacks "
                f"{', '.join(missing)} and is not writable; {hint}."
            )
        _download(info, target, split)
        raw_dir, found = _find_files(root_path, info, split)
        if raw_dir is None:  # pragma: no cover - _download raises first
            raise CnnzooError(f"{info.display_name} {split} data is still missing from {target} after downloading.")
    (images_path, images_md5), (labels_path, labels_md5) = found
    key = (info.name, split, str(images_path.resolve()), str(labels_path.resolve()), (images_md5, labels_md5))
    key += tuple(_stat_key(p) for p in (images_path, labels_path))
    images, labels = _decode_split_cached(key)
    return images, labels


def _check_root(root: Path, explicit: bool) -> None:
    """A data root that is a file, or a named one that does not exist, is a mistake to report: creating
    a folder tree under a mistyped --data-dir and downloading into it would hide the typo."""
    if root.exists() and not root.is_dir():
        raise CnnzooError(f"The data folder {root} is a file, not a folder; point --data-dir (or CNNZOO_DATA) at "
                          "the folder that contains FashionMNIST/ and MNIST/.")
    if explicit and not root.exists():
        raise CnnzooError(f"The data folder {root} does not exist; check the spelling of --data-dir (or "
                          "CNNZOO_DATA), or create the folder first to download the data into it.")


def _stat_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino)
