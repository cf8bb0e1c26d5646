"""Training and development data: the whole-heart CT cohort and the ACDC short-axis stacks.

Both data sets are third-party material read from the shared data folder at training or
benchmark time (never shipped): ``$CARDIAC_RECON_DATA`` if set, else ``<repo>/../shared/data``.
Cite Rodero et al., PLOS Comput Biol 17(4):e1008851 (2021) for the CT cohort and Bernard et
al., IEEE TMI 2018 for ACDC wherever they are used.

Whole-heart CT cohort (``wholeheart_ct/``)
-------------------------------------------
19 real end-diastolic hearts (``subject_00`` ... ``subject_18``) and 28 random shapes drawn from
a PCA of *all 19* subjects (``pca_s1_*``, ``pca_s2_*``). Each ``.npz`` holds ``labels`` indexed
**x, y, z** (= i, j, k) on a 1 mm axis-aligned grid whose voxel [0, 0, 0] centre is ``origin``;
the ``.json`` beside it holds the valve-centre and apex landmarks.

* Split by subject: :data:`VALIDATION_SUBJECTS` are held out. The PCA shapes were drawn from a
  model that saw the validation subjects, so :func:`split` admits them to training only with
  ``include_pca=True``, which knowingly leaks the validation subjects' shape space into training.
  The PCA shapes never enter the validation split; the model's template is not used at all
  (it is the mean of all 19 subjects, so it leaks in the same way).
* World frame: the source coordinates are those of the CT meshes and are not guaranteed to be
  RAS. They are treated as RAS here; nothing depends on it, because every cardiac plane is derived
  from the landmarks (:func:`sax_frame`, :func:`valve_planes`) and the output frame is
  right-handed. (The apex points to +x, -y, -z, i.e. left-anterior-inferior if the source is
  LPS; LPS and RAS differ by a proper rotation, so the heart's handedness is preserved either way.)
* :func:`load_subject` resamples one shape into its short-axis (SAX) frame in one SimpleITK pass
  (augmentation included) with canonical labels, optionally cutting the ventricles at the valve
  planes so that they end flat at the base like clinical SAX segmentations.

ACDC (``acdc_sax_labels/``)
---------------------------
80 patients x 2 frames of real clinical SAX label stacks and images, arrays [slices, rows, cols]
= [k, j, i]. The voxel spacing was not preserved: the loaders use the ASSUMED spacing
:data:`ACDC_SPACING` (1.5 x 1.5 mm in-plane, 10 mm between slices) with axis-aligned identity
directions; say so wherever results on these stacks are reported.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from ..core.errors import InputError
from ..core.geometry import Geometry, Volume, make_ijk_to_ras, resample, sitk_affine, sitk_reference
from ..anatomy.frame import (DEFAULT_GRID_SHAPE, DEFAULT_SPACING, SaxFrame, cut_at_valve_planes,
                             sax_frame)
from ..core.labels import RV, apply_convention

DATA_ENV = "CARDIAC_RECON_DATA"
CT_DIR = "wholeheart_ct"
ACDC_DIR = "acdc_sax_labels"

#: The 19 real CT subjects.
N_SUBJECTS = 19
#: Fixed validation subjects of the CT cohort (the last four); everything else real is training.
VALIDATION_SUBJECTS = ("subject_15", "subject_16", "subject_17", "subject_18")

#: Label interpolation of the one resampling pass. SimpleITK's LabelLinear picks, per output
#: voxel, the label whose linearly interpolated indicator is largest: label volumes and
#: boundaries follow the 1 mm source to sub-voxel accuracy on rotated/deformed grids without the
#: staircase that nearest-neighbour picks up, at ~3x the cost of nearest (~0.1 s for the default
#: grid); LabelGaussian is ~5x slower again and rounds thin structures further.
LABEL_INTERPOLATION = "label_linear"

#: The ASSUMED ACDC voxel spacing (i, j, k) in mm; the true spacing (1.37-1.68 mm in-plane,
#: 5-10 mm between slices) was not preserved in the shared data.
ACDC_SPACING = (1.5, 1.5, 10.0)

PathLike = Union[str, Path]


def default_data_root() -> Path:
    """``$CARDIAC_RECON_DATA`` if set, else ``<repo>/../shared/data`` (beside the repository)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[4] / "shared" / "data"  # <repo>/CardiacReconstruction/Lib/training


def data_root(root: Optional[PathLike] = None) -> Path:
    """The shared data folder (``root`` or :func:`default_data_root`); InputError if missing."""
    path = Path(root) if root is not None else default_data_root()
    if not path.is_dir():
        raise InputError(f"Training data folder not found at {path}; set {DATA_ENV} or pass the folder "
                         "that holds wholeheart_ct/ and acdc_sax_labels/.")
    return path


