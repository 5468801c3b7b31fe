"""Find data problems that silently corrupt an unlearning benchmark.

A photo that sits both in train and in test or unseen leaks membership: the
"never seen" side of the attack has in fact been seen. A person in two splits
cannot be cleanly forgotten. Public face sets have both defects (MUFAC ships
hundreds of duplicate pairs), so they are looked for before any run.

Near-duplicates use a 64-bit DCT perceptual hash (pHash): grayscale, resize
to 32x32, 2-D DCT, keep the 8x8 lowest frequencies, one bit per coefficient
above their median. Photos within a few bits of each other look the same.
"""

from __future__ import annotations

import hashlib
from itertools import combinations
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from piu_engine.core.data.types import FaceDataset, Split

SPLIT_ORDER = [s.value for s in Split]
DEFAULT_PHASH_THRESHOLD = 4
_HASH_CHUNK = 512
_PAIR_CHUNK = 256
_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * x + 1) * k / (2 * n))


def phash(images: torch.Tensor) -> np.ndarray:
    """64-bit DCT perceptual hashes of uint8 [N, 3, H, W] images, as uint64 [N]."""
    out = np.empty(len(images), dtype=np.uint64)
    low = _dct_matrix(32)[:8]  # only the 8 lowest frequencies are kept
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    powers = (np.uint64(1) << np.arange(64, dtype=np.uint64)).astype(np.uint64)
    for start in range(0, len(images), _HASH_CHUNK):
        batch = images[start : start + _HASH_CHUNK, :3].contiguous()
        # Resizing before the grey conversion is the same linear map, and far
        # cheaper on uint8 than on the full-size float image.
        small = F.interpolate(batch, size=(32, 32), mode="bilinear", antialias=True, align_corners=False).float()
        gray = (small * weights).sum(dim=1)
        pix = gray.double().numpy()
        coeffs = (low @ pix @ low.T).reshape(len(pix), 64)
        # A tolerance keeps rounding noise of flat images from setting random bits.
        tolerance = 1e-9 * np.abs(coeffs).max(axis=1, keepdims=True)
        bits = coeffs > np.median(coeffs, axis=1, keepdims=True) + tolerance
        out[start : start + len(pix)] = (bits.astype(np.uint64) * powers).sum(axis=1, dtype=np.uint64)
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _BYTE_BITS[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def near_pairs(hashes: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for all i < j with Hamming distance <= threshold, in chunks."""
    pairs: list[tuple[int, int, int]] = []
    n = len(hashes)
    for start in range(0, n, _PAIR_CHUNK):
        rows = hashes[start : start + _PAIR_CHUNK]
        dist = _popcount(rows[:, None] ^ hashes[None, start:])
        ii, jj = np.nonzero(dist <= threshold)
        keep = jj > ii  # columns are offset by `start`, like the rows: strict upper triangle
        for i, j in zip(ii[keep], jj[keep]):
            pairs.append((start + int(i), start + int(j), int(dist[i, j])))
    return pairs


def _components(n: int, edges) -> list[list[int]]:
    """Connected components (singletons included) of an undirected graph."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def near_groups(hashes: np.ndarray, threshold: int) -> list[tuple[list[int], int]]:
    """Images linked (transitively) by hashes within ``threshold`` bits, each
    group with the largest distance among its links.

    Equal hashes are merged first, so a flood of identical hashes (blank
    frames) costs one comparison, not one per pair.
    """
    unique, inverse = np.unique(hashes, return_inverse=True)
    members: list[list[int]] = [[] for _ in unique]
    for i, u in enumerate(inverse.ravel().tolist()):
        members[u].append(i)
    pairs = near_pairs(unique, threshold)
    components = _components(len(unique), [(a, b) for a, b, _ in pairs])
    component_of = {u: c for c, nodes in enumerate(components) for u in nodes}
    widest = [0] * len(components)
    for a, _, dist in pairs:
        widest[component_of[a]] = max(widest[component_of[a]], dist)
    out = []
    for c, nodes in enumerate(components):
        images = sorted(i for u in nodes for i in members[u])
        if len(images) > 1:
            out.append((images, widest[c]))
    return out


def _crossings(splits) -> list[str]:
    present = [s for s in SPLIT_ORDER if s in set(splits)]
    return [f"{a}-{b}" for a, b in combinations(present, 2)]


def _group(ds: FaceDataset, members: list[int]) -> dict[str, Any]:
    splits = [str(ds.splits[i]) for i in members]
    identities = [str(ds.identities[i]) for i in members]
    return {
        "indices": members,
        "sources": [ds.sources[i] for i in members],
        "identities": identities,
        "splits": splits,
        "crosses": _crossings(splits),
        "identities_differ": len(set(identities)) > 1,
    }


def _overlaps(values, splits) -> list[tuple[str, list[str]]]:
    where: dict[str, set[str]] = {}
    for v, s in zip(values, splits):
        where.setdefault(str(v), set()).add(str(s))
    return [(v, [s for s in SPLIT_ORDER if s in ss]) for v, ss in sorted(where.items()) if len(ss) > 1]


def find_problems(ds: FaceDataset, phash_threshold: int = DEFAULT_PHASH_THRESHOLD) -> dict[str, Any]:
    """Exact and near-duplicate photos, and identities or sources in two splits."""
    n = len(ds)
    flat = ds.images.reshape(n, -1).contiguous()
    digests = [hashlib.sha1(flat[i].numpy().tobytes()).hexdigest() for i in range(n)]
    by_digest: dict[str, list[int]] = {}
    for i, d in enumerate(digests):
        by_digest.setdefault(d, []).append(i)
    exact = [_group(ds, g) for g in by_digest.values() if len(g) > 1]

    near = []
    for members, widest in near_groups(phash(ds.images), phash_threshold):
        if len({digests[i] for i in members}) == 1:
            continue  # byte-identical: already an exact duplicate group
        group = _group(ds, members)
        group["max_distance"] = widest
        near.append(group)

    identities = [{"identity": v, "splits": s} for v, s in _overlaps(ds.identities, ds.splits)]
    sources = [{"source": v, "splits": s} for v, s in _overlaps(ds.sources, ds.splits)]
    cross = {f"{a}-{b}": 0 for a, b in combinations(SPLIT_ORDER, 2)}
    for g in exact + near:
        for c in g["crosses"]:
            cross[c] += 1
    return {
        "dataset": ds.name,
        "images": n,
        "phash_threshold": phash_threshold,
        "exact_duplicates": sorted(exact, key=lambda g: g["indices"][0]),
        "near_duplicates": sorted(near, key=lambda g: g["indices"][0]),
        "identities_in_multiple_splits": identities,
        "sources_in_multiple_splits": sources,
        "counts": {
            "exact_groups": len(exact),
            "exact_images": sum(len(g["indices"]) for g in exact),
            "near_groups": len(near),
            "near_images": sum(len(g["indices"]) for g in near),
            "groups_crossing_splits": cross,
            "groups_across_identities": sum(g["identities_differ"] for g in exact + near),
            "identities_in_multiple_splits": len(identities),
            "sources_in_multiple_splits": len(sources),
        },
        "clean": not (exact or near or identities or sources),
    }


def _describe(group: dict[str, Any]) -> str:
    where = ", ".join(
        f"{src} [{split}, {ident}]" for src, split, ident in zip(group["sources"], group["splits"], group["identities"])
    )
    tags = [f"crosses {c}" for c in group["crosses"]]
    if group["identities_differ"]:
        tags.append("different identities")
    if "max_distance" in group:
        tags.append(f"distance <= {group['max_distance']}")
    return f"  - {len(group['indices'])} images{' (' + '; '.join(tags) + ')' if tags else ''}: {where}"


def format_problems(d: dict[str, Any], limit: int = 20) -> str:
    """Readable report: counts first, then the first ``limit`` items of each kind."""
    c = d["counts"]
    lines = [f"dataset {d['dataset']}: {d['images']} images checked"]
    if d["clean"]:
        lines.append("no problems found")
        return "\n".join(lines)
    crossing = ", ".join(f"{k} {v}" for k, v in c["groups_crossing_splits"].items())
    lines += [
        f"exact duplicates:  {c['exact_groups']} groups ({c['exact_images']} images)",
        f"near duplicates:   {c['near_groups']} groups ({c['near_images']} images, "
        f"pHash distance <= {d['phash_threshold']})",
        f"groups crossing splits: {crossing}",
        f"groups spanning several identities: {c['groups_across_identities']}",
        f"identities in several splits: {c['identities_in_multiple_splits']}",
        f"sources in several splits: {c['sources_in_multiple_splits']}",
    ]
    sections = (
        ("exact duplicates", d["exact_duplicates"], _describe),
        ("near duplicates", d["near_duplicates"], _describe),
        (
            "identities in several splits",
            d["identities_in_multiple_splits"],
            lambda x: f"  - {x['identity']}: {', '.join(x['splits'])}",
        ),
        (
            "sources in several splits",
            d["sources_in_multiple_splits"],
            lambda x: f"  - {x['source']}: {', '.join(x['splits'])}",
        ),
    )
    for title, items, show in sections:
        if not items:
            continue
        lines += ["", f"{title}:"]
        lines += [show(x) for x in items[:limit]]
        if len(items) > limit:
            lines.append(f"  ... and {len(items) - limit} more (use --json for all)")
    return "\n".join(lines)
