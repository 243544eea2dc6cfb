"""The CNMF patch grid (CaImAn's ``rf`` and ``stride``), pure Python."""

from __future__ import annotations

__all__ = ["patch_boxes"]


def _starts(n: int, size: int, step: int) -> list[int]:
    if size >= n:
        return [0]
    starts = list(range(0, n - size + 1, step))
    if starts[-1] + size < n:
        starts.append(n - size)  # the last patch sits flush with the border
    return starts


def patch_boxes(dims: tuple[int, int], rf: int | None, stride: int | None) -> list[tuple[int, int, int, int]]:
    """Boxes ``(y0, y1, x0, x1)`` of patches of side ``2 * rf`` overlapping by ``stride`` pixels.

    ``rf=None`` gives one patch over the whole field of view. Neighbouring patches overlap
    so that a neuron on a patch border is found whole by at least one of them; the
    duplicates are merged afterwards.
    """
    h, w = dims
    if rf is None:
        return [(0, h, 0, w)]
    size = 2 * int(rf)
    overlap = int(stride if stride is not None else rf // 2)
    if overlap >= size:
        raise ValueError(f"stride (overlap) {overlap} must be smaller than the patch size 2*rf={size}")
    step = size - overlap
    return [(y, min(y + size, h), x, min(x + size, w))
            for y in _starts(h, size, step) for x in _starts(w, size, step)]
