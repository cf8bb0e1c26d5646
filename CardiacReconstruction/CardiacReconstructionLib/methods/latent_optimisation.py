"""Latent optimisation (SRHeart, Wang et al., MICCAI 2021): joint motion correction and
super-resolution by fitting a learned shape prior to the input stack.

Model
-----
A beta-VAE decoder G (:mod:`..networks.vae`) maps a latent code z to label probabilities
(background, LV, MYO, RV) on the prior's grid, a box centred on the heart in its short-axis frame.
Slice s of the input stack, displaced by d_s (mm along the stack's i, j axes, convention of
:mod:`..core.case`), shows at pixel p the anatomy at ``p - d_s``; the whole anatomy may also sit at
``t`` (mm, prior axes) from the grid centre the stack suggested. The method minimises

    sum_s w_s CE(G(z)(p - d_s - t), S_s)  +  gamma sum_v CE(G(z)(q - t), L_v)
    + beta/2 |z|^2 + lambda_d sum_s |d_s|^2 / sigma^2 + lambda_s sum_s |d_s - d_(s+1)|^2 / sigma^2

over (z, d, t), where ``G(z)(x)`` is the probability vector trilinearly interpolated at x
(``torch.nn.functional.grid_sample``; nearest sampling would give a zero gradient for d and t,
the public SRHeart demo's bug) and the long-axis views L_v are sampled at their pixel centres q
from their own headers. Points outside the prior's box count as background. The slice weights
w_s (:func:`_slice_weights`) favour full sections over the partial basal and apical ones; slices
without heart labels keep a small weight, since they tell where the heart ends (an empty slice
stays empty under any in-plane shift).

Gauge
-----
Moving every slice and the anatomy together leaves the SAX term unchanged. Without long-axis
views the displacements are pinned to **zero mean** over the slices that show the heart (slices
without heart labels carry no information on their shift and get d = 0), and ``t`` absorbs the
common shift, so the result lies where the stack's mean slice position puts it. With long-axis
views (``gauge='auto'`` or ``'lax'``) the views fix where the anatomy is, so the displacements are
left free and their mean becomes observable.

Placement on the prior grid (generalises to any clinical stack)
---------------------------------------------------------------
The prior frame is built from the stack itself (:func:`prior_frame_from_stack`): k along the
stack normal from base to apex, i from the LV towards the RV centroid (rotated by the constant
:data:`LV_RV_TO_SAX_I_DEG` that maps that direction onto the mitral-to-tricuspid direction of the
CT SAX frame the prior was trained in), centred in-plane on the ventricles and along k on the
middle of the LV's extent (the CT frame's mitral-apex midpoint). Any in-plane spacing, slice
spacing, slice count or oblique pose works because everything is sampled by physical position.

Optimisation
------------
z starts from the encoder applied to a cheap baseline (centroid alignment + shape-based
interpolation resampled straight onto the prior grid), d from the baseline's displacements.
Coarse to fine, with several starts run as one batch: first a rigid stage moves only d and t of
every start (encoder or prior-mean z; baseline or zero d) against its decoded initial shape,
blurred by a Gaussian for the first half (wide capture range; no decoder in the loop, so this is
cheap); the start with the lowest loss is kept. Then the joint stage optimises its z, d and t
with Adam until the relative change of the loss between two consecutive windows of
:data:`WINDOW` iterations falls below ``tolerance`` (SRHeart: 5 %) or ``iterations`` is reached.

Output
------
The best start's probabilities (moved by t) are resampled trilinearly onto the requested output
grid (:func:`.output_geometry`) and fused with the input slices moved back by the
estimated displacements (shape-based interpolation, weight ``input_weight``; see
:func:`_fused_labels`), then put to argmax. Also returned: the displacements in mm, per-slice
residuals (cross-entropy and foreground Dice of the fitted slice against the input slice) and
the iteration counts and losses in ``Result.diagnostics``.

Speed: the in-plane sampling of the SAX slices uses a 2D path (:func:`_sample_parallel_planes`),
only pixels within 15 mm of the labelled region are fitted, the decoder runs for one start
only, and torch runs on one thread by default (``methods.run``'s ``threads``): median 5-9 s per case on a
2-core CPU with the shipped 32 x 64 x 64 prior (``Testing/benchmarks/lo_bench.sh``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .baselines import centroid_displacements, shape_based_interpolation
from ..core.case import Case
from ..anatomy.frame import SaxFrame
from ..core.errors import InputError
from ..core.geometry import Geometry, Volume, resample
from ..core.labels import LV, MYO, RV
from ..core.api import Method, Option, Result, RunContext
from ..core.stack import base_is_first, slice_areas, slice_centroids
from ..networks.cache import NetworkCache

#: Name of the shipped prior in the weights manifest (:mod:`..networks.weights`).
DEFAULT_WEIGHTS = "lo_vae"
#: The LV->RV centroid direction of a stack lies this many degrees (right-handed about the
#: base->apex axis) short of the mitral->tricuspid direction that defines i in the CT SAX frame
#: the prior was trained in: -17.3 +- 1.5 degrees over the 15 training subjects (normal motion,
#: 3 seeds each), measured in the development of this module.
LV_RV_TO_SAX_I_DEG = 17.3
#: Iterations per window of the stopping rule.
WINDOW = 10
#: Margin (mm) around the labelled pixels of the input planes within which pixels are fitted.
CROP_MARGIN_MM = 15.0
_EPS = 1e-6


def _slice_centroids_ras(sax: Volume, labels: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """RAS centroid (n, 3; NaN where absent) and area (mm^2) of ``labels`` in every slice."""
    mm = slice_centroids(sax, labels)  # (n, 2) mm along the stack's i, j from voxel (0, 0)
    si, sj = sax.spacing[:2]
    ijk = np.stack([mm[:, 0] / si, mm[:, 1] / sj, np.arange(sax.shape[0], dtype=float)], axis=1)
    return sax.geometry.index_to_ras(ijk), slice_areas(sax, labels)


def prior_frame_from_stack(sax: Volume) -> SaxFrame:
    """The prior's SAX frame for a stack: see the module docstring. InputError when the stack
    lacks the LV (1 or 2) or the RV (3) needed to orient it."""
    geo, arr = sax.geometry, sax.array
    k = geo.direction[:, 2] * (1.0 if base_is_first(arr) else -1.0)
    lv, n_lv = _slice_centroids_ras(sax, (LV, MYO))
    rv, n_rv = _slice_centroids_ras(sax, (RV,))
    both = (n_lv > 0) & (n_rv > 0)
    if not both.any():
        raise InputError("Latent optimisation needs the LV (labels 1-2) and the RV (label 3) in at least one "
                         "common SAX slice to orient the heart; this stack has "
                         f"{int((n_lv > 0).sum())} slices with LV and {int((n_rv > 0).sum())} with RV.")
    lv_to_rv = ((rv - lv)[both] * np.minimum(n_lv, n_rv)[both, None]).sum(axis=0)
    from scipy.spatial.transform import Rotation

    lv_to_rv -= (lv_to_rv @ k) * k
    if np.linalg.norm(lv_to_rv) < 1e-6:
        raise InputError("The LV and RV centroids of this stack coincide; the heart cannot be oriented.")
    i = Rotation.from_rotvec(np.radians(LV_RV_TO_SAX_I_DEG) * k).apply(lv_to_rv / np.linalg.norm(lv_to_rv))
    j = np.cross(k, i)
    kk, jj, ii = np.nonzero(np.isin(arr, (LV, MYO, RV)))
    centre = geo.index_to_ras(np.stack([ii, jj, kk], axis=1).astype(float)).mean(axis=0)
    lv_slices = np.flatnonzero(n_lv > 0)
    slice_centres = geo.slice_centres()
    mid = (slice_centres[lv_slices[0]] + slice_centres[lv_slices[-1]]) / 2
    centre = centre + ((mid - centre) @ k) * k
    return SaxFrame(centre, np.stack([i, j, k], axis=1))


def prior_geometry(sax: Volume, config) -> Geometry:
    """The prior's grid (``config.grid_shape`` at ``config.spacing``) placed on the stack."""
    return prior_frame_from_stack(sax).geometry(config.grid_shape, config.spacing)


