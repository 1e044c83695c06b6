"""Decoding image files (with Pillow, never torchvision) and caching decoded arrays as ``.npz``.

Used by the TinyImageNet and ImageFolder loaders. Pillow ships with matplotlib, a netgrow
dependency; if it is missing the error says to ``pip install pillow``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from netgrow.errors import DataError, NetgrowValueError

log = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTENSIONS", "read_image", "read_images", "cache_dir", "cached_arrays"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
CACHE_ENV = "NETGROW_CACHE_DIR"


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - Pillow comes with matplotlib
        raise DataError(
            "netgrow.data: reading image files needs Pillow; install it with `pip install pillow`"
        ) from e
    return Image


def is_image(path: Path) -> bool:
    """True for a visible file whose extension is a known image type (case-insensitive)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: Path, mode: str = "RGB", size: tuple[int, int] | None = None) -> np.ndarray:
    """One image as ``uint8`` C×H×W in ``mode`` ("RGB" or "L"), resized (bilinear) to ``size=(H, W)``."""
    if mode not in ("RGB", "L"):
        raise NetgrowValueError(f"netgrow.data: image mode={mode!r}; use 'RGB' or 'L'")
    image_mod = _pil()
    try:
        with image_mod.open(path) as im:
            im = im.convert(mode)  # TinyImageNet mixes grey JPEGs among colour ones
            if size is not None and (im.height, im.width) != tuple(size):
                im = im.resize((size[1], size[0]), image_mod.BILINEAR)
            arr = np.array(im, dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"netgrow.data: cannot decode image {path}: {e}") from e
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def read_images(
    paths: Sequence[Path],
    mode: str = "RGB",
    size: tuple[int, int] | None = None,
    desc: str = "images",
    progress: bool | None = None,
) -> np.ndarray:
    """Decode ``paths`` into one ``uint8`` N×C×H×W array, with a tqdm progress bar.

    Without ``size`` every image must have the size of the first; otherwise a :class:`DataError`
    names the odd file and suggests ``size=``. ``progress=None`` shows the bar only on a terminal.
    """
    if not paths:
        raise DataError(f"netgrow.data: no image files to read for {desc}")
    first = read_image(paths[0], mode, size)
    out = np.empty((len(paths),) + first.shape, dtype=np.uint8)
    out[0] = first
    disable = None if progress is None else not progress
    for i, p in enumerate(tqdm(paths[1:], desc=desc, initial=1, total=len(paths), disable=disable, unit="img"), 1):
        arr = read_image(p, mode, size)
        if arr.shape != first.shape:
            raise DataError(
                f"netgrow.data: {p} is {arr.shape[1]}×{arr.shape[2]} but {paths[0]} is "
                f"{first.shape[1]}×{first.shape[2]}; pass size=(H, W) to resize every image"
            )
        out[i] = arr
    return out


def cache_dir() -> Path:
    """``$NETGROW_CACHE_DIR``, else ``$XDG_CACHE_HOME/netgrow``, else ``~/.cache/netgrow``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "netgrow"


def fingerprint(files: Sequence[Path], extra: str = "") -> str:
    """A short hash of file names, sizes and modification times (changes when the data does)."""
    h = hashlib.sha256(extra.encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cached_arrays(
    key: str, build: Callable[[], dict[str, np.ndarray]], directory: Path | None
) -> dict[str, np.ndarray]:
    """Load arrays from ``directory/key.npz`` or build them and save them there (atomically).

    ``directory=None`` disables caching. An unreadable cache file is rebuilt with a warning; a cache
    directory that cannot be written is skipped with a warning (the data are still returned).
    """
    if directory is None:
        return build()
    path = Path(directory) / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            log.info("netgrow.data: loaded decoded images from cache %s", path)
            return arrays
        except Exception as e:  # truncated/corrupt cache: rebuild it
            log.warning("netgrow.data: ignoring unreadable cache %s (%s); rebuilding", path, e)
    arrays = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        log.info("netgrow.data: cached decoded images in %s", path)
    except OSError as e:
        log.warning("netgrow.data: cannot write cache %s (%s); continuing without it", path, e)
    return arrays
