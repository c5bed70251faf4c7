"""Preprocessing of whole natural images for convolutional sparse coding.

Natural images have a ``1/f`` amplitude spectrum: left alone, a convolutional code
spends its kernels on the smooth low frequencies. The field's three remedies, all
taking images (n, c, H, W) or (c, H, W) or (H, W) and returning float32 of the same
shape (NumPy in and out):

- :func:`highpass`: subtract a Tikhonov-regularised low-pass image (SPORCO's
  ``tikhonov_filter``; the usual choice for CSC, e.g. Wohlberg 2016);
- :func:`local_contrast_normalize`: subtractive then divisive normalisation by a
  Gaussian-weighted local mean and standard deviation (Jarrett et al. 2009);
- :func:`whiten_images`: Olshausen & Field's ``|f| exp(-(|f|/f0)^4)`` whitening filter
  applied to the full image in the Fourier domain.
"""

from __future__ import annotations

import numpy as np

from ._checks import LvebmValueError, check_nonneg_float, check_positive_float

__all__ = ["highpass", "local_contrast_normalize", "whiten_images", "sample_crops"]


def _as_images(x, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in (2, 3, 4) or arr.size == 0 or min(arr.shape[-2:]) < 2:
        raise LvebmValueError(
            f"`{name}` must be a non-empty (H, W), (c, H, W) or (n, c, H, W) array; "
            f"got shape {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise LvebmValueError(f"`{name}` must contain only finite values; it has NaN or Inf.")
    return arr.reshape((-1,) + arr.shape[-2:]), arr.shape  # (n*c, H, W)


def highpass(images, *, lam: float = 5.0, npad: int = 16) -> np.ndarray:
    """``y - low`` with ``low = argmin_x 0.5||x - y||^2 + 0.5 lam ||grad x||^2`` (per channel).

    Solved in the Fourier domain on the image padded by ``npad`` pixels of symmetric
    reflection (as SPORCO's ``tikhonov_filter(s, lmbda, npd)``, which this matches).
    """
    lam = check_nonneg_float(lam, "lam")
    X, shape = _as_images(images, "images")
    H, W = X.shape[-2:]
    Xp = np.pad(X, ((0, 0), (npad, npad), (npad, npad)), mode="symmetric")
    gy = np.zeros(Xp.shape[-2:])
    gx = np.zeros(Xp.shape[-2:])
    gy[0, 0], gy[1, 0] = -1.0, 1.0
    gx[0, 0], gx[0, 1] = -1.0, 1.0
    denom = 1.0 + lam * (np.abs(np.fft.rfft2(gy)) ** 2 + np.abs(np.fft.rfft2(gx)) ** 2)
    low = np.fft.irfft2(np.fft.rfft2(Xp) / denom, s=Xp.shape[-2:])[
        :, npad : npad + H, npad : npad + W
    ]
    return (X - low).reshape(shape).astype(np.float32)


def local_contrast_normalize(images, *, sigma: float = 2.0, eps: float = 1e-2) -> np.ndarray:
    """Subtractive and divisive local contrast normalisation (Jarrett et al. 2009).

    ``v = y - G*y``; ``y' = v / max(eps, c, sqrt(G*v^2))`` with ``G`` a Gaussian of
    width ``sigma`` pixels summed over channels and ``c`` the image's mean local std.
    """
    from scipy.ndimage import gaussian_filter

    sigma = check_positive_float(sigma, "sigma")
    eps = check_positive_float(eps, "eps")
    arr = np.asarray(images, dtype=np.float64)
    X, shape = _as_images(arr, "images")
    c = shape[-3] if arr.ndim >= 3 else 1
    X = X.reshape((-1, c) + X.shape[-2:])  # (n, c, H, W)
    blur = lambda a: gaussian_filter(a, sigma=(0, 0, sigma, sigma), mode="reflect")  # noqa: E731
    v = X - blur(X).mean(axis=1, keepdims=True)  # subtract the local mean over channels
    local = np.sqrt(blur(v**2).mean(axis=1, keepdims=True))  # (n, 1, H, W)
    floor = np.maximum(local.mean(axis=(1, 2, 3), keepdims=True), eps)
    return (v / np.maximum(local, floor)).reshape(shape).astype(np.float32)


def whiten_images(images, *, f0: float = 0.4) -> np.ndarray:
    """Whiten whole images by ``|f| exp(-(|f|/f0)^4)`` (frequency in units of Nyquist).

    The mean is removed by the filter (it is zero at ``f = 0``); the output is scaled to
    unit variance per image channel.
    """
    f0 = check_positive_float(f0, "f0")
    X, shape = _as_images(images, "images")
    H, W = X.shape[-2:]
    fy, fx = np.fft.fftfreq(H)[:, None], np.fft.rfftfreq(W)[None, :]
    rho = np.sqrt(fy**2 + fx**2) / 0.5
    out = np.fft.irfft2(np.fft.rfft2(X) * rho * np.exp(-((rho / f0) ** 4)), s=(H, W))
    out /= np.maximum(out.std(axis=(1, 2), keepdims=True), 1e-12)
    return out.reshape(shape).astype(np.float32)


def sample_crops(
    images: list[np.ndarray], size: int, n: int, *, seed: int | None = 0
) -> np.ndarray:
    """``n`` random ``size`` x ``size`` crops (n, c, size, size) from images (c, H, W) or (H, W)."""
    imgs = [im[None] if im.ndim == 2 else im for im in images]
    valid = [im for im in imgs if min(im.shape[-2:]) >= size]
    if not valid:
        raise LvebmValueError(f"`images` has no image of at least {size}x{size} pixels.")
    rng = np.random.default_rng(seed)
    out = np.empty((n, valid[0].shape[0], size, size), dtype=np.float32)
    for i in range(n):
        im = valid[rng.integers(len(valid))]
        r = rng.integers(0, im.shape[-2] - size + 1)
        c = rng.integers(0, im.shape[-1] - size + 1)
        out[i] = im[:, r : r + size, c : c + size]
    return out
