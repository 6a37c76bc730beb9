"""The bytes of a SQLite database in WAL mode as of one commit, checked chunk by chunk.

The metadata database of an index (``metadata.sqlite``) is changed in place, unlike every
other file of the index, so its SHA-256 cannot simply be recorded once. Instead each
commit of the index *seals* the database: it records the SHA-256 of every
:data:`CHUNK_BYTES` chunk of the database's *image* -- the main file with the pages of the
WAL frames ``[0, frames)`` written over it, which is exactly the file a checkpoint
produces -- together with the WAL position ``(salt1, salt2, frames)``.

Why the image and not the file: SQLite commits rows to the WAL before the index commits
its manifest, and copies WAL pages into the main file (checkpoint) only after. So at any
moment -- mid-add, mid-checkpoint, after a ``kill -9`` anywhere -- the image of the sealed
WAL position is byte-identical to what the manifest recorded, while frames written after
the seal (an add that has not committed, or that died) are simply not part of it. Readers
need no lock and never see a false alarm; a reader's check (``verify``) reads the main
file and the sealed frames and compares every chunk.

Cost: a commit hashes only the chunks its WAL frames touch (twice: the old image is
checked before it is overwritten, so damage next to a changed page is never absorbed into
the new seal), plus the sums file (32 bytes per chunk). A full check reads the whole file.

WAL layout (https://www.sqlite.org/fileformat2.html#walformat): a 32-byte header (magic,
version, page size, checkpoint sequence, salt-1, salt-2, checksum), then frames of a 24-byte
header (page number, database size in pages for the last frame of a transaction, salts,
cumulative checksum) and one page. A frame is valid when its salts match the header's and
its checksum chain holds; SQLite ignores everything from the first invalid frame on.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

#: Bytes per checksummed chunk of the database image (16 pages of 4 KiB).
CHUNK_BYTES = 64 << 10
WAL_HEADER = 32
FRAME_HEADER = 24
_MAGIC = (0x377F0682, 0x377F0683)  # little- / big-endian checksums


@njit(cache=True)
def _wal_checksum(words: np.ndarray, s0: int, s1: int) -> tuple[int, int]:  # pragma: no cover - jitted
    """SQLite's WAL checksum over ``uint32`` words (even count), continuing from ``(s0, s1)``."""
    a = np.uint64(s0)
    b = np.uint64(s1)
    mask = np.uint64(0xFFFFFFFF)
    for i in range(0, len(words), 2):
        a = (a + np.uint64(words[i]) + b) & mask
        b = (b + np.uint64(words[i + 1]) + a) & mask
    return int(a), int(b)


@dataclass(frozen=True)
class WalMark:
    """A position in the WAL: the frames ``[0, frames)`` of the WAL cycle with these salts."""

    salt1: int
    salt2: int
    frames: int


@dataclass
class Wal:
    """The valid frames of a WAL file.

    Attributes:
        salts: ``(salt1, salt2)`` of the header, ``None`` when there is no WAL (or an empty one).
        page_size: database page size in bytes.
        pages: page number (1-based) of each valid frame, in order.
        db_pages: database size in pages recorded by each frame (0 unless it ends a transaction).
        data: the page content of each valid frame.
        end: frames up to and including the last one that ends a transaction.
    """

    salts: tuple[int, int] | None
    page_size: int
    pages: list[int]
    db_pages: list[int]
    data: list[bytes]
    end: int

    def mark(self) -> WalMark | None:
        """The position after the last complete transaction (``None``: nothing in the WAL)."""
        if self.salts is None or self.end == 0:
            return None
        return WalMark(self.salts[0], self.salts[1], self.end)


