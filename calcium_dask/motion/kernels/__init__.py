"""NoRMCorre motion-correction kernels: pure functions of numpy arrays (public face).

The dask orchestration maps :func:`correct_frames` over blocks of frames with one
:class:`TemplateCache` per template, and builds templates with :func:`make_template`,
:func:`refine_template` and :func:`merge_templates`.

Convention: a shift (dy, dx) is the displacement APPLIED to a raw frame to align it to the
template (content that moved by +d is corrected by -d), as in CaImAn/NoRMCorre.

References
----------
Pnevmatikakis & Giovannucci 2017, NoRMCorre: an online algorithm for piecewise rigid motion
correction of calcium imaging data, J Neurosci Methods 291:83-94,
doi:10.1016/j.jneumeth.2017.07.016.
Guizar-Sicairos, Thurman & Fienup 2008, Efficient subpixel image registration algorithms,
Opt Lett 33:156-158, doi:10.1364/OL.33.000156.
"""

from __future__ import annotations

from .frames import correct_frames
from .cache import TemplateCache, prepare_template
from .field import field_weights, mean_shift, shift_field, warp_piecewise
from .filters import high_pass_filter, high_pass_kernel
from .grid import extract_patches, patch_centers, patch_grid, patch_size
from .registration import register_piecewise, register_rigid
from .templates import make_template, merge_templates, refine_template
from .warp import apply_field, apply_shift

__all__ = [
    "TemplateCache",
    "apply_field",
    "apply_shift",
    "correct_frames",
    "extract_patches",
    "field_weights",
    "high_pass_filter",
    "high_pass_kernel",
    "make_template",
    "mean_shift",
    "merge_templates",
    "patch_centers",
    "patch_grid",
    "patch_size",
    "prepare_template",
    "refine_template",
    "register_piecewise",
    "register_rigid",
    "shift_field",
    "warp_piecewise",
]