def _data_dir(root: Optional[PathLike], name: str) -> Path:
    """``root/name``; ``root`` may also be that sub-folder itself."""
    base = data_root(root)
    for candidate in (base / name, base):
        if candidate.name == name and candidate.is_dir():
            return candidate
    raise InputError(f"Data folder {base / name} not found; expected the shared data folder with a {name}/ "
                     f"sub-folder (set {DATA_ENV} or pass root).")


def _names(directory: Path, pattern: str) -> Tuple[str, ...]:
    return tuple(sorted(p.stem for p in directory.glob(pattern)))


def list_subjects(root: Optional[PathLike] = None) -> Tuple[str, ...]:
    """Names of the real CT subjects (``subject_00`` ... ``subject_18``), sorted."""
    names = _names(_data_dir(root, CT_DIR), "subject_*.npz")
    if len(names) != N_SUBJECTS:
        raise InputError(f"Expected {N_SUBJECTS} CT subjects in {_data_dir(root, CT_DIR)}, found {len(names)}.")
    return names


def list_pca_shapes(root: Optional[PathLike] = None) -> Tuple[str, ...]:
    """Names of the PCA shapes (``pca_s*_*``), drawn from a PCA of all 19 subjects."""
    return _names(_data_dir(root, CT_DIR), "pca_s*_*.npz")


def subject_path(name: str, root: Optional[PathLike] = None) -> Path:
    """Path of the ``.npz`` of a CT shape by name (``subject_03``, ``pca_s1_07``, ...)."""
    directory = _data_dir(root, CT_DIR)
    path = directory / f"{name}.npz"
    if not path.is_file():
        raise InputError(f"No CT shape {name!r} at {path}; available: {', '.join(list_subjects(root))} "
                         "and the pca_s*_* shapes.")
    return path


def split(root: Optional[PathLike] = None, which: str = "train", include_pca: bool = False) -> Tuple[Path, ...]:
    """The ``.npz`` paths of the fixed ``'train'`` or ``'val'`` split of the CT cohort.

    ``'val'`` is :data:`VALIDATION_SUBJECTS`; ``'train'`` the other 15 real subjects, plus the 28
    PCA shapes when ``include_pca`` is true. Those shapes come from a PCA of all 19 subjects, so
    including them leaks the validation subjects' shape space into training: use it only for runs
    whose validation score is not reported as held-out (or for final training on everything).
    """
    if which not in ("train", "val"):
        raise InputError(f"Unknown split {which!r}; expected 'train' or 'val'.")
    subjects = list_subjects(root)
    missing = sorted(set(VALIDATION_SUBJECTS) - set(subjects))
    if missing:
        raise InputError(f"Validation subjects {missing} are missing from {_data_dir(root, CT_DIR)}.")
    if which == "val":
        names = VALIDATION_SUBJECTS
    else:
        names = tuple(s for s in subjects if s not in VALIDATION_SUBJECTS)
        if include_pca:
            names += list_pca_shapes(root)
    directory = _data_dir(root, CT_DIR)
    return tuple(directory / f"{n}.npz" for n in names)


@dataclass(frozen=True)
class CTShape:
    """One CT shape as stored: raw labels indexed [x, y, z] (read-only), world origin of voxel
    [0, 0, 0], isotropic spacing, landmarks (mm) and the label volumes (ml) from its json."""

    name: str
    labels_xyz: np.ndarray
    origin: np.ndarray
    spacing: float
    landmarks: Dict[str, np.ndarray]
    volumes_ml: Dict[int, float]

    def volume(self) -> Volume:
        """The raw labels as a :class:`Volume` (array [k, j, i] = labels[x, y, z] transposed),
        axis-aligned, world coordinates taken as RAS (see the module docstring)."""
        return Volume(np.ascontiguousarray(self.labels_xyz.transpose(2, 1, 0)),
                      make_ijk_to_ras([self.spacing] * 3, self.origin))


@functools.lru_cache(maxsize=64)
def _read_shape_cached(path: str) -> CTShape:
    npz, js = Path(path), Path(path).with_suffix(".json")
    if not npz.is_file() or not js.is_file():
        raise InputError(f"CT shape not found: expected {npz} and {js}.")
    with np.load(npz) as data:
        labels = np.asarray(data["labels"])
        origin = np.asarray(data["origin"], float)
        spacing = float(data["spacing"])
    labels.setflags(write=False)  # shared by every caller through the cache
    meta = json.loads(js.read_text())
    landmarks = {k: np.asarray(v, float) for k, v in meta["landmarks_mm"].items()}
    volumes = {int(k): float(v) for k, v in meta.get("volumes_ml_by_label", {}).items()}
    return CTShape(npz.stem, labels, origin, spacing, landmarks, volumes)


