"""Linear decoders ``A`` used by the solvers: ``forward(z) = A z``, ``adjoint(r) = A^T r``.

Batched: ``forward`` maps codes (n, ...) to signals (n, ...); ``adjoint`` maps back.
``lipschitz()`` is the largest eigenvalue of ``A^T A``, the Lipschitz constant of the
gradient of ``0.5*||y - A z||^2``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F

from .ops import gram_lipschitz, power_iteration

__all__ = ["LinearOperator", "Dense", "Conv2d"]


class LinearOperator(ABC):
    """Abstract batched linear operator with its adjoint."""

    @abstractmethod
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``A z`` for a batch of codes."""

    @abstractmethod
    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """``A^T r`` for a batch of signals."""

    @abstractmethod
    def lipschitz(self) -> float:
        """Largest eigenvalue of ``A^T A``."""


class Dense(LinearOperator):
    """A dictionary ``W`` of shape (d, k): codes (n, k) -> signals (n, d) as ``z @ W.T``."""

    def __init__(self, W: torch.Tensor):
        self.W = W

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W.T  # (n, d)

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        return r @ self.W  # (n, k)

    def gram(self) -> torch.Tensor:
        """``W^T W`` of shape (k, k)."""
        return self.W.T @ self.W

    def lipschitz(self) -> float:
        return gram_lipschitz(self.gram())


def _fast_len(n: int) -> int:
    """Smallest FFT-friendly length >= ``n`` (2-, 3-, 5-smooth)."""
    from scipy.fft import next_fast_len

    return int(next_fast_len(n, real=True))


