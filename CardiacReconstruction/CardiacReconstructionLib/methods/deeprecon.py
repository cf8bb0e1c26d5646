"""DeepRecon (image domain): cine SAX images -> segmentation, super-resolved synthetic image and labels.

The pipeline (re-implemented from the DeepRecon paper; no public code exists):

1. Localise: DirectSeg, a 2D U-Net trained on the real training images, segments every slice of
   the whole field of view; its per-slice heart centre (or the given segmentation's) centres a
   fixed-size crop (the generator's ``size`` x ``pixel_mm``).
2. Invert: the encoder's W+ code of each crop, refined by the hybrid inversion
   (:func:`..networks.inversion.hybrid_invert`) for ``steps`` steps, so that G(w+*) repaints it.
3. Motion: the per-slice displacements of a label-domain estimator (``motion``: the centroid fit,
   DSL+ASV or latent optimisation, run on the stack's segmentation) move each crop's centre back
   onto the corrected long axis.
4. Super-resolve: at every output slice position the codes (and corrected centres) of the two
   neighbouring input slices are interpolated linearly; G paints the synthetic slice, Seg (the
   U-Net trained on G's images of the training slices) segments it, and both are put back on the
   output grid: the labels, and the synthetic image ``Result.image``.

The segmentation of an image stack alone (:func:`segment_image`) is the same machinery on the
input slices themselves: DirectSeg (fast) or Seg on G(w+*) ('deeprecon'); the CLI's
``--segment`` and the Slicer module run it before any reconstruction method.
"""

from __future__ import annotations

import time
from typing import Dict, Optional, Tuple

import numpy as np
from scipy import ndimage

from ..core.api import Method, Option, Result, RunContext
from ..core.case import Case, check_image_stack
from ..core.crops import from_window, intensity_window, label_centres, paste_grid, sample_crops, window_bounds
from ..core.errors import InputError
from ..core.geometry import Volume
from ..core.labels import LV, MYO, RV
from ..networks.cache import NetworkCache

#: Shipped weights (names in the weights manifest).
WEIGHTS = {"stylegan": "deeprecon_g", "stylegan_d": "deeprecon_d", "stylegan_encoder": "deeprecon_e",
           "segmenter": "deeprecon_seg"}
DIRECTSEG_WEIGHTS = "deeprecon_directseg"
NETWORKS = NetworkCache(WEIGHTS)
DIRECTSEG = NetworkCache({"segmenter": DIRECTSEG_WEIGHTS})
DEFAULT_STEPS = 80
MOTIONS = ("centroid", "dsl_asv", "latent_optimisation", "none")
SEGMENTERS = ("directseg", "deeprecon")
#: Network class index -> canonical label (the segmenters were trained on canonical labels).
CLASS_LABELS = np.array([0, LV, MYO, RV], np.uint8)
ROI_MARGIN_MM = 10.0  # the inversion's L2 region: the heart's labels dilated by this much


def networks(device: str):
    """(G, D, E, Seg) on ``device``: the shipped weights unless overridden (``NETWORKS.using``)."""
    return tuple(NETWORKS.get(kind, device) for kind in ("stylegan", "stylegan_d", "stylegan_encoder", "segmenter"))


def _spacing_ji(volume: Volume) -> Tuple[float, float]:
    s = volume.spacing
    return float(s[1]), float(s[0])


def _check_image(image: Optional[Volume], what: str = "DeepRecon") -> Volume:
    """``image`` if it can be a cine SAX stack (:func:`..core.case.check_image_stack`), else one line."""
    if image is None:
        raise InputError(f"{what} needs the cine SAX image (--image): it reconstructs from the images, "
                         "not from a segmentation alone.")
    check_image_stack(image, f"The SAX image of {what}" if what != "DeepRecon" else "The SAX image")
    return image


def _segment_crops(seg, crops, device: str, batch: int = 128) -> np.ndarray:
    """Class probabilities [N, 4, S, S] of crops [N, S, S] in [-1, 1], ``batch`` crops per pass."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(crops), batch):
            x = torch.as_tensor(np.ascontiguousarray(crops[s:s + batch]), dtype=torch.float32)[:, None].to(device)
            out.append(torch.softmax(seg(x), dim=1).cpu().numpy())
    return np.concatenate(out)


def crop_labels(seg, crops, device: str) -> np.ndarray:
    """Canonical labels [N, S, S] of crops [N, S, S] (the most probable class of each pixel)."""
    return CLASS_LABELS[np.argmax(_segment_crops(seg, crops, device), axis=1)]


def _paste_labels(probs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Canonical labels of a slice from a crop's class probabilities [4, S, S], resampled linearly
    onto the slice's pixels (``grid``: :func:`..core.crops.paste_grid`; background outside the
    crop), then the most probable class."""
    pasted = np.stack([ndimage.map_coordinates(p, grid, order=1, mode="constant", cval=1.0 if c == 0 else 0.0)
                       for c, p in enumerate(probs)])
    return CLASS_LABELS[np.argmax(pasted, axis=0)]


