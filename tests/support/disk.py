"""Byte scans of what the stores left on disk (issue 12): every file under the
PostgreSQL cluster's data directory (heap, indexes, free space, WAL) and the broker's
log directory (segments and their indexes), read as raw bytes, whatever the file."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

#: Read in pieces with an overlap as long as the longest needle, so a needle that
#: straddles two pieces is found too.
CHUNK_BYTES = 8 << 20


def files_under(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        for directory, _, names in os.walk(root):
            for name in names:
                path = Path(directory) / name
                if path.is_file() and not path.is_symlink():
                    yield path


def find_bytes(roots: Iterable[Path], needles: dict[str, bytes]) -> dict[str, list[Path]]:
    """Which files hold each needle (by its label): a label with no file is absent."""
    found: dict[str, list[Path]] = {label: [] for label in needles}
    overlap = max(len(n) for n in needles.values()) - 1
    for path in files_under(roots):
        hits: set[str] = set()
        try:
            with path.open("rb") as file:
                tail = b""
                while chunk := file.read(CHUNK_BYTES):
                    window = tail + chunk
                    hits.update(label for label, needle in needles.items() if needle in window)
                    tail = window[-overlap:] if overlap else b""
        except FileNotFoundError:  # a WAL segment recycled, a segment deleted, while scanned
            continue
        for label in hits:
            found[label].append(path)
    return found


def scanned_bytes(roots: Iterable[Path]) -> int:
    return sum(path.stat().st_size for path in files_under(roots) if path.exists())
