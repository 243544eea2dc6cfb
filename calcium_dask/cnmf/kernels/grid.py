"""The CNMF patch grid (CaImAn's ``rf``, ``stride`` and ``border_pix``)."""

from __future__ import annotations

import numpy as np

__all__ = ["patch_boxes", "own_boxes", "interior"]

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1)


def _starts(n: int, size: int, step: int) -> list[int]:
    if size >= n:
        return [0]
    starts = list(range(0, n - size + 1, step))
    if starts[-1] + size < n:
        starts.append(n - size)  # the last patch sits flush with the border
    return starts


def _per_axis(v: int | tuple[int, int] | None) -> tuple[int | None, int | None]:
    """One value for both axes, or one per axis (y, x)."""
    if v is None or np.ndim(v) == 0:
        return (v, v)  # type: ignore[return-value]
    y, x = v  # type: ignore[misc]
    return int(y), int(x)


def patch_boxes(dims: tuple[int, int], rf: int | tuple[int, int] | None, stride: int | tuple[int, int] | None,
                border: int = 0) -> list[tuple[int, int, int, int]]:
    """Boxes ``(y0, y1, x0, x1)`` of patches of side ``2 * rf`` overlapping by ``stride`` pixels.

    ``rf`` and ``stride`` are one value for both axes or one per axis ``(y, x)``, as in
    CaImAn; ``rf=None`` gives one patch over the whole field of view and ``stride=None``
    an overlap of ``rf // 2``. Neighbouring patches overlap so that a neuron on a patch
    border is found whole by at least one of them; the duplicates are merged afterwards.
    The patches leave out ``border`` pixels along each edge of the field of view (CaImAn's
    ``border_pix``).
    """
    h, w = dims
    b = int(border)
    if min(h, w) <= 2 * b:
        raise ValueError(f"border_pix {b} leaves no pixels of the {h}x{w} field of view")
    if rf is None:
        return [(b, h - b, b, w - b)]
    spans = []
    for n, r, s in zip((h - 2 * b, w - 2 * b), _per_axis(rf), _per_axis(stride)):
        size = 2 * int(r)
        overlap = int(s if s is not None else int(r) // 2)
        if overlap >= size:
            raise ValueError(f"stride (overlap) {overlap} must be smaller than the patch size 2*rf={size}")
        spans.append([(b + a, b + min(a + size, n)) for a in _starts(n, size, size - overlap)])
    return [(y0, y1, x0, x1) for y0, y1 in spans[0] for x0, x1 in spans[1]]


def interior(dims: tuple[int, int], border: int) -> np.ndarray:
    """(h * w,) bool, row-major: the pixels at least ``border`` pixels from every edge."""
    h, w = dims
    inside = np.zeros(dims, bool)
    inside[border:h - border, border:w - border] = True
    return inside.ravel()


def _own_edges(starts: list[int], ends: list[int]) -> list[tuple[int, int]]:
    """Split the span of the patches at the midpoints between consecutive patch centres."""
    centres = [(a + b) / 2 for a, b in zip(starts, ends)]
    cuts = [starts[0]] + [int((c0 + c1) // 2) + 1 for c0, c1 in zip(centres, centres[1:])] + [ends[-1]]
    return list(zip(cuts[:-1], cuts[1:]))


def own_boxes(boxes: list[Box]) -> list[Box]:
    """The tile each patch owns: the pixels nearer its centre than any other patch's.

    Parameters
    ----------
    boxes : list of (y0, y1, x0, x1)
        Patches from :func:`patch_boxes` (a regular grid, rows of equal x extents).

    Returns
    -------
    list of (y0, y1, x0, x1)
        One tile per patch, inside it; the tiles cover the patches (the field of view less
        its ``border``) without overlap.
        A patch reports only the components centred in its tile, so a neuron in an overlap
        is reported once.
    """
    ys = sorted({(b[0], b[1]) for b in boxes})
    xs = sorted({(b[2], b[3]) for b in boxes})
    ty = dict(zip(ys, _own_edges([a for a, _ in ys], [b for _, b in ys])))
    tx = dict(zip(xs, _own_edges([a for a, _ in xs], [b for _, b in xs])))
    return [(*ty[(b[0], b[1])], *tx[(b[2], b[3])]) for b in boxes]