def _largest_heart(labels: np.ndarray) -> np.ndarray:
    """Keep the largest 3D connected component of the foreground (drops stray detections)."""
    comp, n = ndimage.label(labels > 0)
    if n <= 1:
        return labels
    sizes = ndimage.sum(np.ones_like(comp), comp, index=np.arange(1, n + 1))
    return np.where(comp == 1 + int(np.argmax(sizes)), labels, 0).astype(np.uint8)


def directseg(image: Volume, device: str = "cpu", weights=None) -> Volume:
    """DirectSeg's canonical labels of every slice of ``image`` (whole field of view)."""
    seg = DIRECTSEG.get("segmenter", device, weights)
    pixel = float(seg.config.pixel_mm)
    arr = intensity_window(image.array)
    sj, si = _spacing_ji(image)
    fov = max(arr.shape[1] * sj, arr.shape[2] * si)
    size = int(np.ceil(fov / pixel / 8.0) * 8)
    centre = np.array([(arr.shape[1] - 1) / 2.0, (arr.shape[2] - 1) / 2.0])
    centres = np.repeat(centre[None], arr.shape[0], 0)
    crops = sample_crops(arr, centres, (sj, si), size, pixel, fill=-1.0)
    probs = _segment_crops(seg, crops, device)
    grid = paste_grid(arr.shape[1:], centre, (sj, si), size, pixel)  # every slice's crop has the same place
    out = np.stack([_paste_labels(p, grid) for p in probs])
    return image.with_array(_largest_heart(out))


def _roi(label_crops: np.ndarray, pixel_mm: float) -> np.ndarray:
    margin = max(1, int(round(ROI_MARGIN_MM / pixel_mm)))
    roi = np.stack([ndimage.binary_dilation(c > 0, iterations=margin) for c in label_crops]).astype(np.float32)
    roi[roi.reshape(len(roi), -1).sum(1) == 0] = 1.0  # no heart in the crop: the whole crop
    return roi


def invert_stack(image: Volume, labels: Volume, device: str, steps: int, centres=None, progress=None):
    """The inverted codes of the heart-centred crops of every slice: ``(ws, crops, centres, info)``;
    ``centres`` default to the per-slice centres of ``labels``."""
    import torch

    from ..networks.inversion import InversionWeights, hybrid_invert, inversion_loss

    G, D, E, _ = networks(device)
    cfg = G.config
    spacing = _spacing_ji(image)
    centres = label_centres(labels.array) if centres is None else np.asarray(centres, float)
    arr = intensity_window(image.array)
    crops = sample_crops(arr, centres, spacing, cfg.size, cfg.pixel_mm, fill=-1.0)
    roi = _roi(sample_crops(labels.array, centres, spacing, cfg.size, cfg.pixel_mm, labels=True), cfg.pixel_mm)
    x = torch.as_tensor(crops)[:, None].to(device)
    r = torch.as_tensor(roi)[:, None].to(device)
    weights = InversionWeights()
    ws = hybrid_invert(G, E, x, steps, r, weights, D, progress)
    with torch.no_grad():
        terms, _ = inversion_loss(G, E, x, ws, r, weights, D)
    info = {k: float(v.mean()) for k, v in terms.items()}
    return ws, crops, centres, info


def segment_image(image: Volume, segmenter: str = "directseg", device: str = "cpu", steps: int = DEFAULT_STEPS,
                  progress=None) -> Volume:
    """Canonical labels of an image stack on its own grid: DirectSeg, or 'deeprecon' (Seg on
    G(w+*) of the heart-centred crops, DirectSeg only locating the heart). ``progress(fraction,
    message)`` as for a method."""
    _check_image(image, "Segmenting the image")
    if segmenter not in SEGMENTERS:
        raise InputError(f"Unknown segmenter {segmenter!r}; expected one of {', '.join(SEGMENTERS)}.")
    located = directseg(image, device)
    if not located.array.any():
        raise InputError("DirectSeg found no heart in the image; expected a cine short-axis stack through the "
                         "ventricles.")
    if segmenter == "directseg":
        return located
    import torch

    G, _, _, seg = networks(device)
    report = (lambda f: progress(f, "inverting the slices")) if progress is not None else None
    ws, _, centres, _ = invert_stack(image, located, device, steps, progress=report)
    with torch.no_grad():
        synth = G(ws, "const")[:, 0].cpu().numpy()
    probs = _segment_crops(seg, synth, device)
    out = np.zeros(image.shape, np.uint8)
    shows = located.array.reshape(image.shape[0], -1).any(1)
    spacing = _spacing_ji(image)
    for k in np.flatnonzero(shows):
        out[k] = _paste_labels(probs[k], paste_grid(image.shape[1:], centres[k], spacing, G.config.size,
                                                    G.config.pixel_mm))
    return image.with_array(_largest_heart(out))