def labels_on_prior_grid(hr_labels: Volume, sax: Volume, config) -> np.ndarray:
    """An HR label volume of the heart the stack ``sax`` shows, resampled onto the prior grid
    placed on that stack (uint8 [k, j, i]; labels above RV become background). Used to add
    MRI-shaped training shapes (ACDC) in exactly the placement inference uses."""
    grid = prior_geometry(sax, config)
    out = resample(hr_labels, grid, "label_linear").array.astype(np.uint8)
    out[out > RV] = 0
    return out


NETWORKS = NetworkCache({"vae": DEFAULT_WEIGHTS})


def load_prior(weights_name_or_path: str = DEFAULT_WEIGHTS, device: str = "cpu"):
    """The frozen VAE (cached per device and source): a name in the weights manifest (SHA-256
    verified) or a ``.pt`` checkpoint of kind ``vae``."""
    return NETWORKS.get("vae", str(device), weights=str(weights_name_or_path or DEFAULT_WEIGHTS))


# Observations as sampling problems on the prior grid
@dataclass
class _Observation:
    """Pixels of one set of planes as normalised prior-grid coordinates (grid_sample order x=i,
    y=j, z=k; align_corners=True) and their target classes."""

    grid: "object"  # torch [n_planes, rows, cols, 3]
    target: "object"  # torch long [n_planes, rows, cols]


