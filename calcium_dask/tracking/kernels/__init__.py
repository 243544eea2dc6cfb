"""Numpy kernels of cross-session tracking: alignment of summary images, warping of
sparse footprints, pairwise matching and consistent identities (no dask, xarray or zarr).
"""

from __future__ import annotations

from .align import (Alignment, AlignmentError, align_images, image_correlation, map_coordinates_of,
                    nonrigid_flow, registration_image, rigid_alignment, warp_image)
from .canvas import on_canvas, union_canvas
from .cluster import Tracks, track_units
from .footprints import centroids, interpolation_matrix, masks, normalise_columns, pair_overlap, warp_footprints
from .match import Candidates, PairMatches, assign_pairs, candidate_pairs, match_sessions, pair_costs

__all__ = ["Alignment", "AlignmentError", "Candidates", "PairMatches", "Tracks", "align_images", "assign_pairs",
           "candidate_pairs", "centroids", "image_correlation", "interpolation_matrix", "map_coordinates_of",
           "masks", "match_sessions", "nonrigid_flow", "normalise_columns", "on_canvas", "pair_costs", "pair_overlap",
           "registration_image", "rigid_alignment", "track_units", "union_canvas", "warp_footprints", "warp_image"]
