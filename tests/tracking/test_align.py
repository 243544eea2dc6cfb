"""Alignment kernels recover planted rigid transforms, rescaling and smooth warps."""

from __future__ import annotations

import numpy as np
import pytest

from calcium_dask.tracking.kernels import AlignmentError, align_images, registration_image, warp_image

from .planted import about_centre, smooth_field, tissue, true_coordinates, view

SIZE = 128
ORIGIN = (64, 64)


@pytest.fixture(scope="module")
def world():
    return tissue(256, seed=1)


@pytest.fixture(scope="module")
def reference(world):
    return view(world, ORIGIN, about_centre(0, (0, 0), SIZE), None, SIZE, seed=100)


def _error(found, affine, flow, margin=16):
    err = np.hypot(*(found - true_coordinates(affine, flow, SIZE)))[margin:-margin, margin:-margin]
    return float(np.sqrt((err ** 2).mean())), float(err.max())


@pytest.mark.parametrize(("deg", "shift"), [(3.0, (12.0, -7.0)), (-2.5, (-15.0, 9.5)), (8.0, (5.0, 20.0)),
                                            (0.0, (-20.0, 0.0))])
def test_a_planted_rotation_and_shift_is_recovered_within_0_2_pixel(world, reference, deg, shift):
    A = about_centre(deg, shift, SIZE)
    moving = view(world, ORIGIN, A, None, SIZE, seed=1)
    al = align_images(registration_image(reference, use="mean"), registration_image(moving, use="mean"),
                      nonrigid=False)
    rms, worst = _error(al.coordinates((SIZE, SIZE)), A, None)
    assert worst < 0.2, (rms, worst)
    assert al.rotation_deg == pytest.approx(deg, abs=0.1)  # 0.1 degree: 0.1 px at 60 px from the centre
    assert al.scale == pytest.approx((1.0, 1.0), abs=1e-3)
    assert al.flow is None and al.corr > 0.9 and al.overlap > 0.7


def test_a_planted_smooth_warp_is_recovered_by_the_nonrigid_field(world, reference):
    A = about_centre(2.0, (8.0, -6.0), SIZE)
    for seed, amp in ((0, 3.0), (1, 2.0)):
        flow = smooth_field(SIZE, amp, seed=seed)
        moving = view(world, ORIGIN, A, flow, SIZE, seed=seed)
        args = registration_image(reference, use="mean"), registration_image(moving, use="mean")
        rigid = align_images(*args, nonrigid=False)
        full = align_images(*args, nonrigid=True)
        rms_rigid, _ = _error(rigid.coordinates((SIZE, SIZE)), A, flow)
        rms, worst = _error(full.coordinates((SIZE, SIZE)), A, flow)
        assert full.flow is not None and full.corr > rigid.corr
        # the rigid part alone leaves the warp (about 0.7 amp RMS); the field takes most of it
        assert rms_rigid > 0.6 * amp and rms < 0.6 and rms < rms_rigid / 3, (amp, rms_rigid, rms, worst)


def test_a_session_with_other_pixel_sizes_is_rescaled(world, reference):
    # the session's pixels are 0.8 of the reference's: 1.25 session pixels per reference pixel
    A = about_centre(1.5, (4.0, -3.0), SIZE, scale=1.25, size_moving=160)
    moving = view(world, ORIGIN, A, None, 160, seed=3)
    al = align_images(registration_image(reference, use="mean"), registration_image(moving, use="mean"),
                      scale=(1.25, 1.25), nonrigid=False)
    assert al.scale == pytest.approx((1.25, 1.25), abs=5e-3)
    rms, worst = _error(al.coordinates((SIZE, SIZE)), A, None)
    assert worst < 0.3, (rms, worst)


def test_warp_image_puts_the_session_on_the_reference_grid(world, reference):
    A = about_centre(-3.0, (10.0, 6.0), SIZE)
    moving = view(world, ORIGIN, A, None, SIZE, noise=0.0)
    back = warp_image(moving, A, None, (SIZE, SIZE))
    inner = (slice(20, -20), slice(20, -20))
    assert np.isfinite(back[inner]).all()
    assert np.corrcoef(back[inner].ravel(), reference[inner].ravel())[0, 1] > 0.99
    assert np.isnan(back).any()  # pixels that the session did not see are NaN, not zeros


def test_an_unrelated_or_barely_overlapping_field_fails_with_a_reason(world, reference):
    other = view(tissue(256, seed=9), ORIGIN, about_centre(0, (0, 0), SIZE), None, SIZE)
    with pytest.raises(AlignmentError, match="does not match"):
        align_images(registration_image(reference, use="mean"), registration_image(other, use="mean"))
    far = view(world, ORIGIN, about_centre(0, (100, 100), SIZE), None, SIZE)
    with pytest.raises(AlignmentError, match="covers|does not match"):
        align_images(registration_image(reference, use="mean"), registration_image(far, use="mean"))


def test_registration_image_combines_standardised_summary_images():
    rng = np.random.default_rng(0)
    mean = 1000 + 50 * rng.standard_normal((64, 64)).astype(np.float32)
    corr = 0.1 * rng.random((64, 64)).astype(np.float32)
    both = registration_image(mean, corr, use="both", highpass_sigma=0)
    one = registration_image(mean, None, use="both", highpass_sigma=0)
    assert both.dtype == np.float32 and abs(float(np.median(one))) < 0.1
    np.testing.assert_allclose(both, one + registration_image(corr, use="mean", highpass_sigma=0), atol=1e-5)
    with pytest.raises(ValueError, match="no correlation"):
        registration_image(mean, None, use="correlation")