def _to_normalised(prior: Geometry):
    """(3x3 matrix, 3-vector) mapping RAS points to normalised grid_sample coordinates."""
    inv = np.linalg.inv(prior.ijk_to_ras)
    n = np.asarray(prior.shape[::-1], float)  # i, j, k sizes
    scale = 2.0 / np.maximum(n - 1, 1)
    return scale[:, None] * inv[:3, :3], scale * inv[:3, 3] - 1.0


def _pixel_grid(volume: Volume, prior: Geometry):
    """Normalised prior coordinates [k, j, i, 3] of every voxel centre of ``volume``."""
    a, b = _to_normalised(prior)
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in volume.shape), indexing="ij")
    ras = volume.geometry.index_to_ras(np.stack([i, j, k], axis=-1))
    return ras @ a.T + b


def _crop_box(volume: Volume, coords: np.ndarray, margin_mm: float, step: int) -> Tuple[slice, slice]:
    """In-plane (rows, cols) window of the pixels worth fitting: the bounding box of the labelled
    pixels of all planes enlarged by ``margin_mm`` (background far from the heart is predicted
    with certainty and carries no gradient), limited to the prior's box, sampled every ``step``
    pixels. An unlabelled plane keeps the part of it that lies in the prior's box."""
    si, sj = volume.spacing[:2]
    labelled = (volume.array > 0).any(axis=0)
    if labelled.any():
        rows, cols = np.flatnonzero(labelled.any(axis=1)), np.flatnonzero(labelled.any(axis=0))
        mj, mi = int(np.ceil(margin_mm / sj)), int(np.ceil(margin_mm / si))
        r0, r1 = max(0, rows[0] - mj), min(volume.shape[1], rows[-1] + mj + 1)
        c0, c1 = max(0, cols[0] - mi), min(volume.shape[2], cols[-1] + mi + 1)
    else:
        r0, r1, c0, c1 = 0, volume.shape[1], 0, volume.shape[2]
    inside = np.all(np.abs(coords[:, r0:r1, c0:c1]) <= 1.0, axis=-1).any(axis=0)
    if not inside.any():
        return slice(0, 0), slice(0, 0)
    rows, cols = np.flatnonzero(inside.any(axis=1)) + r0, np.flatnonzero(inside.any(axis=0)) + c0
    return slice(rows[0], rows[-1] + 1, step), slice(cols[0], cols[-1] + 1, step)


def _pixel_step(volume: Volume, prior: Geometry, requested: int) -> int:
    """``requested`` if positive, else the largest step that still samples the planes at least
    twice as finely as the prior's in-plane spacing (every pixel of clinical stacks; finer
    sampling improved the displacement estimates by ~0.1 mm in development)."""
    if requested > 0:
        return int(requested)
    return max(1, int(np.floor(min(prior.spacing[:2]) / (2 * max(volume.spacing[:2])) + 1e-6)))


def _observation(volume: Volume, prior: Geometry, torch, device, step: int = 1) -> _Observation:
    coords = _pixel_grid(volume, prior)
    rows, cols = _crop_box(volume, coords, CROP_MARGIN_MM, step)
    target = volume.array[:, rows, cols].astype(np.int64)
    target[target > RV] = 0  # atria and vessels lie outside the ventricles: background for the prior
    return _Observation(torch.as_tensor(coords[:, rows, cols], dtype=torch.float32, device=device),
                        torch.as_tensor(target, device=device))


def _mm_to_normalised(prior: Geometry, vectors_ras: np.ndarray) -> np.ndarray:
    """Normalised-coordinate change of a displacement of 1 mm along each RAS vector (rows)."""
    a, _ = _to_normalised(prior)
    return np.asarray(vectors_ras, float) @ a.T


