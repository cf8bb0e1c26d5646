"""3D Slicer module: motion-corrected, super-resolved 3D hearts from short-axis MRI segmentations.

A thin shell around the engine in ``CardiacReconstructionLib`` (importable without Slicer):
the widget collects nodes and settings in a parameter node, the logic turns nodes into an
engine case (``mrml.case_from_nodes``), runs a registered method and turns the result back into
nodes (``mrml.result_to_nodes``). The Apply button runs the method in a separate PythonSlicer
process (``worker``) so the GUI stays responsive and Cancel can stop it at once;
``CardiacReconstructionLogic.process`` runs synchronously in Slicer's interpreter for the Python
console and batch scripts.

Compatible with Slicer 5.8 (Python 3.9) and later: no ``X | None`` annotations, no ``imp``,
5.12-only APIs (``slicer.packaging``) behind checks. The engine is imported only when needed,
so the module loads even before its Python packages are installed (first Apply installs them).
"""

import importlib
import importlib.util
import logging
import os
import re
import shutil
import sys
import time
import traceback
from typing import Annotated, List, Optional, Union

import qt
import vtk

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

#: The engine package; it sits beside this file, so Slicer's module path makes it importable.
ENGINE_PACKAGE = "CardiacReconstructionLib"
MODULE_FOLDER = os.path.dirname(os.path.abspath(__file__))
DEFAULT_METHOD = "centroid_shape_interp"
#: Copies of labels.CONVENTION_NAMES and device.DEVICE_CHOICES (the parameter node is defined
#: when Slicer loads this file, before the engine's packages may be installed; a test keeps
#: them equal to the engine's).
CONVENTIONS = ("auto", "canonical", "acdc", "ukbb", "mmwhs")
DEVICES = ("auto", "cuda", "cpu")
#: Import names of the requirements whose distribution name differs from the module name;
#: a requirement counts as installed when its module can be found (Slicer's own numpy, vtk and
#: SimpleITK are not pip distributions, so pip's view would reinstall them).
REQUIREMENT_IMPORT_NAMES = {"scikit-image": "skimage", "SimpleITK": "SimpleITK"}
TORCH_REQUIREMENT = ">=2.0"
POLL_INTERVAL_MS = 200
#: Share of the progress bar for the worker; the rest is reading the results into the scene.
WORKER_PROGRESS_SHARE = 0.9
RECONSTRUCTION_SEGMENTS = ("LV blood pool", "LV myocardium", "RV blood pool")
README_URL = "https://github.com/CardiacReconstruction/SlicerCardiacReconstruction#readme"


#
# CardiacReconstruction
#

class CardiacReconstruction(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and Help section."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Cardiac Reconstruction")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = []
        self.parent.contributors = ["CardiacReconstruction contributors"]
        self.parent.helpText = _("""
<p>Turns the segmentation of a clinical short-axis (SAX) cine MRI stack (about ten thick slices,
each shifted by its own breath-hold) into a <b>motion-corrected, super-resolved 3D
segmentation</b> with per-slice displacements and smooth surface models.</p>
<p><b>Inputs</b>: the SAX segmentation (segmentation node or labelmap volume; the slice axis must
be the volume's third axis), optionally 2-, 3- and 4-chamber long-axis segmentations and the SAX
image. Labels are LV blood pool, LV myocardium and RV blood pool (optionally LA, RA, aorta,
pulmonary artery); segments are recognised by name, label values by the label convention.
Inputs are never modified.</p>
<p><b>Methods</b>. Classical: <code>nearest</code> (nearest-neighbour upsampling),
<code>linear</code> (linear interpolation of labels), <code>shape_interp</code> (shape-based
interpolation) and <code>centroid_shape_interp</code> (slices aligned on an LV centroid fit, then
shape-based interpolation). Learned (need PyTorch; a GPU is used when available):
<code>latent_optimisation</code> (a learned 3D shape prior and per-slice shifts fitted to the
stack, after SRHeart), <code>dsl_asv</code> (DeepWHR: label-domain motion correction, then
arbitrary-scale super-resolution) and <code>mask2surface</code> (Mask2Surface: MCSR-Net correction and
super-resolution, then latent diffusion of signed distance grids to smooth, watertight surfaces of the
LV myocardium, LV endo- and epicardium and RV endocardium). All but the first three estimate
per-slice displacements.
Each method's options appear when it is selected.</p>
<p><b>Outputs</b>: a segmentation with named, coloured segments at the chosen slice spacing,
surface models, a table of per-slice displacements (mm along the image rows and columns) and,
with an image, a motion-corrected copy of it.</p>
<p>Apply runs in the background (press it again to cancel). For scripting use
<code>CardiacReconstructionLogic().process(...)</code>. See the
<a href="{url}">README</a> for details, the command line and batch processing.</p>
""").replace("{url}", README_URL)
        self.parent.acknowledgementText = _("""
<p>Methods build on: Wang S et al., <i>Joint motion correction and super resolution for cardiac
segmentation via latent optimisation</i>, MICCAI 2021; Dong J et al., <i>Cross-modality
whole-heart MRI reconstruction with deep motion correction and super-resolution (DeepWHR)</i>;
Zhang Z et al., <i>Mask2Surface: motion correction and super-resolution for cardiac surface
reconstruction using latent diffusion</i>; Chang Q et al., <i>DeepRecon: joint 2D cardiac
segmentation and 3D volume reconstruction via a structure-specific generative method</i>.
Shape-based interpolation: Raya and Udupa, IEEE TMI 1990.</p>
<p>Data: Rodero C et al., <i>Linking statistical shape models and simulated function in the
healthy adult human heart</i>, PLOS Comput Biol 2021; Bernard O et al. (ACDC), IEEE TMI 2018.
Tests use the project's own procedural heart phantom.</p>
""")


