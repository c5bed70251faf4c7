"""Data loaders: IDX files (plain and gzipped), .npz, patches, whitening."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from lvebm import LvebmValueError
from lvebm.data import load_array, load_digits, load_mnist, read_idx, sample_patches, whiten


def write_idx(path, array: np.ndarray, *, gz: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(blob)


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_reads_idx_folder(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, gz=gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, gz=gz)
    X, y = load_mnist(tmp_path)
    np.testing.assert_allclose(X, images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    write_idx(tmp_path / "a", np.zeros((4, 3, 3)))
    blob = (tmp_path / "a").read_bytes()
    (tmp_path / "a").write_bytes(blob[:-5])
    with pytest.raises(LvebmValueError, match="truncated"):
        read_idx(tmp_path / "a")
    (tmp_path / "b").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(LvebmValueError, match="magic"):
        read_idx(tmp_path / "b")


def test_load_mnist_npz_and_shared_digits(tmp_path, mnist_path):
    X, y = load_mnist(mnist_path)
    assert X.shape == (8000, 28, 28) and y.shape == (8000,)
    assert X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert np.bincount(y).tolist() == [800] * 10


def test_load_array_reads_npy_and_npz_without_pickle(tmp_path):
    a = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", data=a)
    np.testing.assert_array_equal(load_array(tmp_path / "a.npy"), a)
    np.testing.assert_array_equal(load_array(tmp_path / "b.npz"), a)
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(LvebmValueError, match="not a readable"):
        load_array(tmp_path / "obj.npy")


def test_digits_are_scaled_to_unit_interval():
    X, y = load_digits()
    assert X.shape == (1797, 8, 8) and X.max() == 1.0 and X.min() == 0.0


def test_patches_come_from_the_images():
    img = np.arange(400, dtype=np.float32).reshape(20, 20) / 400
    P = sample_patches([img], 5, 30, seed=0)
    assert P.shape == (30, 25)
    # each patch is a contiguous 5x5 window: rows differ by 20/400, columns by 1/400
    np.testing.assert_allclose(np.diff(P.reshape(30, 5, 5), axis=2), 1 / 400, rtol=1e-4)


def smooth_noise_patches(n: int = 4000) -> np.ndarray:
    """Correlated 8x8 patches: noise plus 0.45 x its two neighbours (an invertible filter)."""
    raw = np.random.default_rng(0).normal(size=(n, 8, 8))
    smooth = raw + 0.45 * (np.roll(raw, 1, 1) + np.roll(raw, 1, 2))
    return smooth.reshape(n, 64)


def mean_abs_correlation(X: np.ndarray) -> float:
    C = np.corrcoef(X.T)
    return float(np.abs(C - np.eye(len(C))).mean())


def test_zca_decorrelates_pixels():
    X = whiten(smooth_noise_patches(), method="zca", eps=1e-7)
    # what is left is the -1/63 correlation that per-patch mean removal induces
    assert mean_abs_correlation(X) < 0.03
    np.testing.assert_allclose(X.var(), 1.0, rtol=1e-5)


def test_one_over_f_whitening_applies_the_olshausen_field_filter():
    x = np.arange(8)
    low = np.cos(2 * np.pi * 1 * x / 8)[None, :].repeat(8, 0)  # |f| = 1/8 cycles per pixel
    high = np.cos(2 * np.pi * 2 * x / 8)[None, :].repeat(8, 0)  # |f| = 2/8
    flat = np.ones((8, 8))
    out = whiten(np.stack([low, high, flat]).reshape(3, 64), method="1/f")

    def gain(f):  # rho * exp(-(rho/0.4)^4) with rho = |f| / Nyquist
        rho = f / 0.5
        return rho * np.exp(-((rho / 0.4) ** 4))

    np.testing.assert_allclose(out[2], 0, atol=1e-6)  # the mean (DC) is removed
    ratio = np.abs(out[1]).max() / np.abs(out[0]).max()
    np.testing.assert_allclose(ratio, gain(2 / 8) / gain(1 / 8), rtol=1e-4)


def test_download_keeps_only_files_with_the_right_checksum(tmp_path, monkeypatch):
    import hashlib
    import io

    import lvebm.data as data

    good = {name: f"payload of {name}".encode() for name in data.MNIST_FILES}
    monkeypatch.setattr(
        data, "MNIST_FILES", {n: hashlib.md5(b).hexdigest() for n, b in good.items()}
    )
    served = dict(good)

    def fake_urlopen(url, timeout):
        return io.BytesIO(served[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(data.urllib.request, "urlopen", fake_urlopen)
    data._download_mnist(tmp_path)
    assert all((tmp_path / n).read_bytes() == b for n, b in good.items())
    first = next(iter(good))
    (tmp_path / first).unlink()
    served[first] = b"tampered"
    with pytest.raises(LvebmValueError, match="MD5"):
        data._download_mnist(tmp_path)
    assert not (tmp_path / first).exists()


def _blob(H: int = 21, W: int = 25, cy: float = 10.0, cx: float = 12.0, sy=2.0, sx=4.0):
    r, c = np.mgrid[:H, :W]
    return np.exp(-0.5 * (((r - cy) / sy) ** 2 + ((c - cx) / sx) ** 2)).astype(np.float32)


def _moments(img: np.ndarray):
    r, c = np.mgrid[: img.shape[0], : img.shape[1]]
    m = img.sum()
    cy, cx = (img * r).sum() / m, (img * c).sum() / m
    return cy, cx, (img * ((r - cy) ** 2 + (c - cx) ** 2)).sum() / m


def test_random_affine_images_identity_and_layout():
    from lvebm.data import random_affine_images

    imgs = np.stack([_blob(), _blob(cy=8, cx=9)])
    out = random_affine_images(imgs, 3, rotation=0, shift=0, scale=0)
    assert out.shape == (6, 21, 25) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.concatenate([imgs] * 3), atol=1e-5)


def test_random_affine_images_translations_stay_within_the_shift():
    from lvebm.data import random_affine_images

    out = random_affine_images(_blob()[None], 40, rotation=0, shift=2.0, scale=0, seed=3)
    moves = np.array([_moments(v)[:2] for v in out]) - np.array([10.0, 12.0])
    assert np.abs(moves).max() <= 2.0 + 1e-2
    assert np.abs(moves).max() > 1.0  # really moved, both ways
    assert (moves[:, 0] > 0).any() and (moves[:, 0] < 0).any()


def test_random_affine_images_rotation_keeps_the_spread_and_scale_changes_it():
    from lvebm.data import random_affine_images

    img = _blob(41, 41, 20.0, 20.0, 2.0, 5.0)
    spread = _moments(img)[2]
    rot = random_affine_images(img[None], 20, rotation=45, shift=0, scale=0, seed=1)
    for v in rot:  # a rotation about the centre moves no mass outwards
        cy, cx, s = _moments(v)
        assert abs(cy - 20) < 1e-2 and abs(cx - 20) < 1e-2
        assert abs(s - spread) / spread < 0.03
    assert np.abs(rot - img).max() > 0.1  # and it did rotate
    big = random_affine_images(img[None], 20, rotation=0, shift=0, scale=0.3, seed=1)
    ratios = np.array([_moments(v)[2] for v in big]) / spread
    assert ratios.min() < 0.9 and ratios.max() > 1.1 and ratios.max() < 1.3**2 + 0.05


def test_random_affine_images_is_seeded_and_checks_arguments():
    from lvebm.data import random_affine_images

    imgs = _blob()[None]
    a, b = random_affine_images(imgs, 2, seed=5), random_affine_images(imgs, 2, seed=5)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - random_affine_images(imgs, 2, seed=6)).max() > 1e-3
    with pytest.raises(LvebmValueError, match="3-d array"):
        random_affine_images(imgs[0], 2)
    with pytest.raises(LvebmValueError, match="`rotation` must be a finite number"):
        random_affine_images(imgs, 2, rotation=-1.0)
    with pytest.raises(LvebmValueError, match="`scale` must be < 1"):
        random_affine_images(imgs, 2, scale=1.0)
