"""ROAD's noisy linear imputation, solved for a whole batch at once (docs/metrics.md §6).

:func:`noisy_linear_impute` fills removed pixels exactly as pytorch-grad-cam's
``NoisyLinearImputer`` (Rong et al., ICML 2022, §4) does, but every removed pixel of every
image, channel and percentile is solved together with a multigrid-preconditioned conjugate
gradient in torch (any device) instead of one ``scipy.sparse.linalg.spsolve`` per image,
channel and percentile. :func:`impute_into` is the same solver writing into a preallocated
output, which :func:`sage.metrics.road.road_scores` uses per window of perturbed images. The
notes below derive the system and the solver.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["impute_into", "noisy_linear_impute"]

# ------------------------------------------------------------------ linear imputation solver
#
# The system (grad-cam's NoisyLinearImputer.setup_sparse_system): for every removed pixel i,
#     s_i x_i − Σ_o w_o x_{i+o} = 0,   w = 1/6 (4-neighbours), 1/12 (diagonals),
# the sum over neighbours inside the image, s_i = Σ of those weights (1 inside the image, less
# on the border), known neighbours moved to the right-hand side. Multiplying by 12:
#     12·w is the separable stencil [1 2 1]ᵀ[1 2 1] minus its centre (4), so with
#     S(x) = [1 2 1]ᵀ[1 2 1] ∗ x (zero padding) and c = S(1_image) = 12·s + 4,
#     A'x = u ⊙ (c ⊙ x − S(x)) = 12·(s ⊙ x − Σ_o w_o x_{i+o}) on the removed set (u = 1).
# A' is symmetric, and positive definite on the removed pixels of an image with at least one
# known pixel (irreducibly diagonally dominant M-matrix). It is solved by conjugate gradients
# preconditioned with one symmetric multigrid V-cycle (a symmetric positive-definite operator,
# so PCG applies):
#   - grids: vertex-centred, the coarse grid is every other pixel (ceil(H/2) × ceil(W/2)); a
#     coarse point is unknown iff its fine pixel is;
#   - prolongation P: bilinear (weights 1, 1/2, 1/4), constant extension past the last coarse
#     point at the image border (the border is a natural boundary, not a Dirichlet one);
#     restriction Pᵀ; prolonged corrections are masked to the removed pixels;
#   - coarse operators: Galerkin Pᵀ A P (9-point stencils with per-pixel coefficients, found by
#     probing with 9 colours), so holes of any shape are represented exactly algebraically;
#   - smoothing: one damped-Jacobi sweep before and one after; dense Cholesky on the coarsest
#     grid (≤ 64 points: the Cholesky set-up of 256-point grids cost more than the solve at 64 px).
# About 5–7 iterations reach a 1e-5 residual at 224² whatever the shape of the removed region.
#
# Every buffer carries a one-pixel zero border so stencils are slice-adds, and every step of
# the iteration is an in-place op on preallocated buffers (allocating 80 MB temporaries per op
# costs more than the arithmetic on the CPU). Work is done in cache-sized chunks of images.

_OMEGA = 1.0  # Jacobi damping (λ_max(D⁻¹A) ≤ 4/3 on the fine grid: ω < 1.5 is safe)
_COARSEST_POINTS = 64  # dense Cholesky at or below this many points per image (8×8)
# On the CPU the fine grid is processed in parts of about this many values (N·C·H·W) so the
# working planes of a part stay in the L3 cache; a chunk (one multigrid) holds this many parts.
_CPU_PART_ELEMS = 5 << 18
_CPU_PARTS_PER_CHUNK = 1  # measured: more parts per chunk did not pay on 2 CPU cores
_DENSE_VALUES = 1 << 23  # cap on the values of the coarsest dense factors of one chunk
_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _s121(xp: Tensor, hbuf: Tensor, out: Tensor) -> None:
    """``out = [1 2 1]ᵀ[1 2 1] ∗ x`` for ``xp`` holding x with a one-pixel zero border.

    ``xp``: (n, C, H+2, W+2); ``hbuf``: (n, C, H+2, W) scratch; ``out``: (n, C, H, W).
    """
    torch.add(xp[..., :, :-2], xp[..., :, 2:], out=hbuf)
    hbuf.add_(xp[..., :, 1:-1], alpha=2)
    torch.add(hbuf[..., :-2, :], hbuf[..., 2:, :], out=out)
    out.add_(hbuf[..., 1:-1, :], alpha=2)


def _inner(t: Tensor) -> Tensor:
    return t[..., 1:-1, 1:-1]


def _bordered(x: Tensor) -> Tensor:
    return F.pad(x, (1, 1, 1, 1))


def _prolong4(zp: Tensor, h: int, w: int, tmp: Tensor, out: Tensor) -> None:
    """``out = 4·P z`` on the (h, w) fine grid; ``zp`` is the zero-bordered coarse z.

    Overwrites ``zp``'s bottom/right border with the last row/column (constant extension).
    ``tmp``: (n, C, hc+1, w) scratch; ``out``: (n, C, h, w), possibly a strided view.
    """
    hc, wc = zp.shape[-2] - 2, zp.shape[-1] - 2
    zp[..., hc + 1, :] = zp[..., hc, :]
    zp[..., :, wc + 1] = zp[..., :, wc]
    ext = zp[..., 1:, 1:]  # (hc+1, wc+1)
    nw, nh = w // 2, h // 2
    torch.add(ext[..., :, :wc], ext[..., :, :wc], out=tmp[..., 0::2])
    torch.add(ext[..., :, :nw], ext[..., :, 1 : nw + 1], out=tmp[..., 1::2])
    torch.add(tmp[..., :hc, :], tmp[..., :hc, :], out=out[..., 0::2, :])
    torch.add(tmp[..., :nh, :], tmp[..., 1 : nh + 1, :], out=out[..., 1::2, :])


def _restrict4(tp: Tensor, hbuf: Tensor, full: Tensor, out: Tensor) -> None:
    """``out = 4·Pᵀ t`` (the transpose of :func:`_prolong4`) for the zero-bordered ``tp``.

    Per axis 2·Pᵀ is [1 2 1] read at the even points, plus, for an even size, the last odd
    point's second half (P extends the last coarse point past the end): so 4·Pᵀ t is
    ``S(t)`` at (even, even) plus those fold terms. ``hbuf`` (n, C, h+2, w) and ``full``
    (n, C, h, w) are scratch; ``out`` (n, C, hc, wc) may be a strided view.
    """
    h, w = tp.shape[-2] - 2, tp.shape[-1] - 2
    _s121(tp, hbuf, full)
    if h % 2 == 0:  # last row h−1 also feeds the last coarse row (at fine row h−2)
        full[..., h - 2, 0::2].add_(hbuf[..., h, 0::2])
    if w % 2 == 0:  # last column w−1, filtered vertically, feeds the last coarse column
        col = tp[..., :, w]
        hc = -(-h // 2)
        v = full[..., 0::2, w - 2]
        v.add_(col[..., 0 : 2 * hc : 2]).add_(col[..., 2 : 2 * hc + 2 : 2])
        v.add_(col[..., 1 : 2 * hc + 1 : 2], alpha=2)
        if h % 2 == 0:
            full[..., h - 2, w - 2].add_(tp[..., h, w])
    out.copy_(full[..., 0::2, 0::2])


class _Level:
    """One grid of the hierarchy: its operator, masks and preallocated buffers.

    Level 0 applies the fine stencil ``A'`` directly (separable, fast); coarser levels apply
    their Galerkin 9-point stencils ``coef`` ((n, 9, h, w): one field per offset, holding −A_c).
    """

    def __init__(self, u: Tensor, channels: int, coef: Tensor | None) -> None:
        n, _, h, w = u.shape
        dt, dev = u.dtype, u.device
        self.h, self.w, self.coef = h, w, coef
        self.u = _bordered(u)
        self.u4 = self.u / 4
        if coef is None:  # fine grid: −A'x = S(x) − c ⊙ x
            real = _bordered(torch.ones(1, 1, h, w, dtype=dt, device=dev))
            self.c = torch.zeros_like(real)
            _s121(real, torch.empty(1, 1, h + 2, w, dtype=dt, device=dev), _inner(self.c))
            diag = _bordered(_inner(self.c) - 4)  # 12·s_i
        else:
            diag = _bordered(-coef[:, 4:5])
        self.dinv = self.u / torch.where(diag > 0, diag, 1)  # A' residual → pixel units
        self.wd = self.dinv * _OMEGA
        shape = (n, channels, h + 2, w + 2)
        self.r = torch.zeros(shape, dtype=dt, device=dev)
        self.z = torch.zeros(shape, dtype=dt, device=dev)
        self.t = torch.zeros(shape, dtype=dt, device=dev)
        self.hbuf = torch.empty(n, channels, h + 2, w, dtype=dt, device=dev)
        self.chol: Tensor | None = None
        self._views: dict[tuple, list[Tensor]] = {}
        self._coef_k = [] if coef is None else [coef[:, k : k + 1] for k in range(9)]

    def apply_neg(self, xp: Tensor, out: Tensor) -> None:
        """``out = −A x`` (zero-bordered ``xp`` and ``out``); rows off the removed set are
        left unmasked (every consumer masks them)."""
        o = _inner(out)
        if self.coef is None:
            _s121(xp, self.hbuf, o)
            out.addcmul_(self.c, xp, value=-1)
            return
        key = (xp.data_ptr(), xp.shape, xp.stride())
        shifted = self._views.get(key)
        if shifted is None:  # the same few buffers come back every cycle: slice them once
            h, w = self.h, self.w
            shifted = [xp[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _OFFSETS]
            self._views[key] = shifted
        torch.mul(self._coef_k[4], shifted[4], out=o)
        for k in (0, 1, 2, 3, 5, 6, 7, 8):
            o.addcmul_(self._coef_k[k], shifted[k])

    def galerkin(self, uc: Tensor) -> Tensor:
        """−Pᵀ A P on the coarse grid with unknown mask ``uc``: (n, 9, hc, wc), one field per
        offset of ``_OFFSETS`` (rows of known points are left unmasked: never used).

        Probing: for each of the 9 colours (Ky mod 3, Kx mod 3) of coarse points, apply
        −Pᵀ A P to the colour's indicator; row K then holds −A_c[K, J] for the one point J of
        that colour in K's 3×3 neighbourhood. Runs through the level's own buffers, C colours
        at a time (no fine-size allocation).
        """
        n, _, hc, wc = uc.shape
        ch = self.z.shape[1]
        dt, dev = uc.dtype, uc.device
        iy = torch.arange(hc, device=dev) % 3
        ix = torch.arange(wc, device=dev) % 3
        groups = -(-9 // ch)
        colours = torch.arange(groups * ch, device=dev)[:, None, None]
        pattern = ((iy[:, None] * 3 + ix[None, :]) == colours).to(dt)  # (groups·C, hc, wc)
        g = torch.empty(n, groups * ch, hc, wc, dtype=dt, device=dev)
        probe = torch.zeros(n, ch, hc + 2, wc + 2, dtype=dt, device=dev)
        for gi in range(groups):
            sl = slice(gi * ch, (gi + 1) * ch)
            torch.mul(pattern[sl], uc, out=_inner(probe))
            _prolong4(probe, self.h, self.w, self.ptmp, _inner(self.z))
            self.z.mul_(self.u4)
            self.apply_neg(self.z, self.t)
            self.t.mul_(self.u4)
            _restrict4(self.t, self.hbuf, self.pout, g[:, sl])
        # the neighbour K + (dy, dx) of point K has colour ((Ky+dy)%3, (Kx+dx)%3)
        idx = torch.stack(
            [((iy[:, None] + dy) % 3) * 3 + (ix[None, :] + dx) % 3 for dy, dx in _OFFSETS]
        )
        return torch.gather(g, 1, idx.expand(n, 9, hc, wc))

    def factorise(self) -> None:
        """Dense Cholesky factor of A (identity rows for known points): the coarsest solve."""
        n = self.u.shape[0]
        h, w = self.h, self.w
        m = h * w
        dev = self.u.device
        if self.coef is None:  # fine operator: −A' = S − c, S = [1 2 1]ᵀ[1 2 1]
            weights = torch.tensor([1.0, 2, 1, 2, 4, 2, 1, 2, 1], device=dev)
            coef = weights[None, :, None, None].expand(n, 9, h, w).clone()
            coef[:, 4] -= _inner(self.c)[0, 0]
        else:
            coef = self.coef
        yy, xx = torch.meshgrid(
            torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij"
        )
        dense = torch.zeros(n, m, m, dtype=torch.float64, device=dev)
        for k, (dy, dx) in enumerate(_OFFSETS):
            ny, nx = yy + dy, xx + dx
            ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            rows, cols = (yy * w + xx)[ok], (ny * w + nx)[ok]
            dense[:, rows, cols] = -coef[:, k].reshape(n, m)[:, rows].double()
        uk = _inner(self.u).reshape(n, m).double()
        # in place: the (n, m, m) buffers dominate the set-up's memory traffic
        dense.mul_(uk[:, :, None]).mul_(uk[:, None, :])
        dense.diagonal(dim1=1, dim2=2).add_(1 - uk)
        self.chol = torch.linalg.cholesky(dense).to(self.u.dtype)

    def coarse_solve(self) -> None:
        n, ch = self.r.shape[:2]
        rhs = _inner(self.r).reshape(n, ch, -1).transpose(1, 2)
        sol = torch.cholesky_solve(rhs, self.chol).transpose(1, 2)
        torch.mul(sol.reshape(n, ch, self.h, self.w), _inner(self.u), out=_inner(self.z))


class _Multigrid:
    """The hierarchy for one chunk of images: the fine grid in cache-sized *parts* (slices of
    the chunk, each with its own buffers, processed one after the other so their working set
    stays in cache), the coarser grids on the whole chunk (fewer, larger ops)."""

    def __init__(self, u: Tensor, channels: int, part: int) -> None:
        """``u``: (n, 1, H, W) float, 1 on removed pixels; ``part``: images per fine part."""
        n = u.shape[0]
        self.slices = [slice(i, min(i + part, n)) for i in range(0, n, part)]
        self.parts = [_Level(u[sl], channels, None) for sl in self.slices]
        self.levels: list[_Level] = []  # coarse grids; empty if the fine grid is the coarsest
        fine = self.parts[0]
        if fine.h * fine.w <= _COARSEST_POINTS:
            for lv in self.parts:
                lv.factorise()
            return
        ucs, coefs = [], []
        for lv in self.parts:
            ucs.append(self._coarse_mask(lv, channels))
            coefs.append(lv.galerkin(ucs[-1]))
        if len(ucs) == 1:
            self.levels.append(_Level(ucs[0], channels, coefs[0]))
        else:
            self.levels.append(_Level(torch.cat(ucs), channels, torch.cat(coefs)))
        while True:
            lv = self.levels[-1]
            if lv.h * lv.w <= _COARSEST_POINTS:
                lv.factorise()
                break
            uc = self._coarse_mask(lv, channels)
            self.levels.append(_Level(uc, channels, lv.galerkin(uc)))

    @staticmethod
    def _coarse_mask(lv: _Level, channels: int) -> Tensor:
        """Unknown mask of the next grid (every other point) and ``lv``'s transfer buffers."""
        uc = _inner(lv.u)[..., 0::2, 0::2]
        n, _, hc, _ = uc.shape
        dt, dev = uc.dtype, uc.device
        lv.ptmp = torch.empty(n, channels, hc + 1, lv.w, dtype=dt, device=dev)
        lv.pout = torch.empty(n, channels, lv.h, lv.w, dtype=dt, device=dev)
        return uc

    @staticmethod
    def _pre_smooth(lv: _Level, r_next: Tensor) -> None:
        """z = ω D⁻¹ r; restrict the masked residual r − A z into ``r_next``."""
        torch.mul(lv.r, lv.wd, out=lv.z)
        lv.apply_neg(lv.z, lv.t)
        lv.t.add_(lv.r).mul_(lv.u4)
        _restrict4(lv.t, lv.hbuf, lv.pout, r_next)

    @staticmethod
    def _post_smooth(lv: _Level, z_next: Tensor) -> None:
        """z += P z_next (masked); then one Jacobi sweep z += ω D⁻¹ (r − A z)."""
        _prolong4(z_next, lv.h, lv.w, lv.ptmp, lv.pout)
        _inner(lv.z).addcmul_(lv.pout, _inner(lv.u4))
        lv.apply_neg(lv.z, lv.t)
        lv.t.add_(lv.r)
        lv.z.addcmul_(lv.wd, lv.t)

    def _coarse_cycle(self, i: int) -> None:
        lv = self.levels[i]
        if lv.chol is not None:
            lv.coarse_solve()
            return
        nxt = self.levels[i + 1]
        self._pre_smooth(lv, _inner(nxt.r))
        nxt.r.mul_(nxt.u)
        self._coarse_cycle(i + 1)
        self._post_smooth(lv, nxt.z)

    def vcycle(self) -> None:
        """``part.z = B part.r`` for every fine part, B the symmetric V-cycle preconditioner."""
        if not self.levels:
            for lv in self.parts:
                lv.coarse_solve()
            return
        nxt = self.levels[0]
        r_next = _inner(nxt.r)
        for lv, sl in zip(self.parts, self.slices, strict=True):
            self._pre_smooth(lv, r_next[sl])
        nxt.r.mul_(nxt.u)
        self._coarse_cycle(0)
        for lv, sl in zip(self.parts, self.slices, strict=True):
            self._post_smooth(lv, nxt.z[sl])