#
# CardiacReconstructionParameterNode
#

LabelNode = Optional[Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode]]


@parameterNodeWrapper
class CardiacReconstructionParameterNode:
    """The module's settings, saved with the scene.

    saxSegmentation - the SAX stack's segmentation or labelmap (required).
    lax2ch, lax3ch, lax4ch - optional long-axis segmentations or labelmaps.
    saxImage - optional SAX image on the segmentation's grid (a corrected copy is made).
    convention - label convention of label values ('auto' detects it).
    method - registered method name (combo box filled from the engine's registry).
    methodOptions - JSON {method: {option: value}}; edited through per-method option widgets.
    sliceSpacing - output slice spacing in mm.
    device - 'auto', 'cuda' or 'cpu' for learned methods.
    outputSegmentation - segmentation that receives the result (None: a new one is made).
    """

    saxSegmentation: LabelNode
    lax2ch: LabelNode
    lax3ch: LabelNode
    lax4ch: LabelNode
    saxImage: Optional[vtkMRMLScalarVolumeNode]
    convention: Annotated[str, Choice(list(CONVENTIONS))] = "auto"
    method: str = DEFAULT_METHOD
    methodOptions: str = ""
    sliceSpacing: Annotated[float, WithinRange(0.25, 10.0)] = 2.0
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    outputSegmentation: Optional[vtkMRMLSegmentationNode]


#
# CardiacReconstructionWidget
#

class CardiacReconstructionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The GUI: parameter node <-> widgets, Apply/Cancel of a background run, progress."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None  # the BackgroundRun in progress
        self._cancelledRuns = []  # cancelled runs whose processes have not ended yet
        self._optionForms = {}  # method name -> (form widget, {option name: (kind, editor, Option)})
        self._methods = {}  # method name -> engine Method
        self._updatingGui = False
        self._timer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CardiacReconstruction.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CardiacReconstructionLogic()

        optionsLayout = qt.QVBoxLayout(self.ui.methodOptionsWidget)
        optionsLayout.setContentsMargins(0, 0, 0, 0)
        self.ui.progressBar.setVisible(False)
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._onTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)

        self._populateMethods()
        self.ui.deviceInfoLabel.text = self.logic.deviceDescription()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        if self._run is not None:
            self.onCancel()
        if self._timer is not None:
            self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # Keep the GUI connected while a run is in progress so its result lands in the widgets.
        if self._parameterNode and self._run is None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        if self._run is not None:
            self.onCancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onReload(self) -> None:
        """Reload the engine too (Slicer's reload only re-reads this file)."""
        for name in [n for n in sys.modules if n == ENGINE_PACKAGE or n.startswith(ENGINE_PACKAGE + ".")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    # -- parameter node -------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
                self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with a SlicerParameterName property in the .ui file are bound here; the
            # method combo box and the option widgets are filled at run time and bound by hand.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        if self._parameterNode is None:
            return
        self._updatingGui = True
        try:
            index = self.ui.methodComboBox.findData(self._parameterNode.method)
            if index >= 0:
                self.ui.methodComboBox.currentIndex = index
            self._showMethod(self._parameterNode.method)
            self._writeOptionWidgets(self._parameterNode.method)
        finally:
            self._updatingGui = False
        self._checkCanApply()

    def _checkCanApply(self) -> None:
        if self._run is not None:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the running reconstruction; the scene is left unchanged.")
            self.ui.applyButton.enabled = True
        elif self._parameterNode and self._parameterNode.saxSegmentation:
            self.ui.applyButton.text = _("Apply")
            self.ui.applyButton.toolTip = _("Run the reconstruction in the background.")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.text = _("Apply")
            self.ui.applyButton.toolTip = _("Select the SAX segmentation first.")
            self.ui.applyButton.enabled = False

    # -- methods and their options ------------------------------------------------------------------

    def _populateMethods(self) -> None:
        """Fill the method combo box from the engine's registry and build one option form per
        method (hidden until the method is selected)."""
        for form, _editors in self._optionForms.values():
            form.setParent(None)
        self._optionForms, self._methods = {}, {}
        self.ui.methodComboBox.blockSignals(True)
        self.ui.methodComboBox.clear()
        available = self.logic.availableMethods()
        if available is None:
            self.ui.methodComboBox.addItem(DEFAULT_METHOD, DEFAULT_METHOD)
            self.ui.methodDescriptionLabel.text = _(
                "Some Python packages this module needs are not installed yet; they are installed "
                "(after asking) when you press Apply.")
        else:
            for method in available:
                self._methods[method.name] = method
                self.ui.methodComboBox.addItem(f"{method.title} ({method.name})", method.name)
                self.ui.methodComboBox.setItemData(self.ui.methodComboBox.count - 1, method.description,
                                                   qt.Qt.ToolTipRole)
                self._optionForms[method.name] = self._buildOptionForm(method)
        self.ui.methodComboBox.blockSignals(False)

    def _buildOptionForm(self, method):
        """A QFormLayout with one editor per methods.Option (spin box, combo box, check box or
        line edit, as worker.option_widget_kind says); edits go to the parameter node."""
        from CardiacReconstructionLib import worker

        form = qt.QWidget()
        layout = qt.QFormLayout(form)
        layout.setContentsMargins(0, 0, 0, 0)
        editors = {}
        for option in method.options:
            kind = worker.option_widget_kind(option)
            editor = self._createOptionEditor(kind, option, method.name)
            editor.toolTip = option.help
            layout.addRow(option.name.replace("_", " ").capitalize() + ":", editor)
            editors[option.name] = (kind, editor, option)
        form.setVisible(False)
        self.ui.methodOptionsWidget.layout().addWidget(form)
        return form, editors

    def _createOptionEditor(self, kind, option, methodName):
        from CardiacReconstructionLib import worker

        def edited(value, optionName=option.name):
            self._onOptionEdited(methodName, optionName, value)

        if kind == "checkbox":
            editor = qt.QCheckBox()
            editor.connect("toggled(bool)", edited)
        elif kind == "combobox":
            editor = qt.QComboBox()
            for choice in option.choices:
                editor.addItem(str(choice))
            editor.connect("currentIndexChanged(int)", lambda index: edited(option.choices[index]))
        elif kind == "spinbox":
            editor = qt.QSpinBox()
            editor.setRange(int(option.minimum) if option.minimum is not None else -(2 ** 31) + 1,
                            int(option.maximum) if option.maximum is not None else 2 ** 31 - 1)
            editor.connect("valueChanged(int)", edited)
        elif kind == "doublespinbox":
            editor = qt.QDoubleSpinBox()
            decimals, step = worker.spin_box_format(option)
            editor.setDecimals(decimals)
            editor.setSingleStep(step)
            editor.setRange(option.minimum if option.minimum is not None else -1e12,
                            option.maximum if option.maximum is not None else 1e12)
            editor.connect("valueChanged(double)", edited)
        else:
            editor = qt.QLineEdit()
            editor.connect("editingFinished()", lambda: edited(editor.text))
        return editor

    def _writeOptionWidgets(self, methodName) -> None:
        """Show the stored option values of ``methodName`` in its editors."""
        if methodName not in self._optionForms or self._parameterNode is None:
            return
        from CardiacReconstructionLib import worker

        values = worker.method_options(self._parameterNode.methodOptions, methodName)
        for name, (kind, editor, option) in self._optionForms[methodName][1].items():
            value = values[name]
            editor.blockSignals(True)
            if kind == "checkbox":
                editor.checked = bool(value)
            elif kind == "combobox":
                editor.currentIndex = list(option.choices).index(value)
            elif kind in ("spinbox", "doublespinbox"):
                editor.value = value
            else:
                editor.text = str(value)
            editor.blockSignals(False)

    def _onOptionEdited(self, methodName, optionName, value) -> None:
        if self._updatingGui or self._parameterNode is None:
            return
        from CardiacReconstructionLib import worker

        try:
            self._parameterNode.methodOptions = worker.set_method_option(
                self._parameterNode.methodOptions, methodName, optionName, value)
        except Exception as exc:  # an InputError from Option.coerce: say what is expected
            self.ui.statusLabel.text = str(exc)

    def onMethodChanged(self, index) -> None:
        name = self.ui.methodComboBox.itemData(index)
        if not name:
            return
        self._showMethod(name)
        if not self._updatingGui and self._parameterNode is not None:
            self._parameterNode.method = name

    def _showMethod(self, name) -> None:
        for methodName, (form, _editors) in self._optionForms.items():
            form.setVisible(methodName == name)
        if name in self._methods:
            self.ui.methodDescriptionLabel.text = self._methods[name].description

    # -- Apply, progress, Cancel ----------------------------------------------------------------

    def onApplyButton(self) -> None:
        """Apply starts a background run; while one runs the same button cancels it."""
        if self._run is not None:
            self.onCancel()
            return
        p = self._parameterNode
        try:
            if not self.logic.ensureDependencies(p.method):
                return
            if not self._methods:  # the packages were just installed: now the registry can be read
                self._populateMethods()
                self._onParameterNodeModified()
            with slicer.util.WaitCursor():
                from CardiacReconstructionLib import worker

                run = self.logic.startBackgroundRun(
                    p.saxSegmentation, outputSegmentation=p.outputSegmentation, method=p.method,
                    lax2ch=p.lax2ch, lax3ch=p.lax3ch, lax4ch=p.lax4ch, imageNode=p.saxImage,
                    convention=p.convention, device=p.device, sliceSpacing=p.sliceSpacing,
                    options=worker.method_options(p.methodOptions, p.method))
        except Exception as exc:
            showError(exc, _("Could not start the reconstruction."))
            return
        self._run = run
        self._setRunning(True)
        self.ui.statusLabel.text = "\n".join(run.messages)
        self._timer.start()

    def onCancel(self) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        self.logic.cancelBackgroundRun(run)
        self._cancelledRuns.append(run)  # its folder is removed once the process has ended
        self._setRunning(False)
        self.ui.statusLabel.text = _("Cancelled; the scene was not changed.")

    def _setRunning(self, running: bool) -> None:
        self.ui.progressBar.setVisible(running)
        self.ui.progressBar.value = 0
        for widget in (self.ui.inputsCollapsibleButton, self.ui.methodCollapsibleButton,
                       self.ui.outputsCollapsibleButton, self.ui.advancedCollapsibleButton):
            widget.enabled = not running
        self._checkCanApply()

    def _onTimer(self) -> None:
        for run in list(self._cancelledRuns):
            run.worker.poll()
            if run.worker.finished:
                self.logic.discardBackgroundRun(run)
                self._cancelledRuns.remove(run)
        run = self._run
        if run is None:
            if not self._cancelledRuns:
                self._timer.stop()
            return
        updates, lines = run.worker.poll()
        for line in lines:
            logging.info(f"CardiacReconstruction: {line}")
        if updates:
            fraction, message = updates[-1]
            self.ui.progressBar.value = int(round(100 * WORKER_PROGRESS_SHARE * fraction))
            self.ui.statusLabel.text = message
        if run.worker.finished:
            self._onRunFinished(run)

    def _onRunFinished(self, run) -> None:
        self._run = None
        try:
            if run.worker.returncode != 0:
                message = run.worker.error_message()
                self.logic.discardBackgroundRun(run)
                slicer.util.errorDisplay(message, windowTitle=_("Cardiac Reconstruction"),
                                         detailedText="\n".join(run.worker.log[-60:]))
                self.ui.statusLabel.text = message
                return
            self.ui.statusLabel.text = _("Adding the results to the scene...")
            with slicer.util.WaitCursor():
                outputs = self.logic.finishBackgroundRun(run)
            self._parameterNode.outputSegmentation = outputs["segmentation"]
            self.ui.statusLabel.text = "\n".join([outputs["summary"]] + outputs["warnings"])
            slicer.util.resetThreeDViews()
        except Exception as exc:
            self.logic.discardBackgroundRun(run)
            showError(exc, _("Could not read the reconstruction."))
        finally:
            self._setRunning(False)


def isInputError(exc) -> bool:
    """True for the engine's InputError (a problem the user can fix; its message says how)."""
    errors = sys.modules.get(ENGINE_PACKAGE + ".errors")
    return errors is not None and isinstance(exc, errors.InputError)


def showError(exc, context) -> None:
    """Input problems as their one-line message; anything else (a bug) with the traceback."""
    if isInputError(exc):
        slicer.util.errorDisplay(str(exc), windowTitle=_("Cardiac Reconstruction"))
    else:
        logging.error(traceback.format_exc())
        slicer.util.errorDisplay(f"{context}\n\n{exc}", windowTitle=_("Cardiac Reconstruction"),
                                 detailedText=traceback.format_exc())


#
# Dependencies (standard library only: they are checked before the engine can be imported)
#

def requirementsPath() -> str:
    return os.path.join(MODULE_FOLDER, "Resources", "requirements.txt")


def readRequirements(path=None) -> List[str]:
    """Requirement lines of Resources/requirements.txt (the engine's dependencies minus torch)."""
    with open(path or requirementsPath()) as f:
        return [line.strip() for line in f if line.strip() and not line.strip().startswith("#")]


def requirementImportName(requirement) -> str:
    distribution = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
    return REQUIREMENT_IMPORT_NAMES.get(distribution, distribution.lower().replace("-", "_"))


def missingRequirements(requirements=None) -> List[str]:
    """The requirements whose module cannot be imported."""
    importlib.invalidate_caches()
    return [r for r in (requirements or readRequirements())
            if importlib.util.find_spec(requirementImportName(r)) is None]


def pythonSlicerExecutable() -> str:
    """PythonSlicer: Slicer's Python with Slicer's environment, for the worker process."""
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    found = shutil.which("PythonSlicer")
    if found:
        return found
    candidate = os.path.join(slicer.app.slicerHome, "bin", name)
    if os.path.isfile(candidate):
        return candidate
    raise RuntimeError(f"Cannot find {name} (looked on the PATH and in {os.path.dirname(candidate)}).")


#
# CardiacReconstructionLogic
#

class BackgroundRun:
    """A reconstruction running in a worker process; see CardiacReconstructionLogic.startBackgroundRun."""

    def __init__(self, worker, case, messages, folder, outputFolder, method, outputSegmentation, imageNode):
        self.worker = worker  # CardiacReconstructionLib.worker.WorkerProcess
        self.case = case  # the engine case read from the nodes when the run started
        self.messages = messages  # label-mapping messages for the user
        self.folder = folder
        self.outputFolder = outputFolder
        self.method = method
        self.outputSegmentation = outputSegmentation
        self.imageNode = imageNode
        self.startTime = time.perf_counter()


class CardiacReconstructionLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable without the widget (Python console, batch scripts).

    * :meth:`process`: synchronous, in Slicer's own interpreter.
    * :meth:`startBackgroundRun` / :meth:`finishBackgroundRun` / :meth:`cancelBackgroundRun`: the
      same in a separate process (what Apply does).
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return CardiacReconstructionParameterNode(super().getParameterNode())

    # -- engine and dependencies --------------------------------------------------------------------

    @staticmethod
    def availableMethods():
        """The engine's registered methods, or None while its packages are not installed."""
        try:
            from CardiacReconstructionLib import methods
        except ImportError as exc:
            logging.warning(f"CardiacReconstruction: the engine cannot be imported yet ({exc}).")
            return None
        return methods.available()

    @staticmethod
    def deviceDescription() -> str:
        """Detected device, torch version and CUDA build (engine's device.describe)."""
        try:
            from CardiacReconstructionLib.core import device
        except ImportError:
            return _("Unknown until the module's Python packages are installed (press Apply).")
        return device.describe()

    def ensureDependencies(self, method=None, askConfirmation=True) -> bool:
        """Make sure the engine can run: the packages of Resources/requirements.txt, then
        PyTorch (through the PyTorch extension) when ``method`` is learned or unknown, installed
        with the user's confirmation. Never called at import time. Returns False (after telling
        the user why) when something is missing."""
        missing = missingRequirements()
        if missing and not self._installRequirements(missing, askConfirmation):
            return False
        return not self._methodNeedsTorch(method) or self._ensureTorch(askConfirmation)

    @staticmethod
    def _installRequirements(missing, askConfirmation=True) -> bool:
        """pip_ensure on Slicer 5.12+ (it asks and reports itself), else pip_install after a
        confirmation; skipped in testing mode."""
        if slicer.app.testingEnabled():  # tests must not change the Python environment
            logging.error(f"CardiacReconstruction: missing Python packages {missing} (not installed in testing mode).")
            return False
        try:
            import slicer.packaging as packaging  # Slicer 5.12 and later
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            try:
                packaging.pip_ensure(missing, prompt_install=askConfirmation, requester="Cardiac Reconstruction")
            except RuntimeError:  # the user declined
                return False
        else:
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("Cardiac Reconstruction needs these Python packages, which will now be downloaded and "
                      "installed (this can take a few minutes):") + "\n\n" + "\n".join(missing),
                    windowTitle=_("Install Python packages")):
                return False
            with slicer.util.WaitCursor():
                slicer.util.pip_install(missing)
        still = missingRequirements()
        if still:
            slicer.util.errorDisplay(_("These Python packages could not be installed: ") + ", ".join(still)
                                     + _(". Restart Slicer and try again, or install them from the Python console "
                                         "with slicer.util.pip_install."), windowTitle=_("Cardiac Reconstruction"))
            return False
        return True

    def _methodNeedsTorch(self, method) -> bool:
        """Only learned methods need PyTorch; the classical baselines run without it."""
        available = self.availableMethods()
        kinds = {m.name: m.kind for m in available} if available else {}
        return kinds.get(method, "learned") != "baseline"

    @staticmethod
    def _ensureTorch(askConfirmation=True) -> bool:
        try:
            import torch  # noqa: F401
            return True
        except ImportError:
            pass
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay(
                _("This method needs PyTorch. Install the 'PyTorch' extension from the Extensions Manager "
                  "(View > Extensions Manager), restart Slicer and press Apply again."),
                windowTitle=_("Cardiac Reconstruction"))
            return False
        if slicer.app.testingEnabled():
            logging.error("CardiacReconstruction: PyTorch is missing (not installed in testing mode).")
            return False
        installed = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation,
                                                                  torchVersionRequirement=TORCH_REQUIREMENT)
        if installed is None:  # the user declined, or the installation failed
            slicer.util.errorDisplay(_("PyTorch was not installed, so this method cannot run. Install it from the "
                                       "PyTorch Utils module and press Apply again."),
                                     windowTitle=_("Cardiac Reconstruction"))
            return False
        return True

    # -- nodes <-> engine -------------------------------------------------------------------------

    @staticmethod
    def _readInputs(saxNode, outputSegmentation, lax2ch, lax3ch, lax4ch, imageNode, convention):
        """The engine case of the input nodes and the label-mapping messages (nodes untouched)."""
        from CardiacReconstructionLib import mrml
        from CardiacReconstructionLib.core.errors import InputError

        if saxNode is None:
            raise InputError("Select the SAX segmentation.")
        if outputSegmentation is not None and outputSegmentation in (saxNode, lax2ch, lax3ch, lax4ch):
            raise InputError(f"The output segmentation '{outputSegmentation.GetName()}' is also an input; choose "
                             "another output (or 'Create new segmentation'): inputs are never modified.")
        case, messages = mrml.case_from_nodes(saxNode, {"2ch": lax2ch, "3ch": lax3ch, "4ch": lax4ch},
                                              image_node=imageNode, convention=convention)
        for message in messages:
            logging.info(f"CardiacReconstruction: {message}")
        return case, messages

    @staticmethod
    def _addResultToScene(result, case, outputSegmentation, imageNode, seconds):
        """The result as nodes (segmentation, models, table, corrected image) plus a summary."""
        from CardiacReconstructionLib import mrml

        scene = slicer.mrmlScene
        if outputSegmentation is not None and not scene.IsNodePresent(outputSegmentation):
            outputSegmentation = None  # deleted while the run was going on: make a new one
        if imageNode is not None and not scene.IsNodePresent(imageNode):
            imageNode = None
        nodes = mrml.result_to_nodes(result, case, output_segmentation=outputSegmentation, image_node=imageNode,
                                     scene=scene)
        summary = mrml.summary_line(case, result, seconds, str(result.diagnostics.get("device", "cpu")))
        warnings = [str(w) for w in result.diagnostics.get("warnings", [])]
        for warning in warnings:
            logging.warning(f"CardiacReconstruction: {warning}")
        logging.info(f"CardiacReconstruction: {summary}")
        return dict(nodes, result=result, summary=summary, warnings=warnings)

    def process(self, saxNode, outputSegmentation=None, method=DEFAULT_METHOD, lax2ch=None, lax3ch=None,
                lax4ch=None, imageNode=None, convention="auto", device="auto", sliceSpacing=None, progress=None,
                cancel=None, **options):
        """Reconstruct synchronously in Slicer's interpreter (Python console, batch scripts, tests).

        Parameters
        ----------
        saxNode : vtkMRMLSegmentationNode or vtkMRMLLabelMapVolumeNode
            The SAX stack (slice axis = the volume's k axis). Never modified.
        outputSegmentation : vtkMRMLSegmentationNode, optional
            Receives the result (its segments are replaced); None creates
            '<SAX name> <method>'.
        method : str
            A registered method (see ``CardiacReconstructionLib.methods.available()``).
        lax2ch, lax3ch, lax4ch : segmentation or labelmap nodes, optional
            Long-axis views (single slices with their own pose).
        imageNode : vtkMRMLScalarVolumeNode, optional
            SAX image on the segmentation's grid; a motion-corrected copy is added.
        convention : str
            Label convention of label values: 'auto', 'canonical', 'acdc', 'ukbb' or 'mmwhs'.
        device : str
            'auto', 'cuda' or 'cpu' (learned methods; out of GPU memory falls back to the CPU).
        sliceSpacing : float, optional
            Output slice spacing in mm (default 2 mm, or the input spacing if finer).
        progress : callable(fraction, message), optional
        cancel : callable() -> bool, optional
            Return True to stop (raises CardiacReconstructionLib.Cancelled; scene unchanged).
        **options
            The method's own options, e.g. ``fit_degree=2``.

        Returns
        -------
        dict with 'segmentation', 'models', 'table', 'corrected_image' (nodes; the last is None
        without an image), 'result' (the engine's methods.Result), 'summary' (one line: time,
        device, volumes and mass), 'warnings' and 'messages' (how labels were mapped).

        Raises CardiacReconstructionLib.InputError with a message for the user on bad input.
        """
        from CardiacReconstructionLib import methods

        start = time.perf_counter()
        case, messages = self._readInputs(saxNode, outputSegmentation, lax2ch, lax3ch, lax4ch, imageNode, convention)
        result = methods.run(method, case, slice_spacing=sliceSpacing, device=device, progress=progress,
                             cancel=cancel, surfaces=True, **options)
        outputs = self._addResultToScene(result, case, outputSegmentation, imageNode, time.perf_counter() - start)
        outputs["messages"] = messages
        return outputs

    # -- background runs (what Apply uses) ------------------------------------------------------

    def startBackgroundRun(self, saxNode, outputSegmentation=None, method=DEFAULT_METHOD, lax2ch=None, lax3ch=None,
                           lax4ch=None, imageNode=None, convention="auto", device="auto", sliceSpacing=None,
                           options=None) -> BackgroundRun:
        """Read the nodes (here, so input errors show at once), write them to a temporary folder
        and start ``PythonSlicer -m CardiacReconstructionLib run ... --progress-format lines``.
        Poll ``run.worker`` (``poll()``, ``finished``) from a timer, then call
        :meth:`finishBackgroundRun`; or :meth:`cancelBackgroundRun`. Arguments as in :meth:`process`."""
        from CardiacReconstructionLib import methods, worker

        methods.get(method)  # an unknown method is an input error now, not in the worker
        case, messages = self._readInputs(saxNode, outputSegmentation, lax2ch, lax3ch, lax4ch, imageNode, convention)
        folder = slicer.util.tempDirectory("CardiacReconstruction")
        outputFolder = os.path.join(folder, "output")
        cancelFile = os.path.join(folder, "CANCEL")
        inputs = worker.write_inputs(case, os.path.join(folder, "input"))
        arguments = worker.run_arguments(inputs, outputFolder, method, device=device, slice_spacing=sliceSpacing,
                                         options=options, cancel_file=cancelFile)
        command = worker.worker_command(pythonSlicerExecutable(), arguments)
        environment = worker.worker_environment(MODULE_FOLDER, slicer.util.startupEnvironment())
        logging.info(f"CardiacReconstruction: starting {' '.join(command)}")
        process = slicer.util.launchConsoleProcess(command, updateEnvironment=environment, cwd=MODULE_FOLDER)
        return BackgroundRun(worker.WorkerProcess(process, cancelFile), case, messages, folder, outputFolder, method,
                             outputSegmentation, imageNode)

    def finishBackgroundRun(self, run: BackgroundRun):
        """Read a successfully finished run's folder and add the result to the scene (main
        thread); returns what :meth:`process` returns. The temporary folder is removed."""
        from CardiacReconstructionLib import worker

        try:
            result = worker.read_run_folder(run.outputFolder)
            outputs = self._addResultToScene(result, run.case, run.outputSegmentation, run.imageNode,
                                             time.perf_counter() - run.startTime)
        finally:
            self.discardBackgroundRun(run)
        outputs["messages"] = run.messages
        return outputs

    @staticmethod
    def cancelBackgroundRun(run: BackgroundRun) -> None:
        """Stop the worker at once (cancel file + kill); the scene is not touched. Remove the
        folder with :meth:`discardBackgroundRun` once ``run.worker.finished``."""
        run.worker.cancel()

    @staticmethod
    def discardBackgroundRun(run: BackgroundRun) -> None:
        shutil.rmtree(run.folder, ignore_errors=True)

    @staticmethod
    def waitForBackgroundRun(run: BackgroundRun, timeoutSeconds=600.0) -> int:
        """Block (keeping the application responsive) until the worker ends; its exit status."""
        deadline = time.monotonic() + timeoutSeconds
        while not run.worker.finished:
            if time.monotonic() > deadline:
                run.worker.cancel()
                raise TimeoutError(f"The reconstruction did not finish within {timeoutSeconds:.0f} s.")
            run.worker.poll()
            slicer.app.processEvents()
            time.sleep(0.05)
        run.worker.poll()
        return run.worker.returncode


