"""Fetching one file from a list of mirror URLs, atomically (used by the dataset downloaders)."""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from hashret.io import atomic_write


def fetch_file(
    urls: Sequence[str],
    dest: Path,
    *,
    timeout: float = 60.0,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Download the first of ``urls`` that works to ``dest``.

    The file is written to a temporary name and moved into place (:func:`hashret.io.atomic_write`),
    so an interrupted download never leaves a partial ``dest``. ``check``, when given, is called
    on the temporary file and may raise to reject it (the next URL is then tried).

    Returns:
        ``dest``.

    Raises:
        RuntimeError: no URL gave a file that passed ``check``; the message lists each URL
            with its error and says where to put a file fetched by hand.
    """
    errors = []
    for url in urls:
        def fetch(tmp: Path, url: str = url) -> None:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
                shutil.copyfileobj(response, f, length=1 << 20)
            if check is not None:
                check(tmp)

        try:
            return atomic_write(dest, fetch)
        except Exception as e:  # noqa: BLE001 - any failure means: try the next mirror
            errors.append(f"  {url}: {type(e).__name__}: {e}")
    raise RuntimeError(
        f"could not download {dest.name}; tried:\n" + "\n".join(errors) + "\n"
        f"Download it by hand from one of these URLs (a browser or curl works) and save it as "
        f"{dest}"
    )
