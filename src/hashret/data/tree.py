"""Listing the image files of a folder or a ``.zip`` archive, and reading their bytes.

Both kinds of source look the same to the folder reader: sorted relative POSIX paths
(``"train/cat/0001.jpg"``) and a way to read each file's bytes. A zip is read member by
member, never extracted. When every image sits under one common top-level folder that is
not itself ``train``/``test`` (``cifar10-jpeg/train/...``), that folder is stripped.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: File name extensions read as images (compared in lower case): the one list, for datasets and
#: for `hashret index add` alike (Pillow reads them all)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm",
                              ".ppm"})

#: How deep below the root images are looked for: [top/]train/<class>/<file>.
MAX_DEPTH = 4

SPLIT_NAMES = ("train", "test")


def is_image_name(name: str) -> bool:
    """Whether a file name has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _hidden(parts: tuple[str, ...] | list[str]) -> bool:
    """Dot files / folders and the ``__MACOSX`` resource forks that macOS zips carry."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


@dataclass(frozen=True)
class ImageTree:
    """The image files under a folder or inside a zip.

    Attributes:
        root: the resolved folder or zip file.
        is_zip: whether ``root`` is a zip archive.
        prefix: the stripped common top-level folder (``"cifar10-jpeg/"``) or ``""``.
        paths: sorted relative POSIX paths of the image files, below ``prefix``.
        stats: ``(size, mtime_ns)`` of each file of ``paths`` (folders only; empty for zips).
    """

    root: Path
    is_zip: bool
    prefix: str
    paths: tuple[str, ...]
    stats: tuple[tuple[int, int], ...]

    def fingerprint(self) -> list:
        """What identifies the tree's contents for caching: for a folder, each image's
        ``[path, size, mtime_ns]``; for a zip, the archive's ``[size, mtime_ns]``."""
        if self.is_zip:
            return zip_fingerprint(self.root)
        return [[p, s, m] for p, (s, m) in zip(self.paths, self.stats, strict=True)]

    @contextmanager
    def reader(self) -> Iterator[Callable[[str], bytes]]:
        """A context yielding ``read(path) -> bytes`` for the paths of :attr:`paths`."""
        if self.is_zip:
            with zipfile.ZipFile(self.root) as zf:
                yield lambda path: zf.read(self.prefix + path)
        else:
            base = self.root / self.prefix if self.prefix else self.root
            yield lambda path: (base / path).read_bytes()


def zip_fingerprint(path: Path) -> list[int]:
    """``[size, mtime_ns]`` of a zip archive: what identifies its contents for caching."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _list_folder(root: Path) -> list[tuple[str, int, int]]:
    found = []
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).parts) - root_depth
        dirnames[:] = sorted(d for d in dirnames if not _hidden([d]) and depth + 1 < MAX_DEPTH)
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            if _hidden([name]) or not is_image_name(name):
                continue
            st = os.stat(os.path.join(dirpath, name))
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            found.append((rel, st.st_size, st.st_mtime_ns))
    return found


def _list_zip(root: Path) -> list[tuple[str, int, int]]:
    try:
        with zipfile.ZipFile(root) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{root} is not a readable .zip archive ({e}); check the file") from e
    found = []
    extensions = tuple(IMAGE_EXTENSIONS)
    for info in infos:
        name = info.filename
        if not name.lower().endswith(extensions) or name.count("/") >= MAX_DEPTH:
            continue
        if ("/." in name or name.startswith(".") or "__MACOSX" in name) and _hidden(
            name.split("/")
        ):
            continue
        found.append((name, info.file_size, 0))
    return found


def scan_image_tree(root: str | Path) -> ImageTree:
    """List the image files of a folder or ``.zip`` (up to :data:`MAX_DEPTH` levels deep).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: ``root`` is a file but not a zip archive.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    root = root.resolve()
    if root.is_dir():
        found, is_zip = _list_folder(root), False
    elif zipfile.is_zipfile(root):
        found, is_zip = _list_zip(root), True
    else:
        raise ValueError(
            f"{root} is a file but not a .zip archive: give an image folder or a .zip of one"
        )
    found.sort()
    prefix = ""
    tops = {rel.split("/", 1)[0] for rel, _, _ in found}
    if (
        len(tops) == 1
        and tops.isdisjoint(SPLIT_NAMES)
        and all(rel.count("/") >= 2 for rel, _, _ in found)
    ):
        prefix = tops.pop() + "/"
    return ImageTree(
        root=root,
        is_zip=is_zip,
        prefix=prefix,
        paths=tuple(rel[len(prefix):] for rel, _, _ in found),
        stats=() if is_zip else tuple((size, mtime) for _, size, mtime in found),
    )