class Conv2d(LinearOperator):
    """Convolutional synthesis ``Y = sum_i K_i * Z_i`` with full-support maps.

    Kernels ``K`` (m, c, s, s); maps ``Z`` (n, m, H+s-1, W+s-1); images ``Y`` (n, c, H, W)::

        Y[n, c, h, w] = sum_{i, a, b} K[i, c, a, b] * Z[n, i, h + s-1 - a, w + s-1 - b]

    that is, the "valid" part of the true 2-d convolution of each map with its kernel.
    Boundary: the maps are larger than the image by ``s - 1`` on each axis, so every
    pixel (corners included) is reached by all ``s*s`` taps of every kernel, and
    map entries near the border also paint pixels outside the image, which are cut
    away (no circular wrap-around, unlike SPORCO). The adjoint is the full
    correlation ``Z[n, i] = sum_c corr(pad(Y[n, c], s-1), K[i, c])``.

    ``method="fft"`` multiplies in the Fourier domain on a grid of FFT-friendly size
    ``P >= H+s-1`` (circular convolution on that grid equals the valid linear one
    because the wrap-around only touches the first ``s-1`` rows and columns, which are
    cropped); ``"direct"`` uses ``conv2d`` (faster for tiny images or kernels);
    ``"mixed"`` synthesises by FFT and applies the adjoint by one ``conv2d`` of the
    padded residual (on CPU the fastest pair for large images: measured in
    ``docs/conv.md``).

    On the CPU, outside autograd, the FFTs run in ``scipy.fft`` (pocketfft, with
    ``torch.get_num_threads()`` workers): on 32 maps of 519x519 padded to 540x540 its
    forward transform takes 37 ms against 64 ms for ``torch.fft`` (2 threads; 60 against
    110 ms on one); with gradients required they run in ``torch.fft``.
    """

    def __init__(self, K: torch.Tensor, image_shape: tuple[int, int], *, method: str = "fft"):
        self.K = K
        m, c, s, _ = K.shape
        H, W = image_shape
        self.image_shape = (H, W)
        self.map_shape = (H + s - 1, W + s - 1)
        self.method = method
        if method in ("fft", "mixed"):
            self.grid = (_fast_len(H + s - 1), _fast_len(W + s - 1))
            self.Kf = torch.fft.rfft2(K, s=self.grid)  # (m, c, P, Q//2+1)
            self._Kf_np = None  # numpy view of Kf for the scipy path, made on first use
        else:
            self.grid = None
            self.K_syn = K.flip(-1, -2).transpose(0, 1).contiguous()  # (c, m, s, s)

    @property
    def kernel_size(self) -> int:
        return self.K.shape[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s = self.kernel_size
        H, W = self.image_shape
        if self.method == "direct":
            return F.conv2d(z, self.K_syn)  # (n, c, H, W)
        if self._use_scipy(z):
            return self._scipy_forward(z)
        Zf = torch.fft.rfft2(z, s=self.grid)  # (n, m, P, Q')
        if self.K.shape[1] == 1:
            Yf = (Zf * self.Kf[:, 0]).sum(dim=1, keepdim=True)  # (n, 1, P, Q')
        else:
            Yf = torch.einsum("nmpq,mcpq->ncpq", Zf, self.Kf)
        y = torch.fft.irfft2(Yf, s=self.grid)  # (n, c, P, Q)
        return y[..., s - 1 : s - 1 + H, s - 1 : s - 1 + W]

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        s = self.kernel_size
        if self.method in ("direct", "mixed"):
            return F.conv2d(F.pad(r, (s - 1,) * 4), self.K)  # (n, m, H+s-1, W+s-1)
        if self._use_scipy(r):
            return self._scipy_adjoint(r)
        Rf = torch.fft.rfft2(F.pad(r, (s - 1, 0, s - 1, 0)), s=self.grid)  # (n, c, P, Q')
        if self.K.shape[1] == 1:
            Gf = Rf * self.Kf[:, 0].conj()  # (n, m, P, Q')
        else:
            Gf = torch.einsum("ncpq,mcpq->nmpq", Rf, self.Kf.conj())
        g = torch.fft.irfft2(Gf, s=self.grid)
        return g[..., : self.map_shape[0], : self.map_shape[1]]

    def _use_scipy(self, x: torch.Tensor) -> bool:
        """Whether the FFTs can run in ``scipy.fft``: CPU, real dtype, no autograd."""
        grad = torch.is_grad_enabled() and (x.requires_grad or self.K.requires_grad)
        return x.device.type == "cpu" and not grad and x.dtype in (torch.float32, torch.float64)

    def _kernel_spectrum(self) -> np.ndarray:
        if self._Kf_np is None:
            self._Kf_np = self.Kf.detach().resolve_conj().numpy()  # (m, c, P, Q')
        return self._Kf_np

    def _scipy_forward(self, z: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with ``scipy.fft`` (CPU, no autograd)."""
        s, (H, W), workers = self.kernel_size, self.image_shape, torch.get_num_threads()
        Kf = self._kernel_spectrum()
        zp = np.zeros(z.shape[:2] + self.grid, dtype=z.detach().numpy().dtype)
        zp[..., : z.shape[-2], : z.shape[-1]] = z.detach().numpy()  # padding first: the
        Zf = scipy.fft.rfft2(zp, workers=workers)  # workers then split evenly; (n, m, P, Q')
        if Kf.shape[1] == 1:
            Zf *= Kf[:, 0]
            Yf = Zf.sum(axis=1, keepdims=True)  # (n, 1, P, Q')
        else:
            Yf = np.einsum("nmpq,mcpq->ncpq", Zf, Kf)
        y = scipy.fft.irfft2(Yf, s=self.grid, workers=workers)  # (n, c, P, Q)
        return torch.from_numpy(np.ascontiguousarray(y[..., s - 1 : s - 1 + H, s - 1 : s - 1 + W]))

    def _scipy_adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """:meth:`adjoint` by FFT with ``scipy.fft`` (CPU, no autograd)."""
        s, (H, W), workers = self.kernel_size, self.image_shape, torch.get_num_threads()
        Kf = self._kernel_spectrum()
        rp = np.zeros(r.shape[:2] + self.grid, dtype=r.detach().numpy().dtype)
        rp[..., s - 1 : s - 1 + H, s - 1 : s - 1 + W] = r.detach().numpy()
        Rf = scipy.fft.rfft2(rp, workers=workers)  # (n, c, P, Q')
        if Kf.shape[1] == 1:
            Gf = Rf * Kf[:, 0].conj()  # (n, m, P, Q')
        else:
            Gf = np.einsum("ncpq,mcpq->nmpq", Rf, Kf.conj())
        g = scipy.fft.irfft2(Gf, s=self.grid, workers=workers)
        return torch.from_numpy(
            np.ascontiguousarray(g[..., : self.map_shape[0], : self.map_shape[1]])
        )

    def lipschitz(self) -> float:
        """``max_f lambda_max(Khat(f)^H Khat(f))`` over the FFT grid, in float64.

        Exact for the circular convolution on the grid, hence an upper bound for this
        cropped operator (``||crop o C|| <= ||C||``), tight within a few percent once the
        image is several kernels wide; see :meth:`power_lipschitz` for the estimate.
        """
        H, W = self.image_shape
        s = self.kernel_size
        grid = self.grid or (_fast_len(H + s - 1), _fast_len(W + s - 1))
        Kf = torch.fft.rfft2(self.K.to(torch.float64), s=grid)  # (m, c, P, Q')
        if self.K.shape[1] == 1:
            return float(Kf.abs().pow(2).sum(dim=0).max())
        M = torch.einsum("icpq,idpq->pqcd", Kf, Kf.conj())  # (P, Q', c, c) Hermitian
        return float(torch.linalg.eigvalsh(M).amax())

    def power_lipschitz(self, *, n_iter: int = 200, tol: float = 1e-7, seed: int = 0) -> float:
        """Power-iteration estimate of ``||A^T A||`` (a lower bound that converges to it)."""
        gen = torch.Generator().manual_seed(seed)
        x0 = torch.randn((1, self.K.shape[0]) + self.map_shape, generator=gen, dtype=self.K.dtype)
        x0 = x0.to(self.K.device)
        return power_iteration(lambda x: self.adjoint(self.forward(x)), x0, n_iter=n_iter, tol=tol)