def _dot(a: Tensor, b: Tensor, scratch: Tensor) -> Tensor:
    """Per-(image, channel) dot product of two zero-bordered (n, C, h, w) buffers → (n, C)."""
    torch.mul(a, b, out=scratch)
    return scratch.view(*a.shape[:2], -1).sum(-1)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0``, else 0 (a converged or empty system stops moving)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, 1), 0)[..., None, None]


def _solve(
    images: Tensor, removed: Tensor, tol: float, max_iter: int, part: int
) -> tuple[Tensor, float, int]:
    """Impute one chunk: (imputed planes (n, C, H, W), max residual reached, iterations)."""
    dt = images.dtype
    u = removed[:, None].to(dt)
    known = 1 - u
    # Solve for the deviation from each plane's mean known value: the imputation of a
    # constant is that constant (rows of the system sum to 0), and smaller magnitudes lose
    # less to float32 rounding. A plane with no known pixel has no boundary data at all:
    # grad-cam's spsolve returns zeros on that singular system, and so do we (u = 0 there).
    n_known = known.sum((2, 3), keepdim=True)
    mean = (images * known).sum((2, 3), keepdim=True) / n_known.clamp_min(1)
    u = torch.where(n_known == 0, torch.zeros_like(u), u)
    mg = _Multigrid(u, images.shape[1], part)
    pcg = []  # per part: (solution e, direction p, A-product q, scratch)
    for lv, sl in zip(mg.parts, mg.slices, strict=True):
        # right-hand side b' = u ⊙ S(known values − mean)
        vk = torch.zeros_like(lv.r)
        _inner(vk).copy_((images[sl] - mean[sl]) * known[sl])
        _s121(vk, lv.hbuf, _inner(lv.r))
        lv.r.mul_(lv.u)
        pcg.append((vk.zero_(), torch.zeros_like(vk), torch.zeros_like(vk), torch.empty_like(vk)))
    mg.vcycle()
    rz = []
    for lv, (_, p, _, _) in zip(mg.parts, pcg, strict=True):
        p.copy_(lv.z)
        rz.append(_dot(lv.r, lv.z, pcg[len(rz)][3]))
    res = math.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007  (reported after the loop)
        worst = []
        for k, (lv, (e, p, q, scratch)) in enumerate(zip(mg.parts, pcg, strict=True)):
            lv.apply_neg(p, q)  # q = −A'p; its rows off the removed set are never used
            alpha = _ratio(rz[k], -_dot(p, q, scratch))
            e.addcmul_(p, alpha)
            lv.r.addcmul_(q, alpha)
            torch.mul(lv.r, lv.dinv, out=scratch)
            lo, hi = torch.aminmax(scratch)
            worst.append(torch.maximum(-lo, hi))
        res = torch.stack(worst).max().item()
        if res < tol:
            break
        mg.vcycle()
        for k, (lv, (_, p, _, scratch)) in enumerate(zip(mg.parts, pcg, strict=True)):
            rz_new = _dot(lv.r, lv.z, scratch)
            p.mul_(_ratio(rz_new, rz[k])).add_(lv.z)
            rz[k] = rz_new
    planes = [_inner(e) for e, _, _, _ in pcg]
    values = (planes[0] if len(planes) == 1 else torch.cat(planes)) + mean
    return values, res, it