def read_shape(path: PathLike) -> CTShape:
    """Read (and cache) a CT shape's ``.npz`` and ``.json``; a bare name is looked up in the
    default data root."""
    path = Path(path)
    if path.suffix != ".npz" and not path.exists() and path.parent == Path("."):
        path = subject_path(path.name)
    return _read_shape_cached(str(path.resolve()))


# Augmentation: one SimpleITK transform (output SAX grid -> source world)
@dataclass(frozen=True)
class AugmentationRanges:
    """Ranges of the random augmentation (see :func:`draw_augmentation`)."""

    scale: float = 0.15  # isotropic scale factor in [1 - scale, 1 + scale]
    long_axis_scale: float = 0.15  # extra long-axis factor in [1 - x, 1 + x], independent of scale
    tilt_deg: float = 10.0  # tilt of the cutting frame's k axis away from the long axis
    spin_deg: float = 15.0  # rotation of the cutting frame about the long axis, +-
    elastic_mm: float = 3.0  # bound on each displacement component of the elastic field
    elastic_spacing_mm: float = 40.0  # B-spline control-point spacing: the field's smoothness


@dataclass(frozen=True)
class Augmentation:
    """One drawn augmentation. The anatomy is scaled by ``scale`` in all directions and by
    ``scale * long_axis_scale`` along its long axis (volume factor ``scale**3 * long_axis_scale``),
    the cutting frame is tilted by ``tilt_deg`` towards in-plane azimuth ``tilt_azimuth_deg`` and
    spun by ``spin_deg`` about k, and an elastic field seeded by ``elastic_seed`` is applied."""

    scale: float = 1.0
    long_axis_scale: float = 1.0
    tilt_deg: float = 0.0
    tilt_azimuth_deg: float = 0.0
    spin_deg: float = 0.0
    elastic_mm: float = 0.0
    elastic_spacing_mm: float = 40.0
    elastic_seed: int = 0

    @property
    def volume_factor(self) -> float:
        """Expected ratio of augmented to original structure volume (elastic part ~1)."""
        return self.scale ** 3 * self.long_axis_scale


def draw_augmentation(rng: np.random.Generator, ranges: AugmentationRanges = AugmentationRanges()) -> Augmentation:
    """Draw one augmentation from ``ranges`` with ``rng`` (uniform in every range)."""
    return Augmentation(
        scale=float(rng.uniform(1 - ranges.scale, 1 + ranges.scale)),
        long_axis_scale=float(rng.uniform(1 - ranges.long_axis_scale, 1 + ranges.long_axis_scale)),
        tilt_deg=float(rng.uniform(0.0, ranges.tilt_deg)),
        tilt_azimuth_deg=float(rng.uniform(0.0, 360.0)),
        spin_deg=float(rng.uniform(-ranges.spin_deg, ranges.spin_deg)),
        elastic_mm=float(ranges.elastic_mm),
        elastic_spacing_mm=float(ranges.elastic_spacing_mm),
        elastic_seed=int(rng.integers(0, 2 ** 31 - 1)),
    )


def _frame_rotation(aug: Augmentation) -> np.ndarray:
    """Rotation (in SAX-frame coordinates) whose columns are the augmented cutting axes."""
    from scipy.spatial.transform import Rotation

    az = np.radians(aug.tilt_azimuth_deg)
    tilt_axis = np.array([np.cos(az), np.sin(az), 0.0])
    tilt = Rotation.from_rotvec(np.radians(aug.tilt_deg) * tilt_axis)
    spin = Rotation.from_rotvec([0.0, 0.0, np.radians(aug.spin_deg)])
    return (tilt * spin).as_matrix()


def augmentation_affine(aug: Augmentation, frame: SaxFrame) -> np.ndarray:
    """4x4 world (RAS) affine mapping output points to source points.

    Forward, the anatomy is scaled in its own SAX frame, x' = c + R D R^T (x - c), with
    D = diag(s, s, s * s_long), and cut along axes R Q instead of R (Q = tilt and spin); the
    output grid keeps the axes R, so output p maps back to x = c + R D^-1 Q R^T (p - c).
    """
    R, c = frame.axes, frame.centre
    d_inv = np.diag(1.0 / np.array([aug.scale, aug.scale, aug.scale * aug.long_axis_scale]))
    a = R @ d_inv @ _frame_rotation(aug) @ R.T
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = a, c - a @ c
    return m


