"""Which axis of a stack is the slice axis, and moving it to k and back.

Scanners write SAX stacks with the slices along the file's third axis, but some research
pipelines store 13 x 128 x 128 with the 10 mm step along i. Read as it is, such a stack would be
"super-resolved" along an in-plane axis: a wrong answer without a word. So every stack is read
with its slice axis found from the geometry (the axis with the clearly largest spacing: the
acquisition's slice distance), the engine works with it as k (the convention of every method),
and results go back out in the file's own axis order (:func:`restore_axes`). Where the spacings
do not tell, the user says it (``--slice-axis i|j|k``) or the file is refused in one line.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .errors import InputError
from .geometry import Volume

AXIS_NAMES = ("i", "j", "k")
#: The slice axis must be this much coarser than the finer in-plane axis it is told apart from.
DISTINCT_SPACING_RATIO = 1.2

Order = Tuple[int, int, int]
IDENTITY: Order = (0, 1, 2)


def coarsest_axis(spacing) -> Optional[int]:
    """The axis whose spacing is at least :data:`DISTINCT_SPACING_RATIO` times every other's, or None."""
    spacing = np.asarray(spacing, float)
    order = np.argsort(spacing)
    return int(order[2]) if spacing[order[2]] >= DISTINCT_SPACING_RATIO * spacing[order[1]] else None


def slice_axis(volume: Volume, what: str, given: Optional[str] = None) -> int:
    """The slice axis (0 = i, 1 = j, 2 = k) of a stack: ``given`` ('i', 'j', 'k') if set, else the
    axis whose spacing is at least :data:`DISTINCT_SPACING_RATIO` times the others'; InputError
    when none is."""
    if given is not None:
        if given not in AXIS_NAMES:
            raise InputError(f"--slice-axis must be one of i, j, k, got {given!r}.")
        return AXIS_NAMES.index(given)
    spacing = volume.spacing
    axis = coarsest_axis(spacing)
    if axis is not None:
        return axis
    shape_ijk = volume.shape[::-1]
    sizes = ", ".join(f"{a} {n} x {s:.3g} mm" for a, n, s in zip(AXIS_NAMES, shape_ijk, spacing))
    raise InputError(f"{what}: cannot tell the slice axis from the spacings ({sizes}): no axis is clearly coarser "
                     "than the others; say which axis runs across the slices with --slice-axis i|j|k.")


def order_with_slices_last(axis: int) -> Order:
    """The file axes that become the working i, j, k: in-plane axes in file order, then the slice axis."""
    rest = [a for a in IDENTITY if a != axis]
    return (rest[0], rest[1], axis)


def permute(volume: Volume, order: Order) -> Volume:
    """The same voxels and physical pose with file axes ``order`` as the new i, j, k."""
    if tuple(order) == IDENTITY:
        return volume
    matrix = np.eye(4)
    matrix[:3, :3] = volume.ijk_to_ras[:3, list(order)]
    matrix[:3, 3] = volume.ijk_to_ras[:3, 3]
    array_ijk = volume.array.transpose(2, 1, 0).transpose(order)
    return Volume(np.ascontiguousarray(array_ijk.transpose(2, 1, 0)), matrix)


def inverse(order: Order) -> Order:
    return tuple(int(a) for a in np.argsort(order))


def with_slices_as_k(volume: Volume, what: str, given: Optional[str] = None) -> Tuple[Volume, Order]:
    """``volume`` with its slice axis as k, and the order that :func:`restore_axes` undoes."""
    order = order_with_slices_last(slice_axis(volume, what, given))
    return permute(volume, order), order


def _axis_note(what: str, volume: Volume, axis: int) -> Optional[str]:
    """The note for the user when the file's slice axis was not k (None otherwise)."""
    return None if axis == 2 else (f"{what}: the slices run along the file's {AXIS_NAMES[axis]} axis "
                                   f"({volume.spacing[2]:.3g} mm apart); results are written in the file's axis order")


def working_stack(sax: Volume, image: Optional[Volume], what: str, given: Optional[str] = None):
    """The SAX labels and the image (same grid) with the slice axis as k, the order that undoes
    it, and a note for the user when the file's slice axis was not k (None otherwise)."""
    sax, order = with_slices_as_k(sax, what, given)
    return sax, (permute(image, order) if image is not None else None), order, _axis_note("SAX", sax, order[2])


def working_image(image: Volume, what: str, given: Optional[str] = None):
    """:func:`working_stack` of an image given without its segmentation: refused in one line when
    it cannot be a cine SAX stack (:func:`.case.check_image_stack`; before the slice axis is looked
    for), else float32 with the slice axis as k, the order that undoes it, and the note."""
    from .case import check_image_stack

    check_image_stack(image, f"The image {what}")
    image, order = with_slices_as_k(image.with_array(image.array.astype(np.float32, copy=False)), what, given)
    return image, order, _axis_note("image", image, order[2])


def restore_axes(volume: Volume, order: Order) -> Volume:
    """A result on the working grid, back in the file's axis order (the slice axis where the
    input had it)."""
    return permute(volume, inverse(order))