def impute_into(
    out: Tensor,
    images: Tensor,
    owner: Tensor,
    removed: Tensor,
    noise: float,
    generator: torch.Generator | None,
    tol: float,
    max_iter: int,
    chunk_size: int | None,
    noise_fields: tuple[Tensor, Tensor] | None = None,
) -> None:
    """``out[k]`` = imputation of ``images[owner[k]]`` with ``removed[k]`` (no copies of the
    whole expanded batch). ``noise_fields = (fields, which)``: the noise of row ``k`` is
    ``noise · fields[which[k]]`` instead of a fresh draw from ``generator``."""
    n = removed.shape[0]
    ch, h, w = images.shape[1:]
    work = torch.float64 if images.dtype == torch.float64 else torch.float32
    # the dense coarsest factors take n·m² float64 values: keep them under 64 MB
    hc, wc = h, w
    while hc * wc > _COARSEST_POINTS:
        hc, wc = -(-hc // 2), -(-wc // 2)
    dense_cap = max(1, _DENSE_VALUES // (hc * wc) ** 2)
    if images.device.type == "cpu":
        part = min(max(1, _CPU_PART_ELEMS // (ch * h * w)), dense_cap)
        chunk = chunk_size or part * _CPU_PARTS_PER_CHUNK
    else:
        chunk = chunk_size or min(n, dense_cap)
        part = chunk
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        src = images[owner[sl]].to(work)
        rem = removed[sl]
        if not bool(rem.any()):
            out[sl] = src.to(out.dtype)
            continue
        values, res, iters = _solve(src, rem, tol, max_iter, min(part, chunk))
        if not res < tol:
            warnings.warn(
                f"noisy_linear_impute: no convergence after {iters} iterations "
                f"(max deviation from the neighbour mean {res:.2e} > tol {tol:.0e})",
                RuntimeWarning,
                stacklevel=3,
            )
        if noise and noise_fields is not None:
            fields, which = noise_fields
            values = values + noise * fields[which[sl]].to(work)
        elif noise:
            values = values + noise * torch.randn(
                values.shape, generator=generator, dtype=work, device=images.device
            )
        torch.where(rem[:, None], values.to(out.dtype), src.to(out.dtype), out=out[sl])


def noisy_linear_impute(
    images: Tensor,
    removed: Tensor,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    chunk_size: int | None = None,
) -> Tensor:
    """Noisy linear imputation of ROAD (Rong et al. 2022, §4), batched and on any device.

    Every removed pixel is set to the weighted mean of its 8 neighbours — 4-neighbours weight
    1/6, diagonals 1/12, neighbours outside the image dropped and the remaining weights
    renormalised (``x_i = Σ_o w_o x_{i+o} / Σ_o w_o``) — which couples the removed pixels
    into one sparse linear system per image and channel, exactly grad-cam's
    ``NoisyLinearImputer``. Then ``noise · N(0, 1)`` is added to the removed pixels only
    (after solving, as grad-cam does).

    The systems of all images and channels are solved together by multigrid-preconditioned
    conjugate gradients (module notes), until every removed pixel is within ``tol`` of the
    weighted mean of its neighbours (max-norm, in the images' units). With the default 1e-5,
    float32 images match grad-cam's float64 ``spsolve`` to ~1e-5, and to < 1e-4 in the worst
    cases measured (a 224² image with only two known pixels, where float32 rounding, not the
    tolerance, is the limit); float64 images are solved in float64 (pass a smaller ``tol``).
    An image plane with *no* known pixel has no boundary data and is filled with 0 (the
    normalisation mean), which is also what ``spsolve`` returns for that singular system.

    Cost: a few V-cycles' worth of slice-adds per image, vectorised over the batch — on 2 CPU
    cores about 10 ms per 3×224² image, under half a ResNet-18 forward pass
    (``benchmarks/road_speed.py``), against seconds for grad-cam's ``spsolve``.

    Args:
        images: (N, C, H, W) float images (normalised model inputs).
        removed: (N, H, W) bool, True where the pixel is removed and imputed.
        noise: standard deviation of the Gaussian noise added to imputed pixels (grad-cam's
            default is 0.01; ROAD's paper uses noise too; 0 gives the deterministic imputation).
        generator: torch generator for the noise (on the images' device), for reproducibility.
        tol: convergence threshold (see above). ``max_iter``: iteration cap per chunk; hitting
            it raises a RuntimeWarning naming the residual reached.
        chunk_size: images per solver call (one multigrid hierarchy); default: all at once on
            accelerators, cache-sized chunks of about 1.3 million values on the CPU (8 images
            at 3×224²).

    Returns:
        (N, C, H, W) tensor of ``images``' dtype and device: known pixels unchanged, removed
        pixels imputed.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    if removed.shape != (n, h, w):
        raise ValueError(f"removed must be (N, H, W) = {(n, h, w)}, got {tuple(removed.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("noisy_linear_impute: images hold NaN or ±inf")
    removed = removed.to(device=images.device, dtype=torch.bool)
    out = torch.empty_like(images)
    owner = torch.arange(n, device=images.device)
    impute_into(out, images, owner, removed, noise, generator, tol, max_iter, chunk_size)
    return out