#
# CardiacReconstructionTest
#

class CardiacReconstructionTest(ScriptedLoadableModuleTest):
    """Self-test (Reload & Test, CTest): every registered method on a phantom in the scene."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_EveryMethodOnPhantom()
        self.setUp()
        self.test_BackgroundRunAndCancel()

    def _phantomCase(self):
        """A seeded heart phantom, degraded with 'normal' breath-hold motion at 10 mm slices,
        with its SAX stack and 4-chamber view added to the scene as segmentations."""
        from CardiacReconstructionLib import mrml
        from CardiacReconstructionLib.simulation import cases, phantom

        heart = phantom.make_phantom(seed=0)
        case = cases.make_case(heart.truth, "normal", seed=0, slice_spacing=10.0, lax_views=("4ch",),
                               landmarks=heart.landmarks)
        saxNode = mrml.write_segmentation_node(case.sax, name="Phantom SAX")
        laxNode = mrml.write_segmentation_node(case.lax[0].labels, name="Phantom LAX 4ch")
        return case, saxNode, laxNode

    @staticmethod
    def _sceneNodeIDs():
        """IDs of the scene's nodes except the subject hierarchy (scene infrastructure, which
        the application may create on first use)."""
        scene = slicer.mrmlScene
        nodes = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        return sorted(n.GetID() for n in nodes if not n.IsA("vtkMRMLSubjectHierarchyNode"))

    def _checkOutputs(self, outputs, case, label):
        from CardiacReconstructionLib import mrml
        from CardiacReconstructionLib.evaluation import metrics

        segmentation = outputs["segmentation"].GetSegmentation()
        names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
        self.assertTrue(set(RECONSTRUCTION_SEGMENTS) <= names, f"{label}: segments {sorted(names)}")
        labels = mrml.volume_from_node(outputs["segmentation"])[0]
        for structure, dice in metrics.dice(labels, case.truth).items():
            self.assertGreater(dice, 0.7, f"{label}: Dice of label {structure} is {dice:.3f}")
        self.assertEqual(outputs["table"].GetNumberOfRows(), case.n_slices)
        self.assertTrue(outputs["models"], f"{label}: no surface models")
        for model in outputs["models"]:
            self.assertGreater(model.GetPolyData().GetNumberOfPoints(), 0, model.GetName())
        self.assertIn("Reconstructed in", outputs["summary"])

    def test_EveryMethodOnPhantom(self):
        """Logic.process with every registered method (its fast test options) on the CPU."""
        from CardiacReconstructionLib import methods, mrml

        self.delayDisplay("Building a phantom case")
        case, saxNode, laxNode = self._phantomCase()
        before = mrml.volume_from_node(saxNode)[0].array.copy()
        logic = CardiacReconstructionLogic()
        spacing = float(case.truth.spacing[2])
        for method in methods.available():
            self.delayDisplay(f"Running {method.name}")
            outputs = logic.process(saxNode, method=method.name, lax4ch=laxNode, device="cpu", sliceSpacing=spacing,
                                    **dict(method.test_options))
            self._checkOutputs(outputs, case, method.name)
        after = mrml.volume_from_node(saxNode)[0].array
        self.assertTrue((before == after).all(), "the input segmentation was modified")
        self.delayDisplay("Every method passed")

    def test_BackgroundRunAndCancel(self):
        """What Apply does: a worker process; Cancel leaves the scene as it was."""
        self.delayDisplay("Background run and cancel")
        case, saxNode, laxNode = self._phantomCase()
        logic = CardiacReconstructionLogic()
        nodesBefore = self._sceneNodeIDs()

        run = logic.startBackgroundRun(saxNode, method=DEFAULT_METHOD, lax4ch=laxNode, device="cpu")
        logic.cancelBackgroundRun(run)
        self.assertNotEqual(logic.waitForBackgroundRun(run, 120), 0)
        logic.discardBackgroundRun(run)
        self.assertEqual(self._sceneNodeIDs(), nodesBefore)
        self.assertFalse(os.path.exists(run.folder))

        run = logic.startBackgroundRun(saxNode, method=DEFAULT_METHOD, lax4ch=laxNode, device="cpu", sliceSpacing=2.0)
        status = logic.waitForBackgroundRun(run, 300)
        self.assertEqual(status, 0, "\n".join(run.worker.log))
        self.assertEqual(run.worker.progress[0], 1.0)
        outputs = logic.finishBackgroundRun(run)
        self._checkOutputs(outputs, case, "background run")
        self.assertFalse(os.path.exists(run.folder))
        self.delayDisplay("Background run passed")
