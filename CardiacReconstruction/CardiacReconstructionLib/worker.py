"""Running a reconstruction in a separate process and reading its results back (no Slicer).

The Slicer module must keep its GUI responsive and must be able to stop a run at once, so it
does not run methods in Slicer's own interpreter: it writes the case to a folder, starts

    PythonSlicer -m CardiacReconstructionLib run --input ... --progress-format lines

and polls the process output from a timer. Everything in that loop that needs no Slicer lives
here, so it is tested with plain pytest and a real subprocess:

* the progress protocol: ``PROGRESS <fraction> <message>`` lines on stderr
  (:func:`format_progress`, :func:`parse_progress`);
* the input files and the ``run`` argument list (:func:`write_inputs`, :func:`run_arguments`,
  :func:`worker_command`, :func:`worker_environment`);
* :class:`WorkerProcess`: a reader thread that turns the process output into a queue, polled
  from the GUI thread; cancellation through a cancel file plus killing the process tree;
* :func:`read_run_folder`: a finished run folder back into a :class:`.methods.Result` (with the
  synthetic image of a method that makes one), and :func:`read_input_segmentation`: the
  segmentation the run computed from an image given alone (``--segment``);
* :func:`method_options`, :func:`set_method_option`, :func:`option_widget_kind`: per-method
  option values kept as one JSON string (as the Slicer parameter node stores them) and the
  editor that shows each option.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .core.errors import InputError

PROGRESS_PREFIX = "PROGRESS"
#: The CLI prints InputErrors as ``cardiac-recon run: error: <message>``.
ERROR_MARKER = ": error: "
CANCELLED_STATUS = 130  # the CLI's exit status for Cancelled
INPUT_ERROR_STATUS = 2

RESULT_LABELS = "labels.seg.nrrd"
RESULT_DISPLACEMENTS = "displacements.csv"
RESULT_INFO = "run.json"
SURFACE_PATTERN = "surface_*.vtp"
#: The synthetic super-resolved image of a method that makes one (``Result.image``), on the labels' grid.
RESULT_IMAGE = "image_sr.nii.gz"
#: The segmentation of an image given alone, computed before the method ran (``run --segment``).
RESULT_INPUT_SEGMENTATION = "segmentation_input.seg.nrrd"
#: The segmenters of an image given alone (``methods.deeprecon.SEGMENTERS``, whose module this
#: runtime adapter does not import just to list them; a test keeps the two equal); the first is
#: the default.
SEGMENTERS = ("directseg", "deeprecon")


def format_progress(fraction: float, message: str = "") -> str:
    """One progress line: ``PROGRESS 0.300 slices aligned`` (message on one line)."""
    text = " ".join(str(message).split())
    return f"{PROGRESS_PREFIX} {float(fraction):.3f} {text}".rstrip()


def parse_progress(line: str) -> Optional[Tuple[float, str]]:
    """(fraction, message) of a progress line, or None for any other output line."""
    parts = line.strip().split(" ", 2)
    if len(parts) < 2 or parts[0] != PROGRESS_PREFIX:
        return None
    try:
        fraction = float(parts[1])
    except ValueError:
        return None
    return min(max(fraction, 0.0), 1.0), (parts[2] if len(parts) > 2 else "")


def progress_printer(stream):
    """A ``progress(fraction, message)`` callback writing flushed progress lines to ``stream``
    (flushed, so a reading process sees each line as soon as it is printed)."""

    def report(fraction: float, message: str = "") -> None:
        print(format_progress(fraction, message), file=stream, flush=True)

    return report


def cancel_file_checker(path) -> Optional[Any]:
    """A ``cancel()`` callback that is True once ``path`` exists (None when no path is given).

    A file works on every platform and reaches the real interpreter even when the process the
    caller started is a launcher (PythonSlicer) that could not forward a signal."""
    if not path:
        return None
    path = Path(path)
    return lambda: path.exists()


@dataclass
class RunInputs:
    """The files a worker reads: SAX labels (None: the image is segmented first, with
    ``segmenter``), long-axis views by view name, optional image."""

    sax: Optional[Path]
    lax: Dict[str, Path] = field(default_factory=dict)
    image: Optional[Path] = None
    segmenter: Optional[str] = None


def write_inputs(case, folder) -> RunInputs:
    """Write a :class:`.core.case.Case` (canonical labels) as files a worker reads back unchanged:
    ``.seg.nrrd`` segmentations with canonical segment names (so they map by name) and the
    image as NRRD. ``folder`` is created if needed."""
    from .core.io import write_segmentation, write_volume

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = RunInputs(sax=write_segmentation(case.sax, folder / "sax.seg.nrrd"))
    for view in case.lax:
        inputs.lax[view.view] = write_segmentation(view.labels, folder / f"lax_{view.view}.seg.nrrd")
    if case.image is not None:
        inputs.image = write_volume(case.image, folder / "image.nrrd")
    return inputs


def write_image_inputs(image, folder, lax_views: Sequence = (), segmenter: str = SEGMENTERS[0]) -> RunInputs:
    """The files of a run on an image alone (no segmentation: the worker segments it with
    ``segmenter`` first): the image as NRRD and the long-axis views (:class:`.core.case.LaxView`)
    as ``.seg.nrrd``."""
    from .core.io import write_segmentation, write_volume

    if segmenter not in SEGMENTERS:
        raise InputError(f"Unknown segmenter {segmenter!r}; expected one of {', '.join(SEGMENTERS)}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = RunInputs(sax=None, image=write_volume(image, folder / "image.nrrd"), segmenter=segmenter)
    for view in lax_views:
        inputs.lax[view.view] = write_segmentation(view.labels, folder / f"lax_{view.view}.seg.nrrd")
    return inputs


def run_arguments(inputs: RunInputs, output, method: str, *, device: str = "auto",
                  slice_spacing: Optional[float] = None, options: Optional[Mapping[str, Any]] = None,
                  seed: int = 0, surfaces: bool = True, cancel_file=None) -> List[str]:
    """Arguments of ``cardiac-recon`` (after the program name) for one run with progress lines;
    without ``inputs.sax`` the image is segmented first (``--segment inputs.segmenter``)."""
    if inputs.sax is None and inputs.image is None:
        raise InputError("A run needs the SAX segmentation or the SAX image.")
    args = ["run"] + (["--input", str(inputs.sax)] if inputs.sax is not None else
                      ["--segment", inputs.segmenter or SEGMENTERS[0]])
    args += ["--method", method, "--device", device, "--seed", str(int(seed)), "--output", str(output),
             "--progress-format", "lines"]
    for view, path in sorted(inputs.lax.items()):
        args += ["--lax", f"{view}={path}"]
    if inputs.image is not None:
        args += ["--image", str(inputs.image)]
    if slice_spacing is not None:
        args += ["--slice-spacing", repr(float(slice_spacing))]
    for name, value in sorted((options or {}).items()):
        args += ["--option", f"{name}={value}"]
    if not surfaces:
        args.append("--no-surfaces")
    if cancel_file is not None:
        args += ["--cancel-file", str(cancel_file)]
    return args


def worker_command(python_executable, arguments: Sequence[str]) -> List[str]:
    """The full command: ``<python> -m CardiacReconstructionLib <arguments>``."""
    return [str(python_executable), "-m", __package__] + [str(a) for a in arguments]


def worker_environment(module_folder, environment: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment variables to add for the worker: ``PYTHONPATH`` starting with the folder that
    holds this package (the Slicer module folder), keeping any existing entries."""
    env = dict(os.environ if environment is None else environment)
    existing = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    folder = str(Path(module_folder).resolve())
    return {"PYTHONPATH": os.pathsep.join([folder] + [p for p in existing if p != folder])}