def augmentation_transform(aug: Augmentation, frame: SaxFrame, reference: Geometry):
    """The SimpleITK transform (LPS, output -> source, as :func:`..core.geometry.resample` expects):
    the elastic B-spline field on the output grid, then :func:`augmentation_affine`.

    The B-spline control-point offsets are uniform in +-``elastic_mm`` per component; cubic
    B-spline weights are non-negative and sum to one, so every displacement component of the
    field is bounded by ``elastic_mm`` and the field is smooth on the control-spacing scale.
    """
    import SimpleITK as sitk

    affine = sitk_affine(augmentation_affine(aug, frame))
    if aug.elastic_mm <= 0:
        return affine
    extent = reference.spacing * np.array(reference.shape[::-1], float)  # i, j, k
    mesh = [max(1, int(np.ceil(e / aug.elastic_spacing_mm))) for e in extent]
    bspline = sitk.BSplineTransformInitializer(sitk_reference(reference), mesh)
    n_params = len(bspline.GetParameters())
    offsets = np.random.default_rng(aug.elastic_seed).uniform(-aug.elastic_mm, aug.elastic_mm, n_params)
    bspline.SetParameters([float(v) for v in offsets])
    return sitk.CompositeTransform([affine, bspline])  # ITK applies the last-added (B-spline) first


def _rng_from(augment) -> Optional[np.random.Generator]:
    if augment is None or augment is False:
        return None
    if isinstance(augment, np.random.Generator):
        return augment
    if isinstance(augment, (bool, np.bool_)):
        raise InputError("augment=True is not reproducible; pass a seed (int) or a numpy Generator.")
    if isinstance(augment, (int, np.integer)):
        return np.random.default_rng(int(augment))
    raise InputError(f"augment must be None, a seed (int) or a numpy Generator, got {type(augment).__name__}.")


MODES = ("biventricular", "wholeheart")


def canonical_ct_labels(raw: np.ndarray, mode: str = "biventricular") -> np.ndarray:
    """Canonical labels of a raw CT label array: structures without a canonical label (RV
    myocardium, atrial walls, valve caps) become background; ``'biventricular'`` keeps 1-3."""
    if mode not in MODES:
        raise InputError(f"Unknown mode {mode!r}; expected one of {', '.join(MODES)}.")
    out = apply_convention(raw, "wholeheart_ct")
    if mode == "biventricular":
        out[out > RV] = 0
    return out


def load_subject(path: PathLike, grid_shape=DEFAULT_GRID_SHAPE, spacing=DEFAULT_SPACING,
                 mode: str = "biventricular", cut_valve_planes: Optional[bool] = None,
                 augment=None, ranges: AugmentationRanges = AugmentationRanges(),
                 interpolation: str = LABEL_INTERPOLATION) -> Volume:
    """One CT shape on a SAX grid in its landmark frame, canonical labels (uint8).

    Parameters
    ----------
    path : the shape's ``.npz`` (its ``.json`` beside it), or a bare name in the default root.
    grid_shape : array shape (k, j, i) of the output grid, centred on the ventricles.
    spacing : output spacing (i, j, k) in mm.
    mode : ``'biventricular'`` (labels 1-3) or ``'wholeheart'`` (1-7).
    cut_valve_planes : cut the ventricles at the valve planes (:func:`cut_at_valve_planes`);
        default: on for biventricular, off for whole heart.
    augment : None for none, or a seed / numpy Generator to draw one :class:`Augmentation`
        from ``ranges``.

    The cut is applied to the source labels in world space (anatomical planes), then one
    SimpleITK resampling pass maps the source into the SAX grid through the augmentation
    transform. The output grid is always the subject's un-augmented SAX frame.
    """
    shape = read_shape(path)
    if mode not in MODES:
        raise InputError(f"Unknown mode {mode!r}; expected one of {', '.join(MODES)}.")
    if cut_valve_planes is None:
        cut_valve_planes = mode == "biventricular"
    frame = sax_frame(shape.landmarks, shape.labels_xyz, shape.origin, shape.spacing)
    reference = frame.geometry(grid_shape, spacing)
    raw = shape.volume()
    source = raw.with_array(canonical_ct_labels(raw.array, mode))
    if cut_valve_planes:
        source = cut_at_valve_planes(source, shape.landmarks)
    rng = _rng_from(augment)
    transform = None if rng is None else augmentation_transform(draw_augmentation(rng, ranges), frame, reference)
    return resample(source, reference, interpolation, transform=transform)