def _motion(case: Case, motion: str, device: str) -> np.ndarray:
    if motion == "none":
        return np.zeros((case.n_slices, 2))
    from . import run

    name = {"centroid": "centroid_shape_interp"}.get(motion, motion)
    d = run(name, case, device=device).displacements
    return np.nan_to_num(np.asarray(d, float))


def _input_positions(case: Case, ctx: RunContext) -> np.ndarray:
    """Continuous input slice index (k) of every output slice centre."""
    out = ctx.geometry
    to_in = np.linalg.inv(case.sax.ijk_to_ras) @ out.ijk_to_ras
    ks = np.arange(out.shape[0], dtype=float)
    return (to_in @ np.stack([np.zeros_like(ks), np.zeros_like(ks), ks, np.ones_like(ks)]))[2]


def synthesise(ws, centres: np.ndarray, positions: np.ndarray):
    """Codes and centres at continuous slice ``positions`` (linear between neighbours, the end
    slices beyond them: :func:`..networks.blocks.lerp_along`)."""
    import torch

    from ..networks.blocks import lerp_along

    return lerp_along(ws, positions, 0), lerp_along(torch.as_tensor(np.asarray(centres, float)), positions, 0).numpy()


def deeprecon(case: Case, ctx: RunContext, steps: int = DEFAULT_STEPS, motion: str = "centroid",
              batch: int = 32) -> Result:
    import torch

    image = _check_image(case.image)
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    G, _, _, seg = networks(ctx.device)
    cfg = G.config
    d = _motion(case, motion, ctx.device)
    timings["motion_s"] = time.perf_counter() - t0
    ctx.report(0.15, f"displacements ({motion})")
    t1 = time.perf_counter()
    ws, _, centres, info = invert_stack(image, case.sax, ctx.device, steps,
                                        progress=lambda f: ctx.report(0.15 + 0.6 * f, "inverting the slices"))
    timings["inversion_s"] = time.perf_counter() - t1
    sj, si = _spacing_ji(image)
    corrected = centres - d[:, ::-1] / np.array([sj, si])  # d is (along i, along j) mm
    positions = _input_positions(case, ctx)
    t2 = time.perf_counter()
    out_shape = ctx.geometry.shape
    labels = np.zeros(out_shape, np.uint8)
    synthetic = np.zeros(out_shape, np.float32)
    lo, hi = window_bounds(image.array)
    for start in range(0, out_shape[0], batch):
        part = positions[start:start + batch]
        w, c = synthesise(ws, corrected, part)
        with torch.no_grad():
            img = G(w, "const")[:, 0].cpu().numpy()
        probs = _segment_crops(seg, img, ctx.device)
        for n, k in enumerate(range(start, start + len(part))):
            grid = paste_grid(out_shape[1:], c[n], (sj, si), cfg.size, cfg.pixel_mm)
            labels[k] = _paste_labels(probs[n], grid)
            painted = ndimage.map_coordinates(img[n], grid, order=1, mode="constant", cval=-1.0)
            synthetic[k] = from_window(painted, lo, hi)
        ctx.report(0.75 + 0.25 * min(1.0, (start + batch) / out_shape[0]), "synthesising slices")
    timings["synthesis_s"] = time.perf_counter() - t2
    diagnostics = {"inversion_loss": info, "steps": int(steps), "motion": motion,
                   "crop": {"size_px": cfg.size, "pixel_mm": cfg.pixel_mm}}
    return Result(Volume.on(ctx.geometry, _largest_heart(labels)), d, timings=timings, diagnostics=diagnostics,
                  image=Volume.on(ctx.geometry, synthetic))


REQUIRES = ("torch", "monai")

METHODS = (Method(
    "deeprecon", "DeepRecon: image-domain StyleGAN inversion and latent interpolation",
    "From the cine SAX images: each slice's crop is inverted into a StyleGAN2 generator's W+ space (encoder + "
    "optimisation), the slices are motion-corrected, intermediate slices are synthesised by interpolating "
    "neighbouring codes, and a U-Net trained on the generator's images segments them. Writes the synthetic "
    "super-resolved image too. Needs the image; the segmentation (given, or DirectSeg's) locates the heart.",
    deeprecon,
    options=(Option("steps", int, DEFAULT_STEPS, "Inversion steps per slice after the encoder (0: encoder "
                    "only; more: closer to the image, slower).", minimum=0, maximum=1000),
             Option("motion", str, "centroid", "Motion correction before the latent interpolation: 'centroid' "
                    "(the centroid fit of the segmentation), 'dsl_asv' or 'latent_optimisation' (their "
                    "displacements), 'none'.", choices=MOTIONS),
             Option("batch", int, 32, "Slices synthesised per forward pass.", minimum=1, maximum=512,
                    advanced=True)),
    kind="learned", requires=REQUIRES, estimates_displacements=True, memory=(64, 256), needs_image=True,
    test_options={"steps": 2}),)
