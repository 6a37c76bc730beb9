"""How an item's ``source`` is shown to clients: never the server's absolute paths by default.

Items added from the command line record the file they came from, often as an absolute
path (``/home/me/photos/cat.jpg``, ``/data/set.zip::train/1.png``). The service shows
such a source relative to ``root`` when the file lies under it, else only its file name;
dataset references (``mnist/train/12``) and uploads (``upload:cat.png``) are shown as they
are. ``show_paths=True`` shows every source as stored.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

_WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]|^\\\\")


@dataclass(frozen=True)
class SourceView:
    """``view(source) -> str``: the source as clients see it.

    Attributes:
        root: a folder (absolute); sources under it are shown relative to it.
        show_paths: show sources as stored.
    """

    root: str | None = None
    show_paths: bool = False

    def _path(self, path: str) -> str:
        if _WINDOWS_ABS.match(path):
            return PureWindowsPath(path).name
        if not path.startswith("/"):
            return path
        norm = posixpath.normpath(path)
        if self.root:
            root = posixpath.normpath(self.root)
            if norm.startswith(root.rstrip("/") + "/"):
                return posixpath.relpath(norm, root)
        return PurePosixPath(norm).name

    def __call__(self, source: str) -> str:
        if self.show_paths or not source:
            return source
        archive, sep, member = source.partition("::")
        return self._path(archive) + sep + member
