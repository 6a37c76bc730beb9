"""Directories hashret writes: it replaces only what it wrote there, never a user's files.

Every output directory a command creates (a run, the demo, an index) gets a marker file,
:data:`OWNER_FILE`, naming the kind of directory. The rules (:func:`claim_dir`):

- a missing or empty directory is created and marked;
- a marked directory is hashret's: writing into it again replaces only the entries whose
  names the caller owns (``owned``: names or glob patterns); any other entry (a user's
  file dropped in later) is left in place and reported;
- an unmarked directory with anything in it is refused with the fix (``--overwrite``);
  with ``overwrite`` hashret writes into it, replacing only its own entry names, and
  deletes nothing else.

No function here deletes an entry whose name the caller does not own.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from hashret import __version__
from hashret.io import write_json

#: the marker file of a directory hashret made
OWNER_FILE = ".hashret"


def owned_entries(root: Path, owned: Iterable[str]) -> list[Path]:
    """Entries directly in ``root`` whose names match one of ``owned`` (names or globs)."""
    patterns = list(owned)
    return sorted(p for p in root.iterdir()
                  if p.name != OWNER_FILE and any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns))


def foreign_entries(root: Path, owned: Iterable[str]) -> list[Path]:
    """Entries directly in ``root`` that hashret did not write (names outside ``owned``)."""
    mine = set(owned_entries(root, owned))
    return sorted(p for p in root.iterdir() if p not in mine and p.name != OWNER_FILE)


def marker_kind(root: Path) -> str | None:
    """The kind recorded in ``root``'s marker, or None where ``root`` has no (readable) marker."""
    try:
        return str(json.loads((root / OWNER_FILE).read_text())["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mark_dir(root: Path, kind: str) -> None:
    """Write the marker saying ``root`` is a hashret directory of ``kind`` (``run``, ``index``, ...)."""
    write_json(root / OWNER_FILE, {"written_by": "hashret", "kind": kind, "version": __version__})


def _names(paths: list[Path], most: int = 5) -> str:
    shown = [p.name + ("/" if p.is_dir() else "") for p in paths[:most]]
    return ", ".join(shown) + (f" and {len(paths) - most} more" if len(paths) > most else "")


def claim_dir(root: str | Path, kind: str, owned: Iterable[str], *, overwrite: bool = False,
              replace: bool = True, compatible: Iterable[str] = (), what: str = "--out",
              write: bool = True) -> list[Path]:
    """Make ``root`` a directory of ``kind`` that hashret may write into; return foreign entries.

    Args:
        root: the directory (created with its parents when missing).
        kind: what it holds (``"run"``, ``"demo"``, ``"index"``); recorded in the marker.
        owned: the entry names (or glob patterns) this kind of directory writes.
        overwrite: the user's ``--overwrite``: also write into an unmarked non-empty directory.
        replace: delete the owned entries already there (a fresh start); False keeps them
            (a caller that resumes or replaces files one by one).
        compatible: other kinds this one may write into without ``overwrite`` (a run into
            the demo's directory); their marker is kept.
        what: the option that named ``root``, for messages.
        write: False only checks (raises as it would) and changes nothing: the other
            processes of a multi-process job, while one of them claims.

    Returns:
        The entries left in place because hashret did not write them (reported by the caller).

    Raises:
        ValueError: ``root`` is a file; or it holds entries, ``overwrite`` is False and it is
            not a hashret directory of this kind (the message lists them and gives the fix).
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{what} {root} is a file: give a directory")
    owned = list(owned)
    found = marker_kind(root) if root.exists() else None
    accepted = found in (kind, *compatible)
    if root.exists() and any(root.iterdir()) and not accepted and not overwrite:
        if found is not None:
            raise ValueError(
                f"{what} {root} is a hashret {found} directory, not a {kind} directory: choose "
                f"another {what}, or pass --overwrite to replace hashret's files there"
            )
        raise ValueError(
            f"{what} {root} already holds files that hashret did not write "
            f"({_names(sorted(root.iterdir()))}): choose another {what} (a new or empty folder), "
            f"or pass --overwrite to write into it anyway (hashret then replaces only its own "
            f"file names there and deletes nothing else)"
        )
    if not write:
        return []
    root.mkdir(parents=True, exist_ok=True)
    if replace:
        for path in owned_entries(root, owned):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    if not accepted:
        mark_dir(root, kind)
    return foreign_entries(root, owned)


def describe_foreign(root: Path, foreign: list[Path]) -> str:
    """One line for the user: which entries of ``root`` hashret left alone."""
    return f"note: left {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} in {root} " \
           f"that hashret did not write: {_names(foreign)}"