def wal_path(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def read_wal(db: Path, *, validate: bool = True, limit: int | None = None) -> Wal:
    """Read the WAL of database ``db``.

    Args:
        validate: check SQLite's checksum chain (what the writer does to find the end of the
            committed frames); without it, frames are taken while their salts match.
        limit: read at most this many frames.
    """
    path = wal_path(db)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        blob = b""
    if len(blob) < WAL_HEADER:
        return Wal(None, 0, [], [], [], 0)
    magic, _version, page_size, _seq, salt1, salt2, c0, c1 = struct.unpack(">8I", blob[:WAL_HEADER])
    if magic not in _MAGIC:
        return Wal(None, 0, [], [], [], 0)
    order = "<u4" if magic == _MAGIC[0] else ">u4"
    s = (c0, c1)
    if validate and _wal_checksum(np.frombuffer(blob[:24], order), 0, 0) != s:
        return Wal(None, page_size, [], [], [], 0)
    pages, db_pages, data = [], [], []
    end, pos, step = 0, WAL_HEADER, FRAME_HEADER + page_size
    while pos + step <= len(blob) and (limit is None or len(pages) < limit):
        pgno, size, f1, f2, k0, k1 = struct.unpack(">6I", blob[pos : pos + FRAME_HEADER])
        if (f1, f2) != (salt1, salt2):
            break
        page = blob[pos + FRAME_HEADER : pos + step]
        if validate:
            s = _wal_checksum(np.frombuffer(blob[pos : pos + 8], order), *s)
            s = _wal_checksum(np.frombuffer(page, order), *s)
            if s != (k0, k1):
                break
        pages.append(pgno)
        db_pages.append(size)
        data.append(page)
        if size:
            end = len(pages)
        pos += step
    return Wal((salt1, salt2), page_size, pages, db_pages, data, end)


class Image:
    """The database image of a WAL position: ``main file ⊕ frames [0, mark.frames)``.

    Args:
        db: the database file.
        mark: the sealed WAL position; when the WAL holds another cycle (it was checkpointed
            and restarted) or nothing, the image is the main file alone.
    """

    def __init__(self, db: Path, mark: WalMark | None) -> None:
        self.db = db
        self.overlay: dict[int, bytes] = {}
        self.page_size = 0
        self.problem: str | None = None
        size = None
        for _attempt in range(3):  # the WAL is read before the main file: a concurrent
            if mark is None:       # checkpoint then never makes the two disagree
                break
            wal = read_wal(db, validate=False, limit=mark.frames)
            if wal.salts != (mark.salt1, mark.salt2):
                self.problem = None
                break  # checkpointed and restarted: the main file holds the image
            if len(wal.pages) < mark.frames:  # being truncated by a checkpoint, or damaged
                self.problem = (f"{wal_path(db)} holds {len(wal.pages)} of the {mark.frames} "
                                "committed frames (truncated or overwritten)")
                continue
            self.problem = None
            self.page_size = wal.page_size
            for pgno, page in zip(wal.pages, wal.data, strict=True):
                self.overlay[pgno] = page  # the last frame of a page wins
            size = wal.db_pages[mark.frames - 1] * wal.page_size
            break
        main = db.stat().st_size  # FileNotFoundError for a missing database
        self.size = main if size is None else size

    def chunks(self) -> int:
        return -(-self.size // CHUNK_BYTES)

    def read_chunk(self, f, i: int) -> bytes:  # noqa: ANN001 - an open binary file
        """The bytes of chunk ``i`` of the image (shorter when the main file is too short)."""
        lo, hi = i * CHUNK_BYTES, min((i + 1) * CHUNK_BYTES, self.size)
        f.seek(lo)
        buf = bytearray(f.read(hi - lo))
        if self.overlay:
            ps = self.page_size
            for pgno in range(lo // ps + 1, (hi - 1) // ps + 2):
                page = self.overlay.get(pgno)
                if page is None:
                    continue
                a = (pgno - 1) * ps - lo
                if a > len(buf):
                    buf.extend(bytes(a - len(buf)))  # cannot happen for a complete image
                buf[a : a + ps] = page[: hi - lo - a]
        return bytes(buf)

    def sums(self, which: set[int] | range | None = None) -> dict[int, bytes]:
        """SHA-256 of the chunks ``which`` (default: all)."""
        which = range(self.chunks()) if which is None else which
        out = {}
        with open(self.db, "rb") as f:
            for i in sorted(which):
                out[i] = hashlib.sha256(self.read_chunk(f, i)).digest()
        return out


def all_sums(image: Image) -> np.ndarray:
    """``uint8[chunks, 32]`` the SHA-256 of every chunk of ``image``."""
    sums = image.sums()
    out = np.zeros((len(sums), 32), np.uint8)
    for i, digest in sums.items():
        out[i] = np.frombuffer(digest, np.uint8)
    return out


def mismatched_chunks(image: Image, sums: np.ndarray) -> list[int]:
    """Chunks whose SHA-256 differs from ``sums`` (every chunk is read)."""
    if image.chunks() != len(sums):
        return list(range(max(image.chunks(), len(sums))))
    got = all_sums(image)
    return np.flatnonzero((got != sums).any(axis=1)).tolist()


def _chunks_of_pages(pages: set[int], page_size: int) -> set[int]:
    out: set[int] = set()
    for pgno in pages:
        lo = (pgno - 1) * page_size
        out.update(range(lo // CHUNK_BYTES, (lo + page_size - 1) // CHUNK_BYTES + 1))
    return out


class ImageChanged(ValueError):
    """The database's bytes differ from the previous seal (damaged since the last commit)."""

    def __init__(self, chunks: list[int]) -> None:
        super().__init__(f"{len(chunks)} chunk(s) of {CHUNK_BYTES} bytes changed, first at byte "
                         f"{chunks[0] * CHUNK_BYTES if chunks else 0}")
        self.chunks = chunks


def seal(db: Path, prev_mark: WalMark | None = None, prev_sums: np.ndarray | None = None,
         prev_size: int | None = None) -> tuple[WalMark | None, int, np.ndarray]:
    """Seal the database's current committed state: ``(mark, size, sums uint8[chunks, 32])``.

    With ``prev_sums`` (the previous seal) only the chunks that the WAL frames written since
    it touch are hashed, after checking that those chunks of the previous image still
    match ``prev_sums``; without, every chunk is hashed.

    Raises:
        ImageChanged: the previous image no longer matches its seal (damaged database).
    """
    wal = read_wal(db, validate=True)
    mark = wal.mark()
    new = Image(db, mark)
    if prev_sums is None:
        return mark, new.size, all_sums(new)
    old = Image(db, prev_mark)
    if old.problem or (prev_size is not None and old.size != prev_size) or old.chunks() != len(prev_sums):
        raise ImageChanged(list(range(len(prev_sums))))
    same_cycle = prev_mark is not None and wal.salts == (prev_mark.salt1, prev_mark.salt2)
    start = prev_mark.frames if same_cycle and prev_mark is not None else 0
    dirty = _chunks_of_pages(set(wal.pages[start : wal.end]), wal.page_size or 1) if wal.end else set()
    if new.size != old.size:  # the partial last chunks change length; new chunks are all new
        dirty |= {max(old.chunks() - 1, 0), max(new.chunks() - 1, 0)}
        dirty |= set(range(old.chunks(), new.chunks()))
    check = {i for i in dirty if i < len(prev_sums)}
    before = old.sums(check)
    bad = sorted(i for i, d in before.items() if d != prev_sums[i].tobytes())
    if bad:
        raise ImageChanged(bad)
    sums = np.zeros((new.chunks(), 32), np.uint8)
    keep = min(len(prev_sums), len(sums))
    sums[:keep] = prev_sums[:keep]
    for i, d in new.sums({i for i in dirty if i < len(sums)}).items():
        sums[i] = np.frombuffer(d, np.uint8)
    return mark, new.size, sums
