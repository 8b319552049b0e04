"""The preprocessed image cache: every image letterboxed once into one memory-mapped uint8 array.

Decoding and resizing 512 px JPEGs dominates a CPU's time per epoch; reading a slice of a
memory-mapped array costs almost nothing. `build_cache` writes the cache (in parallel, atomically);
`open_cache` returns it only while it still matches the source files (size and modification time of
every image), so a changed dataset is never trained on stale pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fashionattr.data.images import ImageError
from fashionattr.data.preprocessing import Preprocessing, load_letterboxed
from fashionattr.errors import DiskFullError
from fashionattr.io import is_disk_full, write_json
from fashionattr.parallel import map_in_processes
from fashionattr.progress import progress as progress_bar

CACHE_DIRNAME = ".fashionattr-cache"
CACHE_VERSION = 1


def cache_dir(root: str | Path, preprocessing: Preprocessing) -> Path:
    """Where the cache of these pixels lives; normalisation is applied later, so it does not count."""
    return Path(root) / CACHE_DIRNAME / preprocessing.pixel_key


def existing_caches(root: str | Path) -> list[str]:
    """Names of the caches built under a dataset root (e.g. `letterbox-224-bilinear`), for messages."""
    folder = Path(root) / CACHE_DIRNAME
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "index.json").is_file())


def _fingerprint(root: Path, paths: list[str]) -> str:
    digest = hashlib.sha256()
    for rel in paths:
        try:
            stat = (root / rel).stat()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{rel}\0missing\n".encode())
    return digest.hexdigest()


class ImageCache:
    """Read access to a built cache: `get(path)` returns the letterboxed HWC uint8 image."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        meta = json.loads((directory / "index.json").read_text(encoding="utf-8"))
        self.img_size: int = meta["img_size"]
        self.slots: dict[str, int] = meta["slots"]
        self.bad: dict[str, str] = meta["bad"]
        self.fingerprint: str = meta["fingerprint"]
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        # Opened lazily so that a cache handed to loader worker processes is mapped in each of them.
        if self._array is None:
            self._array = np.load(self.directory / "images.npy", mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __contains__(self, path: str) -> bool:
        return path in self.slots

    def get(self, path: str) -> np.ndarray:
        return np.asarray(self.array[self.slots[path]])


def _load_one(args: tuple[str, Preprocessing]) -> np.ndarray | str:
    path, preprocessing = args
    try:
        return load_letterboxed(path, preprocessing)
    except ImageError as exc:
        return exc.reason


def build_cache(
    root: str | Path,
    paths: list[str],
    preprocessing: Preprocessing,
    workers: int | None = None,
    progress: bool = True,
) -> ImageCache:
    """Letterbox every image in `paths` (relative to `root`) into a new cache; bad images are recorded, not fatal."""
    root = Path(root)
    paths = sorted(set(paths))
    target = cache_dir(root, preprocessing)
    img_size = preprocessing.img_size
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError.writing(target, exc) from None
        raise
    try:
        array = np.lib.format.open_memmap(staging / "images.npy", mode="w+", dtype=np.uint8,
                                          shape=(len(paths), img_size, img_size, 3))  # fmt: skip
        reserve_space(staging / "images.npy")
        slots: dict[str, int] = {}
        bad: dict[str, str] = {}
        jobs = [(str(root / p), preprocessing) for p in paths]
        with progress_bar(len(jobs), desc=f"caching {img_size}px", unit="img", enabled=progress) as bar:
            results = map_in_processes(_load_one, jobs, workers)
            for slot, (rel, result) in enumerate(zip(paths, results, strict=True)):
                if isinstance(result, str):
                    bad[rel] = result
                else:
                    array[slot] = result
                    slots[rel] = slot
                bar.update()
        array.flush()
        del array
        meta = {"version": CACHE_VERSION, "preprocessing": preprocessing.to_dict(), "img_size": img_size,
                "fingerprint": _fingerprint(root, paths), "slots": slots, "bad": bad}  # fmt: skip
        write_json(staging / "index.json", meta, indent=None)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(exc) or isinstance(exc, DiskFullError):
            raise DiskFullError(
                f"disk full while building the image cache {target}; nothing of it was kept; free "
                "some space, or train with --cache off",
                path=str(target),
            ) from None
        raise
    return ImageCache(target)


def reserve_space(path: Path) -> None:
    """Allocate the whole cache file now, so a full disk is an error here rather than a crash later.

    The pixels are written through a memory map; on a full disk a write into a page the file system cannot back
    does not fail, it kills the process with SIGBUS.
    """
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as exc:
            if is_disk_full(exc):
                raise
            # A file system that cannot reserve space: the pixels are written as before, without the early check.


def open_cache(root: str | Path, paths: list[str], preprocessing: Preprocessing) -> ImageCache | None:
    """The cache of these images' pixels, or None when there is none, it lacks some, or the source files changed."""
    root = Path(root)
    directory = cache_dir(root, preprocessing)
    if not (directory / "index.json").is_file():
        return None
    try:
        cache = ImageCache(directory)
    except (OSError, ValueError, KeyError):
        return None
    wanted = sorted(set(paths))
    covered = set(cache.slots) | set(cache.bad)
    if not covered.issuperset(wanted):
        return None
    if cache.fingerprint != _fingerprint(root, sorted(covered)):
        return None
    return cache


def describe_cache_miss(root: str | Path, paths: list[str], preprocessing: Preprocessing) -> str | None:
    """Why no cache serves these images, in one line with the `prepare` command that would; None if none exists.

    A cache that exists but does not match would otherwise be ignored without a word, and every epoch decode JPEGs.
    """
    built = existing_caches(root)
    if not built:
        return None
    wanted = preprocessing.pixel_key
    command = (f"fashionattr prepare {root} --size {preprocessing.img_size} "
               f"--interpolation {preprocessing.interpolation}")  # fmt: skip
    if wanted in built:
        return (f"{Path(root) / CACHE_DIRNAME / wanted} is out of date (images changed) or lacks some of this run's "
                f"images, so JPEGs are decoded instead; `{command}` rebuilds it")  # fmt: skip
    return (f"{Path(root) / CACHE_DIRNAME} holds {', '.join(built)}, not the {wanted} this run reads "
            f"({preprocessing.describe()}), so JPEGs are decoded instead; `{command}` builds it, or pass the "
            "cache's size and interpolation to train")  # fmt: skip
