"""Dictionary-update steps for sparse coding (the "D-step" of dictionary learning).

Two updates of ``W`` (d, k) given a batch ``Y`` (b, d) and its codes ``Z`` (b, k),
both followed by renormalising every column to unit L2 norm:

* ``sgd``: the lecture's method, one gradient step on the batch's mean energy,
  ``W <- W - lr * (W Z^T - Y^T) Z / b``;
* ``online``: Mairal, Bach, Ponce & Sapiro (2009), the block-coordinate update that
  SPAMS uses. Running statistics ``A = sum z z^T`` and ``B = sum y z^T`` (with a
  forgetting factor) summarise all past batches; one sweep over the columns
  minimises ``0.5 tr(W^T W A) - tr(W^T B)`` column by column.

Pure functions, no validation (``SparseCoding.fit`` validates).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .ops import normalize_columns

__all__ = ["OnlineStats", "online_update", "sgd_update", "reinit_dead_atoms"]


@dataclass
class OnlineStats:
    """Past-batch statistics: ``A`` (k, k), ``B`` (d, k), and the batch counter ``t``."""

    A: torch.Tensor
    B: torch.Tensor
    t: int = 0

    @classmethod
    def zeros(cls, W: torch.Tensor) -> OnlineStats:
        d, k = W.shape
        return cls(W.new_zeros(k, k), W.new_zeros(d, k), 0)

    def state_dict(self) -> dict:
        """``{"A", "B", "t"}``, for checkpoints (:class:`lvebm.training.Stateful`)."""
        return {"A": self.A, "B": self.B, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        """Restore in place from :meth:`state_dict` (shapes must match)."""
        self.A.copy_(state["A"])
        self.B.copy_(state["B"])
        self.t = int(state["t"])


def forgetting_factor(t: int, rho: float) -> float:
    """Weight of the past statistics at batch ``t`` (1-based): ``(1 - 1/t)^rho``.

    ``rho = 1`` is a plain running average; larger ``rho`` forgets the codes computed
    with early, poor dictionaries faster (Mairal et al. 2010, Sec. 3.4.2).
    """
    return (1.0 - 1.0 / t) ** rho


def online_update(
    W: torch.Tensor,
    Y: torch.Tensor,
    Z: torch.Tensor,
    stats: OnlineStats,
    *,
    rho: float = 1.0,
    sweeps: int = 1,
    positive: bool = False,
) -> torch.Tensor:
    """One online block-coordinate dictionary update; returns the new ``W`` (d, k).

    Updates ``stats`` in place. Column ``j`` moves to
    ``u_j = w_j + (b_j - W a_j) / A_jj`` (projected onto ``u_j >= 0`` when ``positive``,
    as SPAMS's ``posD``) and is renormalised; atoms with ``A_jj == 0`` (never used) are
    left for :func:`reinit_dead_atoms`.
    """
    b = Y.shape[0]
    stats.t += 1
    beta = forgetting_factor(stats.t, rho)
    stats.A.mul_(beta).add_(Z.T @ Z, alpha=1.0 / b)
    stats.B.mul_(beta).add_(Y.T @ Z, alpha=1.0 / b)
    W = W.clone()
    A, B = stats.A, stats.B
    diag = torch.diagonal(A)
    active = (diag > 1e-12 * torch.clamp(diag.max(), min=1e-30)).tolist()
    for _ in range(sweeps):
        for j in range(W.shape[1]):
            if not active[j]:
                continue
            u = W[:, j] + (B[:, j] - W @ A[:, j]) / A[j, j]
            if positive:
                u = torch.clamp(u, min=0)
            norm = torch.linalg.vector_norm(u)
            if norm > 0:
                W[:, j] = u / norm
    return W


def sgd_update(
    W: torch.Tensor, Y: torch.Tensor, Z: torch.Tensor, *, lr: float, positive: bool = False
) -> torch.Tensor:
    """One gradient step on ``mean_i 0.5||y_i - W z_i||^2`` then column renormalisation
    (after projecting onto ``W >= 0`` when ``positive``)."""
    b = Y.shape[0]
    grad = (Z @ W.T - Y).T @ Z / b  # (d, k)
    W = W - lr * grad
    return normalize_columns(torch.clamp(W, min=0) if positive else W)


def reinit_dead_atoms(
    W: torch.Tensor,
    Y: torch.Tensor,
    Z: torch.Tensor,
    usage: torch.Tensor,
    *,
    generator: torch.Generator,
    stats: OnlineStats | None = None,
    positive: bool = False,
) -> tuple[torch.Tensor, int]:
    """Replace atoms with ``usage == 0`` by the batch's worst-reconstructed samples.

    ``usage`` (k,) counts how often each atom was non-zero since the last check.
    Residuals ``y - W z`` of the samples with the largest error (their positive part
    when ``positive``) become the new atoms (unit-normed); their online statistics
    are reset. Returns (W, number replaced).
    """
    dead = torch.nonzero(usage == 0).flatten()
    if dead.numel() == 0:
        return W, 0
    R = Y - Z @ W.T  # (b, d)
    err = R.pow(2).sum(1)
    n_new = min(dead.numel(), Y.shape[0])
    worst = torch.argsort(err, descending=True)[:n_new]
    noise = torch.randn(n_new, W.shape[0], generator=generator, dtype=W.dtype).to(W.device)
    R = torch.clamp(R[worst], min=0) + 1e-3 * noise.abs() if positive else R[worst] + 1e-3 * noise
    new_atoms = normalize_columns(R.T)  # (d, n_new)
    W = W.clone()
    idx = dead[:n_new]
    W[:, idx] = new_atoms
    if stats is not None:
        stats.A[idx, :] = 0
        stats.A[:, idx] = 0
        stats.B[:, idx] = 0
    return W, n_new