#: ACDC validation patients: those whose number is a multiple of 5 (17 of the 80 patients in the
#: shared data; ACDC orders its five diagnostic groups in blocks of 20, so every group is held out).
ACDC_VALIDATION_RULE = "patient number divisible by 5"


def _acdc_file(root: Optional[PathLike], name: str) -> Path:
    path = _data_dir(root, ACDC_DIR) / name
    if not path.is_file():
        raise InputError(f"ACDC file not found at {path}.")
    return path


@functools.lru_cache(maxsize=4)
def _acdc_keys_cached(path: str) -> Tuple[str, ...]:
    with np.load(path) as data:
        return tuple(sorted(data.files))


@functools.lru_cache(maxsize=128)
def _acdc_array_cached(path: str, key: str) -> np.ndarray:
    with np.load(path) as data:
        arr = np.asarray(data[key])
    arr.setflags(write=False)
    return arr


def acdc_keys(root: Optional[PathLike] = None) -> Tuple[str, ...]:
    """The 160 ACDC keys ``patientNNN_frame01`` (end-diastole) / ``_frame02`` (end-systole), sorted."""
    return _acdc_keys_cached(str(_acdc_file(root, "acdc_sax_labels.npz")))


def acdc_patient(key: str) -> int:
    """Patient number of an ACDC key (``patient042_frame01`` -> 42)."""
    try:
        return int(key.split("_")[0].replace("patient", ""))
    except ValueError:
        raise InputError(f"Not an ACDC key: {key!r}; expected 'patientNNN_frameNN'.") from None


def acdc_split(root: Optional[PathLike] = None, which: str = "train") -> Tuple[str, ...]:
    """Keys of the fixed ACDC split by patient (:data:`ACDC_VALIDATION_RULE`); both frames of a
    patient stay together."""
    if which not in ("train", "val"):
        raise InputError(f"Unknown split {which!r}; expected 'train' or 'val'.")
    return tuple(k for k in acdc_keys(root) if (acdc_patient(k) % 5 == 0) == (which == "val"))


def acdc_geometry(shape) -> Geometry:
    """The ASSUMED ACDC grid: :data:`ACDC_SPACING`, identity directions, origin 0."""
    return Geometry(shape, make_ijk_to_ras(ACDC_SPACING))


def load_acdc(root: Optional[PathLike] = None, key: Optional[str] = None):
    """ACDC label stack(s) as canonical-label :class:`Volume` s on the assumed grid
    (:func:`acdc_geometry`): one Volume for ``key``, else a dict of all 160."""
    path = str(_acdc_file(root, "acdc_sax_labels.npz"))
    keys = _acdc_keys_cached(path)

    def one(k: str) -> Volume:
        if k not in keys:
            raise InputError(f"No ACDC stack {k!r}; keys look like {keys[0]!r} ({len(keys)} available).")
        arr = apply_convention(_acdc_array_cached(path, k), "acdc")
        return Volume.on(acdc_geometry(arr.shape), arr)

    return one(key) if key is not None else {k: one(k) for k in keys}


def load_acdc_image(key: str, root: Optional[PathLike] = None) -> np.ndarray:
    """The cine MR image of an ACDC key as stored (uint8 [k, j, i], windowed 0.5-99.5 % per volume
    at the source), on the same grid as its labels (:func:`load_acdc`)."""
    path = str(_acdc_file(root, "acdc_sax_images.npz"))
    if key not in _acdc_keys_cached(path):
        raise InputError(f"No ACDC image {key!r}.")
    return _acdc_array_cached(path, key)


def acdc_image_volume(key: str, root: Optional[PathLike] = None) -> Volume:
    """The cine image of an ACDC key as a float32 :class:`Volume` on its labels' assumed grid
    (:func:`acdc_geometry`): what the image-domain methods take."""
    image = load_acdc_image(key, root)
    return Volume.on(acdc_geometry(image.shape), image.astype(np.float32))


def acdc_pseudo_hr(sax_volume: Volume, slice_spacing: float = 2.0) -> Volume:
    """An approximate MRI-shaped high-resolution label volume from a real SAX stack: the
    ``centroid_shape_interp`` baseline (slice centroid alignment + shape-based interpolation).

    It is not ground truth: the true motion is unknown and interpolation rounds the base and
    apex. Use it as an 'MRI-like' shape source (e.g. for fine-tuning priors), never to score.
    """
    from ..core.case import Case
    from ..methods import run

    return run("centroid_shape_interp", Case(sax=sax_volume), slice_spacing=slice_spacing).labels