_EOF = object()


class WorkerProcess:
    """Follow a worker process without blocking: a daemon thread reads its (merged) output line
    by line into a queue; :meth:`poll`, called from the GUI thread, drains it.

    ``process`` is a ``subprocess.Popen`` with ``stdout=PIPE, stderr=STDOUT`` (what
    ``slicer.util.launchConsoleProcess`` returns). ``cancel_file`` is the file the worker was
    told to watch (``--cancel-file``).
    """

    def __init__(self, process: subprocess.Popen, cancel_file=None):
        self.process = process
        self.cancel_file = Path(cancel_file) if cancel_file else None
        self.log: List[str] = []
        self.progress: Tuple[float, str] = (0.0, "")
        self.cancelled = False
        self._queue: "queue.Queue" = queue.Queue()
        self._eof = False
        self._thread = threading.Thread(target=self._read_output, name="CardiacReconstruction worker output",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, command: Sequence[str], environment: Optional[Mapping[str, str]] = None, cwd=None,
              cancel_file=None) -> "WorkerProcess":
        """Start ``command`` the way ``slicer.util.launchConsoleProcess`` does (outside Slicer)."""
        env = None if environment is None else {**os.environ, **environment}
        process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   universal_newlines=True, env=env, cwd=cwd)
        return cls(process, cancel_file)

    def _read_output(self) -> None:
        stream = self.process.stdout
        try:
            while True:
                line = stream.readline()
                if not line:  # end of output: the process closed its end of the pipe
                    break
                self._queue.put(line.decode(errors="replace") if isinstance(line, bytes) else line)
        except (OSError, ValueError):  # the pipe was closed under us: nothing more to read
            pass
        finally:
            self._queue.put(_EOF)

    def poll(self) -> Tuple[List[Tuple[float, str]], List[str]]:
        """New progress updates and new log lines since the last call (never blocks)."""
        updates, lines = [], []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _EOF:
                self._eof = True
                break
            line = item.rstrip("\r\n")
            progress = parse_progress(line)
            if progress is not None:
                updates.append(progress)
                self.progress = progress
            elif line.strip():
                lines.append(line)
                self.log.append(line)
        return updates, lines

    @property
    def returncode(self) -> Optional[int]:
        """The exit status once the process ended and all its output was read, else None."""
        if not self._eof:
            return None
        return self.process.wait()

    @property
    def finished(self) -> bool:
        return self.returncode is not None

    def cancel(self) -> None:
        """Ask the worker to stop (cancel file) and kill it and its children at once."""
        self.cancelled = True
        if self.cancel_file is not None:
            try:
                self.cancel_file.parent.mkdir(parents=True, exist_ok=True)
                self.cancel_file.touch()
            except OSError:
                pass
        kill_process_tree(self.process)

    def wait(self, timeout: Optional[float] = None) -> int:
        """Block until the process ended and its output was read (for scripts and tests)."""
        self.process.wait(timeout)
        self._thread.join(timeout)
        return self.process.returncode

    def error_message(self) -> str:
        """What went wrong, in the user's terms: the CLI's one-line input error when there is one,
        else the exit status and the last output line."""
        code = self.returncode
        for line in reversed(self.log):
            if ERROR_MARKER in line:
                return line.split(ERROR_MARKER, 1)[1].strip()
        if code == CANCELLED_STATUS or self.cancelled:
            return "Cancelled by the user."
        last = self.log[-1].strip() if self.log else "no output"
        return f"The reconstruction process stopped with exit status {code} ({last})."


