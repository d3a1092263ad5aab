"""Seeded test data, so that runs on different machines and days are comparable."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

# Python's stdlib: ~60% of files under 8 KiB, a long tail up to a few hundred KiB.
MEDIAN_FILE_BYTES = 4096
MAX_FILE_BYTES = 256 * 1024
FILES_PER_DIR = 40
CHUNK = 1 << 20


@dataclass(frozen=True)
class TreeStats:
    files: int
    dirs: int
    bytes: int


def _payload(rng: random.Random, size: int, block: bytes) -> bytes:
    start = rng.randrange(0, len(block) - size) if size < len(block) else 0
    return block[start : start + size]


def write_stdlib_like_tree(root: Path, files: int, seed: int) -> TreeStats:
    """Write ``files`` files in nested directories, with stdlib-like sizes, under ``root``."""
    rng = random.Random(seed)
    block = rng.randbytes(MAX_FILE_BYTES * 2)
    root.mkdir(parents=True, exist_ok=True)
    total = dirs = 0
    for index in range(files):
        if index % FILES_PER_DIR == 0:
            depth = rng.randint(1, 4)
            directory = root.joinpath(
                *(f"pkg{rng.randrange(25)}" for _ in range(depth - 1)), f"mod{index // FILES_PER_DIR}"
            )
            directory.mkdir(parents=True, exist_ok=True)
            dirs += 1
        size = min(int(rng.lognormvariate(0, 1.2) * MEDIAN_FILE_BYTES), MAX_FILE_BYTES)
        (directory / f"file{index}.py").write_bytes(_payload(rng, size, block))
        total += size
    return TreeStats(files=files, dirs=dirs, bytes=total)


def write_big_file(path: Path, size: int, seed: int) -> None:
    """Write ``size`` bytes of seeded, incompressible data to ``path``."""
    rng = random.Random(seed)
    chunk = rng.randbytes(CHUNK)
    with open(path, "wb") as f:
        remaining = size
        while remaining > 0:
            f.write(chunk[: min(CHUNK, remaining)])
            remaining -= CHUNK
        f.flush()
        os.fsync(f.fileno())


def rewrite_files(paths: list[Path], seed: int) -> None:
    """Change the content of each file (a new, same-sized payload), as an application writing would."""
    rng = random.Random(seed)
    for path in paths:
        size = max(1, path.stat().st_size)
        path.write_bytes(rng.randbytes(min(size, MAX_FILE_BYTES)))