def _sample(probs, grid, torch):
    """Probabilities [B, C, planes, rows, cols] at normalised points grid [B, planes, rows, cols, 3];
    outside the prior's box the missing mass goes to background."""
    out = torch.nn.functional.grid_sample(probs, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    missing = (1.0 - out.sum(dim=1, keepdim=True)).clamp(min=0.0)
    return torch.cat([out[:, :1] + missing, out[:, 1:]], dim=1)


def _sample_parallel_planes(probs, plane_k, xy, torch):
    """Like :func:`_sample` for planes of constant prior k (the SAX slices: the prior's k axis is
    the stack normal): linear interpolation between the two prior slices around each plane's
    k index ``plane_k`` [B, n] (continuous, voxel units; "hat" weights ``max(0, 1 - |k - index|)``
    of the two gathered slices, so it is differentiable in both the shapes and ``plane_k``), then
    a 2D bilinear ``grid_sample`` of the in-plane normalised points ``xy`` [B, n, rows, cols, 2].
    The same numbers as trilinear 3D sampling, several times cheaper on a CPU, and independent of
    the prior's slice count (a gather, not a weighted sum over every slice). Outside the box the
    missing mass goes to background."""
    b, c, n_k = probs.shape[:3]
    rows_cols = probs.shape[3:]
    n = plane_k.shape[1]
    lower = plane_k.detach().floor().clamp(0, max(n_k - 2, 0)).long()  # [B, n]
    slabs = 0
    for offset in ((0, 1) if n_k > 1 else (0,)):
        index = lower + offset
        weight = (1.0 - (plane_k - index.to(plane_k.dtype)).abs()).clamp(min=0.0)  # [B, n]
        gathered = torch.gather(probs, 2, index[:, None, :, None, None].expand(b, c, n, *rows_cols))
        slabs = slabs + weight[:, None, :, None, None] * gathered  # [B, C, n, j, i]
    slabs = slabs.permute(0, 2, 1, 3, 4)
    out = torch.nn.functional.grid_sample(slabs.reshape(b * n, c, *rows_cols),
                                          xy.reshape(b * n, *xy.shape[2:]), mode="bilinear",
                                          padding_mode="zeros", align_corners=True)
    out = out.reshape(b, n, c, *xy.shape[2:4]).permute(0, 2, 1, 3, 4)
    missing = (1.0 - out.sum(dim=1, keepdim=True)).clamp(min=0.0)
    return torch.cat([out[:, :1] + missing, out[:, 1:]], dim=1)


def _cross_entropy(p, target, torch):
    """Per-pixel cross-entropy [B, planes, rows, cols] of sampled probabilities."""
    picked = torch.gather(p, 1, target.expand(p.shape[0], *target.shape).unsqueeze(1)).squeeze(1)
    return -torch.log(picked.clamp(min=_EPS))


def _gaussian_blur(probs, sigma_vox: float, torch):
    """Separable Gaussian blur of [B, C, k, j, i] probabilities (sigma in voxels); keeps sums at 1
    inside the box (replicate padding)."""
    if sigma_vox <= 0:
        return probs
    radius = max(1, int(np.ceil(3 * sigma_vox)))
    x = torch.arange(-radius, radius + 1, dtype=probs.dtype, device=probs.device)
    kernel = torch.exp(-0.5 * (x / sigma_vox) ** 2)
    kernel = kernel / kernel.sum()
    b, c = probs.shape[:2]
    out = probs.reshape(b * c, 1, *probs.shape[2:])
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        out = torch.nn.functional.conv3d(torch.nn.functional.pad(out, pad, mode="replicate"), kernel.view(shape))
    return out.reshape(probs.shape)


class _Problem:
    """Everything the loss needs, precomputed once per case."""

    def __init__(self, case: Case, prior: Geometry, opts: Dict, torch, device):
        self.torch, self.prior = torch, prior
        step = _pixel_step(case.sax, prior, int(opts["pixel_step"]))
        self.sax = _observation(case.sax, prior, torch, device, step)
        z = self.sax.grid[..., 2]
        self.parallel = bool(z.numel()) and float((z.amax(dim=(1, 2)) - z.amin(dim=(1, 2))).max()) < 1e-3
        self.k_scale = (prior.shape[0] - 1) / 2.0  # normalised k -> voxel index
        stack_dirs = case.sax.geometry.direction[:, :2].T  # stack i, j (RAS) per mm
        self.shift_dirs = torch.as_tensor(_mm_to_normalised(prior, stack_dirs), dtype=torch.float32, device=device)
        self.t_dirs = torch.as_tensor(_mm_to_normalised(prior, prior.direction.T), dtype=torch.float32, device=device)
        area = np.isin(case.sax.array, (LV, MYO, RV)).sum(axis=(1, 2)).astype(float)
        self.has_heart = torch.as_tensor(area > 0, dtype=torch.float32, device=device)
        self.slice_weight = torch.as_tensor(_slice_weights(area, opts["empty_slice_weight"]), dtype=torch.float32,
                                            device=device)
        self.lax = [_observation(v.labels, prior, torch, device, _pixel_step(v.labels, prior, int(opts["pixel_step"])))
                    for v in case.lax]
        self.lax_weight = float(opts["lax_weight"]) if self.lax else 0.0
        self.anchored = bool(self.lax) and opts["gauge"] in ("auto", "lax")
        if opts["gauge"] == "lax" and not self.lax:
            raise InputError("gauge='lax' needs at least one long-axis view; use 'auto' or 'zero_mean'.")
        self.sigma = float(opts["motion_sd_mm"])
        self.lambda_d, self.lambda_smooth = float(opts["displacement_weight"]), float(opts["smoothness"])
        self.beta = float(opts["latent_weight"])

    def displacements(self, d_free):
        """Gauge-fixed displacements [B, n, 2] (mm) from the free parameters."""
        m = self.has_heart[None, :, None]
        if self.anchored:
            return d_free * m
        mean = (d_free * m).sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp(min=1.0)
        return (d_free - mean) * m

    def sax_points(self, d, t):
        """Sampling points [B, n, rows, cols, 3] of the stack's pixels: p - d_s - t."""
        shift = d @ self.shift_dirs + (t @ self.t_dirs)[:, None, :]  # [B, n, 3]
        return self.sax.grid[None] - shift[:, :, None, None, :]

    def sample_sax(self, probs, d, t):
        """Probabilities [B, C, n, rows, cols] of the decoded shapes at the stack's pixels."""
        torch = self.torch
        if not self.parallel:
            return _sample(probs, self.sax_points(d, t), torch)
        shift = d @ self.shift_dirs + (t @ self.t_dirs)[:, None, :]  # [B, n, 3]
        plane_k = (self.sax.grid[None, :, 0, 0, 2] - shift[..., 2] + 1.0) * self.k_scale
        xy = self.sax.grid[None, ..., :2] - shift[:, :, None, None, :2]
        return _sample_parallel_planes(probs, plane_k, xy, torch)

    def terms(self, probs, z, d, t) -> Dict[str, object]:
        """Loss terms per start [B]; ``probs`` [B, C, k, j, i]."""
        torch = self.torch
        ce = _cross_entropy(self.sample_sax(probs, d, t), self.sax.target, torch)
        per_slice = ce.mean(dim=(2, 3))  # [B, n]
        w = self.slice_weight
        out = {"sax": (per_slice * w).sum(dim=1) / w.sum().clamp(min=_EPS), "per_slice": per_slice}
        lax = torch.zeros_like(out["sax"])
        for view in self.lax:
            points = view.grid[None] - (t @ self.t_dirs)[:, None, None, None, :]
            lax = lax + _cross_entropy(_sample(probs, points, torch), view.target, torch).mean(dim=(1, 2, 3))
        out["lax"] = lax * self.lax_weight
        s2 = self.sigma ** 2
        out["motion"] = self.lambda_d * (d ** 2).sum(dim=2).mean(dim=1) / s2
        if d.shape[1] > 1:
            out["smooth"] = self.lambda_smooth * ((d[:, 1:] - d[:, :-1]) ** 2).sum(dim=2).mean(dim=1) / s2
        else:
            out["smooth"] = torch.zeros_like(out["sax"])
        out["latent"] = 0.5 * self.beta * (z ** 2).sum(dim=1) if z is not None else torch.zeros_like(out["sax"])
        out["total"] = out["sax"] + out["lax"] + out["motion"] + out["smooth"] + out["latent"]
        return out


def _slice_weights(area: np.ndarray, empty_weight: float, floor: float = 0.3) -> np.ndarray:
    """Per-slice weight of the SAX term. Slices with at least half the median heart area weigh
    1; slices showing little of the heart (basal and apical partial sections, the most sensitive
    to partial volume and tilt) fall linearly to ``floor``; slices without heart labels weigh
    ``empty_weight`` (their displacement is pinned, so they only tell where the heart ends)."""
    present = area[area > 0]
    if present.size == 0:
        return np.ones_like(area)
    ref = 0.5 * float(np.median(present))
    return np.where(area > 0, np.clip(area / ref, floor, 1.0), empty_weight)


def _initial_guess(case: Case, prior: Geometry, model, torch, device):
    """Encoder code of the centroid-aligned shape-based interpolation on the prior grid, and the
    centroid baseline's displacements (mm)."""
    from ..networks.vae import onehot

    d0, _ = centroid_displacements(case.sax)
    baseline = shape_based_interpolation(case.sax, prior, shifts_mm=-d0).array.copy()
    baseline[baseline > RV] = 0
    with torch.no_grad():
        mu, _ = model.encode(onehot(baseline[None]).to(device))
    return mu[0], torch.as_tensor(d0, dtype=torch.float32, device=device)


def _starts(z_enc, d0, n_starts: int, torch, generator):
    """Batch of starting points: (encoder z, baseline d), (encoder z, zero d), (prior mean,
    baseline d), then encoder z with random perturbations of the code."""
    zs, ds = [], []
    for s in range(n_starts):
        if s == 0:
            zs.append(z_enc), ds.append(d0)
        elif s == 1:
            zs.append(z_enc), ds.append(torch.zeros_like(d0))
        elif s == 2:
            zs.append(torch.zeros_like(z_enc)), ds.append(d0)
        else:
            zs.append(z_enc + 0.5 * torch.randn(z_enc.shape, generator=generator, device=z_enc.device))
            ds.append(d0)
    return torch.stack(zs), torch.stack(ds)


class _Adam:
    """Adam (Kingma & Ba 2015, default betas) on a few tensors with per-tensor step sizes.

    Why not ``torch.optim.Adam``: the first optimiser a process creates imports
    ``torch._dynamo`` (~5 s on a 2-core CPU, measured with torch 2.13), more than a third of this
    method's time budget for a single case; these few lines have no such cost."""

    def __init__(self, params_and_steps, betas=(0.9, 0.999), eps=1e-8):
        self.groups = [(p, float(lr)) for p, lr in params_and_steps]
        self.betas, self.eps, self.t = betas, eps, 0
        self.m = [p.detach().new_zeros(p.shape) for p, _ in self.groups]
        self.v = [p.detach().new_zeros(p.shape) for p, _ in self.groups]

    def zero_grad(self):
        for p, _ in self.groups:
            p.grad = None

    def step(self):
        b1, b2 = self.betas
        self.t += 1
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for (p, lr), m, v in zip(self.groups, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad.detach()
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.data.addcdiv_(m / c1, (v / c2).sqrt_().add_(self.eps), value=-lr)


def _converged(history: List[float], tolerance: float) -> bool:
    """Relative change of the mean loss between the last two windows below ``tolerance``."""
    if len(history) < 2 * WINDOW:
        return False
    prev, last = np.mean(history[-2 * WINDOW:-WINDOW]), np.mean(history[-WINDOW:])
    return abs(prev - last) / max(abs(prev), 1e-12) < tolerance


def _rigid_stage(problem: _Problem, probs, d_free, t, opts, ctx: RunContext, torch) -> int:
    """Move only d and t against the fixed (blurred, then sharp) decoded shapes; returns the
    iteration count. Cheap: no decoder in the loop."""
    n_iter = int(opts["rigid_iterations"])
    if n_iter <= 0:
        return 0
    d_free.requires_grad_(True), t.requires_grad_(True)
    optimiser = _Adam([(d_free, opts["shift_step_mm"]), (t, opts["shift_step_mm"])])
    blurred = _gaussian_blur(probs, float(opts["blur_voxels"]), torch)
    for it in range(n_iter):
        target = blurred if it < n_iter // 2 else probs
        loss = problem.terms(target, None, problem.displacements(d_free), t)["total"].sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if it % 10 == 0:
            ctx.report(0.1 + 0.2 * it / n_iter, "rigid alignment of the slices")
    return n_iter


def _joint_stage(problem: _Problem, model, z, d_free, t, opts, ctx: RunContext, torch):
    """Adam on z, d and t with the decoder in the loop until convergence or the cap."""
    z.requires_grad_(True), d_free.requires_grad_(True), t.requires_grad_(True)
    step = float(opts["shift_step_mm"])
    optimiser = _Adam([(z, opts["latent_step"]), (d_free, step), (t, step)])
    cap, tol = int(opts["iterations"]), float(opts["tolerance"])
    history, it = [], 0
    for it in range(1, cap + 1):
        probs = torch.softmax(model.decode(z), dim=1)
        terms = problem.terms(probs, z, problem.displacements(d_free), t)
        loss = terms["total"].sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(float(loss.detach()))
        if it % 10 == 0:
            ctx.report(0.3 + 0.6 * it / cap, f"latent optimisation, iteration {it}")
        if _converged(history, tol):
            break
    return it, history


def _slice_residuals(problem: _Problem, probs, d, t, torch) -> Dict[str, list]:
    """Per-slice cross-entropy and foreground Dice of the fitted slice against the input slice."""
    with torch.no_grad():
        p = problem.sample_sax(probs, d, t)[0]
        pred = p.argmax(dim=0)
        ce = _cross_entropy(p[None], problem.sax.target, torch)[0].mean(dim=(1, 2))
    target = problem.sax.target
    dice = []
    for s in range(pred.shape[0]):
        a, b = pred[s] > 0, target[s] > 0
        total = int(a.sum() + b.sum())
        dice.append(float(2 * (a & b).sum()) / total if total else float("nan"))
    return {"slice_residual_ce": [round(float(v), 5) for v in ce], "slice_dice": [round(v, 4) for v in dice]}


def _prior_on_output(probs, prior: Geometry, t_mm: np.ndarray, output: Geometry) -> np.ndarray:
    """Probabilities [C, k, j, i] of the prior grid moved by ``t`` (mm, prior axes), resampled
    trilinearly onto ``output``; outside the prior's box everything is background."""
    moved = prior.ijk_to_ras.copy()
    moved[:3, 3] += prior.direction @ t_mm
    channels = [resample(Volume(probs[c].astype(np.float32), moved), output, "linear").array
                for c in range(probs.shape[0])]
    stacked = np.stack(channels)
    stacked[0] += np.clip(1.0 - stacked.sum(axis=0), 0.0, None)
    return stacked


def _fused_labels(prior_probs: np.ndarray, case: Case, displacements: np.ndarray, output: Geometry,
                  input_weight: float) -> np.ndarray:
    """Argmax of ``input_weight`` x one-hot(shape-based interpolation of the input slices moved
    back by the estimated displacements) + (1 - input_weight) x prior probabilities.

    Why: the prior lives on a coarser grid than the input slices and knows only the shapes it
    was trained on, while the corrected slices carry the patient's in-plane detail. With a weight
    below 0.5 the interpolation decides wherever the prior is unsure (boundaries) and the prior
    wherever it is confident (e.g. beyond the first and last slice, or where interpolation between
    distant slices goes wrong)."""
    if input_weight <= 0:
        return np.argmax(prior_probs, axis=0).astype(np.uint8)
    sbi = shape_based_interpolation(case.sax, output, shifts_mm=-displacements).array
    sbi = np.where(sbi > RV, 0, sbi)
    fused = (1 - input_weight) * prior_probs
    for c in range(prior_probs.shape[0]):
        fused[c] += input_weight * (sbi == c)
    return np.argmax(fused, axis=0).astype(np.uint8)


def latent_optimisation(case: Case, ctx: RunContext, iterations: int = 150, tolerance: float = 0.005,
                        starts: int = 3, rigid_iterations: int = 60, lax_weight: float = 0.3, gauge: str = "auto",
                        motion_sd_mm: float = 5.0, displacement_weight: float = 0.01, smoothness: float = 0.0,
                        latent_weight: float = 1e-3, empty_slice_weight: float = 0.3, latent_step: float = 0.05,
                        shift_step_mm: float = 0.3, blur_voxels: float = 1.5, pixel_step: int = 0,
                        input_weight: float = 0.4, weights: str = DEFAULT_WEIGHTS) -> Result:
    """Registered as ``latent_optimisation``; see the module docstring and the options."""
    import time

    import torch

    opts = dict(iterations=iterations, tolerance=tolerance, starts=starts, rigid_iterations=rigid_iterations,
                lax_weight=lax_weight, gauge=gauge, motion_sd_mm=motion_sd_mm, displacement_weight=displacement_weight,
                smoothness=smoothness, latent_weight=latent_weight, empty_slice_weight=empty_slice_weight,
                latent_step=latent_step, shift_step_mm=shift_step_mm, blur_voxels=blur_voxels, pixel_step=pixel_step)
    timings = {}
    t0 = time.perf_counter()
    device = torch.device(ctx.device)
    generator = torch.Generator(device=device).manual_seed(int(ctx.seed))
    model = load_prior(weights, str(device))
    frame = prior_frame_from_stack(case.sax)
    prior = frame.geometry(model.config.grid_shape, model.config.spacing)
    problem = _Problem(case, prior, opts, torch, device)
    ctx.report(0.05, "encoding the baseline reconstruction")
    z_enc, d0 = _initial_guess(case, prior, model, torch, device)
    if not problem.anchored:
        d0 = d0 - d0[problem.has_heart > 0].mean(dim=0) if bool(problem.has_heart.any()) else d0
    z, d_free = _starts(z_enc, d0, int(starts), torch, generator)
    t = torch.zeros(z.shape[0], 3, device=device)
    timings["setup_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    with torch.no_grad():
        probs0 = torch.softmax(model.decode(z), dim=1)
    n_rigid = _rigid_stage(problem, probs0, d_free, t, opts, ctx, torch)
    with torch.no_grad():  # keep the best start for the (expensive) joint stage
        start_losses = problem.terms(probs0, z, problem.displacements(d_free), t)["total"]
    best_start = int(torch.argmin(start_losses))
    keep = slice(best_start, best_start + 1)
    z, d_free, t = (v[keep].detach().clone() for v in (z, d_free, t))
    timings["rigid_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    n_joint, history = _joint_stage(problem, model, z, d_free, t, opts, ctx, torch)
    timings["joint_s"] = time.perf_counter() - t2

    with torch.no_grad():
        probs, d = torch.softmax(model.decode(z), dim=1), problem.displacements(d_free)
        terms = problem.terms(probs, z, d, t)
    residuals = _slice_residuals(problem, probs, d, t, torch)
    t3 = time.perf_counter()
    t_mm = t[0].detach().cpu().numpy().astype(float)
    d_mm = d[0].detach().cpu().numpy().astype(float)
    prior_probs = _prior_on_output(probs[0].cpu().numpy(), prior, t_mm, ctx.geometry)
    labels = Volume.on(ctx.geometry, _fused_labels(prior_probs, case, d_mm, ctx.geometry, float(input_weight)))
    timings["output_s"] = time.perf_counter() - t3
    diagnostics = {
        "iterations_rigid": n_rigid, "iterations": n_joint, "converged": n_joint < int(iterations),
        "final_loss": float(terms["total"][0]),
        "loss_terms": {k: float(v[0]) for k, v in terms.items() if k != "per_slice"},
        "start_losses_after_rigid": [round(float(v), 5) for v in start_losses], "best_start": best_start,
        "loss_history": [round(v, 5) for v in history], "gauge": "lax" if problem.anchored else "zero_mean",
        "translation_mm": t_mm.round(3).tolist(),
        "prior_grid": {"shape_kji": list(prior.shape), "spacing_ijk": prior.spacing.round(4).tolist(),
                       "centre_ras": frame.centre.round(3).tolist(), "axes_ras": frame.axes.round(5).tolist()},
        "latent_norm": float(z[0].detach().norm()), **residuals}
    return Result(labels, d_mm, timings=timings, diagnostics=diagnostics)


OPTIONS = (
    Option("iterations", int, 150, "Cap on the joint (z, d) iterations.", minimum=1, maximum=5000),
    Option("tolerance", float, 0.005, "Stop when the loss changes by less than this fraction between two "
           f"consecutive windows of {WINDOW} iterations (SRHeart: 0.05).", minimum=0.0, maximum=1.0,
           advanced=True),
    Option("starts", int, 3, "Starting points aligned together as one batch in the rigid stage; the best one "
           "goes on to the joint stage.",
           minimum=1, maximum=16, advanced=True),
    Option("rigid_iterations", int, 60, "Iterations of the first, shift-only stage (no decoder in the loop).",
           minimum=0, maximum=2000, advanced=True),
    Option("lax_weight", float, 0.3, "Weight gamma of the long-axis term (when long-axis views are given). Both "
           "terms are mean cross-entropies per pixel, so one view at gamma = 1 (SRHeart) weighs as much as the "
           "whole stack; 0.3 fitted simulated stacks better in development.", minimum=0.0, maximum=100.0),
    Option("gauge", str, "auto", "How the common shift of all slices is fixed: 'zero_mean' displacements, 'lax' "
           "(anchored to the long-axis views) or 'auto' (lax when views are given).",
           choices=("auto", "zero_mean", "lax"), advanced=True),
    Option("motion_sd_mm", float, 5.0, "Scale (mm) of the displacement regularisers.", minimum=0.1, maximum=100.0,
           advanced=True),
    Option("displacement_weight", float, 0.01, "Weight of the |d|^2 prior on the displacements.",
           minimum=0.0, maximum=100.0, advanced=True),
    Option("smoothness", float, 0.0, "Weight of the |d_s - d_(s+1)|^2 smoothness across neighbouring slices.",
           minimum=0.0, maximum=100.0, advanced=True),
    Option("latent_weight", float, 1e-3, "Weight of the Gaussian prior |z|^2 / 2 on the latent code.",
           minimum=0.0, maximum=10.0, advanced=True),
    Option("empty_slice_weight", float, 0.3, "Weight of slices without heart labels (slices with at least half "
           "the median heart area weigh 1, smaller sections down to 0.3; an empty slice is the smallest section, so "
           "0.3 too). An empty slice says where the heart is not, whatever its in-plane shift: at 0 the prior was "
           "free to grow into empty slices beyond the base and apex, which on phantom stacks of 6, 8 or 13 mm slices "
           "cost 0.02-0.04 Dice (HD95 up to 12 mm); on held-out CT hearts it changes Dice by under 0.005 "
           "(Testing/benchmarks/lo_slice_spacing.sh).",
           minimum=0.0, maximum=1.0, advanced=True),
    Option("latent_step", float, 0.05, "Adam step size for the latent code.", minimum=1e-5, maximum=10.0,
           advanced=True),
    Option("shift_step_mm", float, 0.3, "Adam step size (mm) for the displacements and the global shift.",
           minimum=1e-4, maximum=10.0, advanced=True),
    Option("blur_voxels", float, 1.5, "Gaussian blur (prior voxels) of the first half of the rigid stage.",
           minimum=0.0, maximum=10.0, advanced=True),
    Option("pixel_step", int, 0, "Fit every n-th pixel of the input planes (0: automatic, at least twice as "
           "fine as the prior's in-plane spacing).", minimum=0, maximum=8, advanced=True),
    Option("input_weight", float, 0.4, "Weight of the motion-corrected input slices (shape-based interpolation "
           "with the estimated displacements) against the prior in the output: 0 prior only, 1 interpolation only.",
           minimum=0.0, maximum=1.0),
    Option("weights", str, DEFAULT_WEIGHTS, "Prior weights: a name in the weights manifest or a .pt file path.",
           advanced=True),
)

METHODS = (Method("latent_optimisation", "Latent optimisation (SRHeart)",
                "Fits a learned 3D shape prior (beta-VAE) and per-slice in-plane shifts to the stack (and any "
                "long-axis views) by gradient descent: motion correction and super-resolution in one step.",
                latent_optimisation, options=OPTIONS, kind="learned", requires=("torch",), estimates_displacements=True,
                memory=(64, 64),
                test_options={"iterations": 20, "rigid_iterations": 20, "starts": 1}),)