def kill_process_tree(process: subprocess.Popen) -> None:
    """Kill ``process`` and, when psutil is available, its children first (PythonSlicer is a
    launcher whose child is the real interpreter)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            children = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
    if process.poll() is None:
        try:
            process.kill()
        except OSError:
            pass


def read_displacements(path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(displacements (n, 2) mm, residuals (n,) or None) from a displacement CSV written by
    :func:`.core.io.write_displacements`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Displacement file not found: {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        rows.sort(key=lambda r: int(r["slice"]))
        d = np.array([[float(r["dx_mm"] or "nan"), float(r["dy_mm"] or "nan")] for r in rows], float).reshape(-1, 2)
        residuals = np.array([float(r["residual"]) for r in rows]) if rows and "residual" in rows[0] else None
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path.name}: expected columns slice, dx_mm, dy_mm (and optionally residual); "
                         f"could not read it ({exc}).") from None
    return d, residuals


def read_run_folder(folder):
    """A finished ``cardiac-recon run`` output folder as a :class:`.methods.Result`: labels,
    displacements (residuals go to ``diagnostics['residuals']``), surfaces by structure key,
    the synthetic image (``Result.image``, from :data:`RESULT_IMAGE`) where the method made one,
    and the timings, diagnostics and method name from ``run.json``."""
    from .core.io import read_segmentation, read_volume
    from .methods import Result
    from .core.surfaces import read_surface

    folder = Path(folder)
    if not (folder / RESULT_LABELS).is_file():
        raise InputError(f"{folder} holds no {RESULT_LABELS}; the run did not finish.")
    labels, _ = read_segmentation(folder / RESULT_LABELS)
    displacements, residuals = read_displacements(folder / RESULT_DISPLACEMENTS)
    surfaces = {p.name[len("surface_"):-len(".vtp")]: read_surface(p) for p in sorted(folder.glob(SURFACE_PATTERN))}
    info = json.loads((folder / RESULT_INFO).read_text()) if (folder / RESULT_INFO).is_file() else {}
    diagnostics = dict(info.get("diagnostics") or {})
    if residuals is not None:
        diagnostics.setdefault("residuals", residuals)
    estimated = info.get("displacement_estimated")
    image = read_volume(folder / RESULT_IMAGE) if (folder / RESULT_IMAGE).is_file() else None
    return Result(labels=labels, displacements=displacements, surfaces=surfaces,
                  timings=dict(info.get("timings") or {}), diagnostics=diagnostics, method=info.get("method", ""),
                  estimated=None if estimated is None else np.asarray(estimated, bool), image=image)


def read_input_segmentation(folder):
    """The segmentation a finished run computed from an image given alone
    (:data:`RESULT_INPUT_SEGMENTATION`, canonical labels on the image's grid), or None when the
    run was given its segmentation."""
    from .core.io import read_segmentation

    path = Path(folder) / RESULT_INPUT_SEGMENTATION
    return read_segmentation(path)[0] if path.is_file() else None


# Per-method option values kept as one JSON string
def _load_options(text: str) -> Dict[str, Dict[str, Any]]:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def method_options(text: str, method_name: str) -> Dict[str, Any]:
    """The option values of ``method_name`` stored in the JSON ``text``
    (``{"method": {"option": value}}``), each coerced by its :class:`.methods.Option`; missing
    or invalid values fall back to the option's default and unknown names are dropped, so a
    stale saved scene never breaks a run."""
    from .methods import get

    stored = _load_options(text).get(method_name, {})
    values = {}
    for option in get(method_name).options:
        try:
            values[option.name] = option.coerce(stored[option.name]) if option.name in stored else option.default
        except InputError:
            values[option.name] = option.default
    return values


def set_method_option(text: str, method_name: str, name: str, value) -> str:
    """``text`` with one option value changed (validated by the method's Option)."""
    from .methods import get

    options = {o.name: o for o in get(method_name).options}
    if name not in options:
        raise InputError(f"Method {method_name!r} has no option {name!r}; its options are {sorted(options) or 'none'}.")
    data = _load_options(text)
    value = options[name].coerce(value)
    data.setdefault(method_name, {})[name] = value.item() if isinstance(value, np.generic) else value
    return json.dumps(data, sort_keys=True)


def option_widget_kind(option) -> str:
    """Which editor shows a :class:`.methods.Option` in the Slicer widget: 'combobox' when it
    has choices, 'checkbox' for bool, 'spinbox' for int, 'doublespinbox' for float, else
    'lineedit'."""
    if option.choices:
        return "combobox"
    return {bool: "checkbox", int: "spinbox", float: "doublespinbox"}.get(option.type, "lineedit")


def spin_box_format(option) -> Tuple[int, float]:
    """(decimals, single step) for a float option's spin box: enough decimals to show its
    default and minimum (1e-05 must not round to 0 and fall below the minimum), and a step of
    the default's order of magnitude."""
    import math

    magnitudes = [abs(float(v)) for v in (option.default, option.minimum) if v]
    decimals = max(3, min(8, 2 - math.floor(math.log10(min(magnitudes))))) if magnitudes else 3
    step = 10.0 ** math.floor(math.log10(abs(float(option.default)))) if option.default else 0.1
    return int(decimals), float(step)
