"""Peer systems: perceptual hashes (imagehash, PDQ) computed the way imagededup does."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.errors import LookalikeError
from lookalike.io import UnreadableImage, load_image
from lookalike.records import FileError


class PeerUnavailable(LookalikeError):
    """A peer system whose library is not installed."""


@dataclass(frozen=True)
class Peer:
    """A perceptual hash and its usual decision rule (Hamming distance <= max_distance)."""

    name: str
    bits: int
    max_distance: int
    description: str


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("phash", 64, 10, "imagehash pHash (DCT), 64 bits"),
        Peer("dhash", 64, 10, "imagehash dHash (gradient), 64 bits"),
        Peer("whash", 64, 10, "imagehash wHash (Haar wavelet), 64 bits"),
        Peer("ahash", 64, 10, "imagehash aHash (average), 64 bits"),
        Peer("pdq", 256, 31, "PDQ (ThreatExchange), 256 bits"),
    )
}
"""Known peers; 10 is imagededup's default distance, 31 ThreatExchange's for PDQ."""


def get_peer(name: str) -> Peer:
    """The peer called `name`, with its library importable (else a clear error)."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; expected some of {', '.join(PEERS)}")
    module = "pdqhash" if name == "pdq" else "imagehash"
    try:
        __import__(module)
    except ImportError:
        raise PeerUnavailable(
            f"peer {name!r} needs the {module} package: pip install 'lookalike[peers]'"
        ) from None
    return PEERS[name]


def score_from_distance(distance: np.ndarray | int, peer: Peer) -> np.ndarray:
    """Hamming distance -> score in [0, 1], higher = more alike: 1 - distance / bits."""
    return np.asarray(1.0 - np.asarray(distance, dtype=np.float64) / peer.bits)


def hash_image(image: Image.Image, name: str) -> np.ndarray:
    """The peer's hash of an RGB image as a flat array of 0/1 bits."""
    if name == "pdq":
        import pdqhash

        bits, _quality = pdqhash.compute(np.asarray(image.convert("RGB")))
        return np.asarray(bits, dtype=bool).ravel()
    import imagehash

    function = {
        "phash": imagehash.phash,
        "dhash": imagehash.dhash,
        "whash": imagehash.whash,
        "ahash": imagehash.average_hash,
    }[name]
    return np.asarray(function(image).hash, dtype=bool).ravel()


def _pack(bits: np.ndarray) -> np.ndarray:
    """0/1 bits -> uint64 words (big-endian bit order; only popcounts matter)."""
    return np.packbits(bits).view(">u8").astype(np.uint64)


def _hash_chunk(items: list[tuple[int, str]], name: str) -> list[tuple[int, np.ndarray | str]]:
    """Hash files in a worker: full decode with EXIF orientation, like imagededup."""
    out: list[tuple[int, np.ndarray | str]] = []
    for index, path in items:
        try:
            out.append((index, _pack(hash_image(load_image(path), name))))
        except UnreadableImage as exc:
            out.append((index, exc.reason))
        except Exception as exc:  # a hashing library bug on one file must not stop the run
            out.append((index, f"hashing failed ({type(exc).__name__})"))
    return out


@dataclass
class Hashes:
    """Packed hashes of many files: row i of `words` belongs to file i when `valid[i]`."""

    peer: Peer
    words: np.ndarray
    valid: np.ndarray
    errors: list[FileError]


def hash_files(
    paths: Sequence[str | os.PathLike[str]],
    name: str,
    *,
    workers: int | None = None,
    chunk: int = 16,
    on_progress: Callable[[int], None] | None = None,
) -> Hashes:
    """Hash files with one peer in a process pool (default: one process per core)."""
    peer = get_peer(name)
    words = np.zeros((len(paths), peer.bits // 64), dtype=np.uint64)
    valid = np.zeros(len(paths), dtype=bool)
    errors: list[FileError] = []
    items = [(i, str(p)) for i, p in enumerate(paths)]
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    workers = max(1, os.cpu_count() or 1) if workers is None else max(1, workers)

    def take(results: list[tuple[int, np.ndarray | str]]) -> None:
        for index, value in results:
            if isinstance(value, str):
                errors.append(FileError(Path(paths[index]), value))
            else:
                words[index], valid[index] = value, True
        if on_progress:
            on_progress(len(results))

    if workers == 1 or len(chunks) <= 1:
        for part in chunks:
            take(_hash_chunk(part, name))
    else:
        context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for future in as_completed([pool.submit(_hash_chunk, c, name) for c in chunks]):
                take(future.result())
    return Hashes(peer, words, valid, errors)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (NumPy >= 2 has it built in)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(*words.shape, 8)
    return _BYTE_BITS[as_bytes].sum(axis=-1, dtype=np.int32)


def hamming_scorer(hashes: Hashes) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Scores of rows x cols of a hash set: 1 - Hamming distance / bits (float32)."""
    words, bits = hashes.words, hashes.peer.bits

    def score(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        distance = np.zeros((rows.size, cols.size), dtype=np.int32)
        for w in range(words.shape[1]):
            distance += _popcount(words[rows, w][:, None] ^ words[cols, w][None, :])
        return (1.0 - distance.astype(np.float32) / np.float32(bits)).astype(np.float32)

    return score
