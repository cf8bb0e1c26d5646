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
Opening the module reads only the engine's method metadata: PyTorch is imported when the
Advanced section is opened or a learned method is applied, never by ``setup()``.
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
from typing import Annotated, List, Optional, Tuple, Union

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
#: Copy of worker.SEGMENTERS (the segmenters of an SAX image given without its segmentation; the
#: first is the default) with the names the widget shows; a test keeps them equal to the engine's.
SEGMENTERS = ("directseg", "deeprecon")
SEGMENTER_TITLES = {"directseg": "DirectSeg", "deeprecon": "DeepRecon"}
#: Import names of the requirements whose distribution name differs from the module name;
#: a requirement counts as installed when its module can be found (Slicer's own numpy, vtk and
#: SimpleITK are not pip distributions, so pip's view would reinstall them).
REQUIREMENT_IMPORT_NAMES = {"SimpleITK": "SimpleITK"}
#: The requirement files in Resources/, in the order they are installed (see installPlan): the
#: core, which every method needs, and the learned methods' packages, which need torch first.
CORE_REQUIREMENTS = "requirements.txt"
LEARNED_REQUIREMENTS = "requirements-learned.txt"
TORCH_REQUIREMENT = ">=2.0"
#: The parameter node's sliceSpacing meaning "the engine's default" (methods.DEFAULT_SLICE_SPACING_MM,
#: or the input's slice spacing if finer; the spin box shows 'Auto (<that> mm)').
AUTO_SLICE_SPACING = 0.0
#: Slicer's name of the binary labelmap representation of a segmentation.
BINARY_LABELMAP = "Binary labelmap"
POLL_INTERVAL_MS = 200
#: Share of the progress bar for the worker; the rest is reading the results into the scene.
WORKER_PROGRESS_SHARE = 0.9
#: Share of a run's progress for segmenting an SAX image given alone (the method has the rest).
SEGMENTATION_PROGRESS_SHARE = 0.3
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
<p><b>Inputs</b>: the SAX segmentation (segmentation node or labelmap volume; its slice axis is
the one with the clearly largest spacing, whichever of the volume's axes that is), optionally 2-,
3- and 4-chamber long-axis segmentations and the SAX image. Labels are LV blood pool, LV myocardium
and RV blood pool (optionally LA, RA, aorta, pulmonary artery); segments are recognised by name,
label values by the label convention. The SAX cine image may also come alone: it is then segmented
first (<i>Segment with</i>: DirectSeg, a fast U-Net, or DeepRecon's segmenter on its inverted
generator's images; both need PyTorch) and that segmentation is added to the scene too.
Inputs are never modified.</p>
<p><b>Methods</b>. Classical: <code>nearest</code> (nearest-neighbour upsampling),
<code>linear</code> (linear interpolation of labels), <code>shape_interp</code> (shape-based
interpolation) and <code>centroid_shape_interp</code> (slices aligned on an LV centroid fit, then
shape-based interpolation). Learned (need PyTorch; a GPU is used when available):
<code>latent_optimisation</code> (a learned 3D shape prior and per-slice shifts fitted to the
stack, after SRHeart), <code>dsl_asv</code> (DeepWHR: label-domain motion correction, then
arbitrary-scale super-resolution), <code>mask2surface</code> (Mask2Surface: MCSR-Net correction and
super-resolution, then latent diffusion of signed distance grids to smooth, watertight surfaces of the
LV myocardium, LV endo- and epicardium and RV endocardium) and <code>deeprecon</code> (DeepRecon, from the
SAX image: each slice inverted into a StyleGAN generator, intermediate slices painted from interpolated
codes and segmented; it also gives a synthetic super-resolved image). All but the first three estimate
per-slice displacements.
Each method's options appear when it is selected (expert ones under <i>Advanced</i>). Methods that
cannot run yet are greyed out with the reason; <i>Install packages for the learned methods</i> (or
Apply with such a method) installs PyTorch through the PyTorch extension first, then the rest.</p>
<p><b>Outputs</b>: a segmentation with named, coloured segments at the chosen slice spacing
(<i>Auto</i>: the engine's usual target, or the input's slice spacing if finer; the box shows it),
surface models, a table of per-slice displacements (mm along the image rows and columns; empty, with
<i>estimated</i> 0, for slices that show no heart), with an image a motion-corrected copy of it, DeepRecon's
synthetic super-resolved image, and the segmentation of an image given alone.</p>
<p><i>Check inputs</i> shows what was understood of the inputs (slice axis and order, LV-to-RV
direction, label convention, long-axis views, memory per method) without running anything.
Apply runs in the background (press it again to cancel); a run that would not fit in memory is
refused before it starts. For scripting use
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

    saxSegmentation - the SAX stack's segmentation or labelmap (required unless saxImage is given).
    lax2ch, lax3ch, lax4ch - optional long-axis segmentations or labelmaps.
    saxImage - the SAX image: on the segmentation's grid (a corrected copy is made), or alone
        (then segmented first with ``segmenter``).
    segmenter - 'directseg' or 'deeprecon': segments saxImage when no segmentation is selected.
    convention - label convention of label values ('auto' detects it).
    method - registered method name (combo box filled from the engine's registry).
    methodOptions - JSON {method: {option: value}}; edited through per-method option widgets.
    sliceSpacing - output slice spacing in mm; AUTO_SLICE_SPACING (0) leaves it to the engine.
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
    sliceSpacing: Annotated[float, WithinRange(AUTO_SLICE_SPACING, 10.0)] = AUTO_SLICE_SPACING
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    outputSegmentation: Optional[vtkMRMLSegmentationNode]
    segmenter: Annotated[str, Choice(list(SEGMENTERS))] = SEGMENTERS[0]


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
        #: method name -> (form, advanced form, {option name: (kind, editor, Option)}); the advanced
        #: form, in the Advanced section, holds the options declared with ``advanced=True``.
        self._optionForms = {}
        self._methods = {}  # method name -> engine Method, for the methods that can run here
        self._unavailable = {}  # method name -> why it cannot run here
        self._installableRequires = ()  # what the Install button installs for the greyed-out methods
        self._deviceInfoShown = False
        self._updatingGui = False
        self._timer = None
        self.segmenterComboBox = None  # built in setup(): the .ui file has no row for it
        self.segmenterLabel = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CardiacReconstruction.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CardiacReconstructionLogic()

        for container in (self.ui.methodOptionsWidget, self.ui.advancedOptionsWidget):
            optionsLayout = qt.QVBoxLayout(container)
            optionsLayout.setContentsMargins(0, 0, 0, 0)
        self._buildSegmenterRow()
        self.ui.progressBar.setVisible(False)
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._onTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.checkInputsButton.connect("clicked(bool)", self.onCheckInputsButton)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.installLearnedButton.connect("clicked(bool)", self.onInstallLearnedButton)
        self.segmenterComboBox.connect("currentIndexChanged(int)", self.onSegmenterChanged)
        # Asking PyTorch for the device imports it (seconds, and opening the module must not load
        # it): the Advanced section asks when it is first opened.
        self.ui.advancedCollapsibleButton.connect("contentsCollapsed(bool)", self._onAdvancedCollapsed)

        self._populateMethods()
        self.initializeParameterNode()

    def _buildSegmenterRow(self) -> None:
        """'Segment with:' under the SAX image (third row of the Inputs form): how an image given
        without its segmentation is segmented; shown while no segmentation is selected."""
        self.segmenterLabel = qt.QLabel(_("Segment with:"))
        self.segmenterComboBox = qt.QComboBox()
        for name in SEGMENTERS:
            self.segmenterComboBox.addItem(SEGMENTER_TITLES[name], name)
        self.segmenterComboBox.toolTip = _(
            "No SAX segmentation is selected, so the SAX image is segmented first: DirectSeg (a U-Net on every "
            "slice, fast) or DeepRecon (its segmenter on the images its generator repaints from each slice, "
            "slower). The segmentation is added to the scene. Both need PyTorch.")
        self.ui.inputsCollapsibleButton.layout().insertRow(2, self.segmenterLabel, self.segmenterComboBox)

    def onSegmenterChanged(self, index) -> None:
        name = self.segmenterComboBox.itemData(index)
        if name and not self._updatingGui and self._parameterNode is not None:
            self._parameterNode.segmenter = name

    def _updateSegmenterRow(self) -> None:
        p = self._parameterNode
        imageOnly = bool(p and p.saxSegmentation is None)
        self.segmenterLabel.setVisible(imageOnly)
        self.segmenterComboBox.setVisible(imageOnly)
        self.segmenterComboBox.enabled = bool(imageOnly and p.saxImage is not None)
        index = self.segmenterComboBox.findData(p.segmenter if p else SEGMENTERS[0])
        if index >= 0:
            self.segmenterComboBox.currentIndex = index

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
            self._updateSegmenterRow()
            self._updateSliceSpacingText()
        finally:
            self._updatingGui = False
        self._checkCanApply()

    def _updateSliceSpacingText(self) -> None:
        """Say what 'Auto' means for the selected input: the engine's default output spacing."""
        p = self._parameterNode
        spacing = self.logic.defaultSliceSpacing(p.saxSegmentation if p.saxSegmentation is not None else p.saxImage)
        self.ui.sliceSpacingSpinBox.specialValueText = (
            _("Auto") if spacing is None else _("Auto ({spacing} mm)").format(spacing=f"{spacing:.3g}"))

    def _onAdvancedCollapsed(self, collapsed) -> None:
        if not collapsed and not self._deviceInfoShown:
            self._showDeviceInfo()

    def _showDeviceInfo(self) -> None:
        """Detected device, torch version and CUDA build (imports torch)."""
        self.ui.deviceInfoLabel.text = self.logic.deviceDescription()
        self._deviceInfoShown = True

    def _checkCanApply(self) -> None:
        p = self._parameterNode
        hasInput = bool(p and (p.saxSegmentation is not None or p.saxImage is not None))
        self.ui.checkInputsButton.enabled = bool(self._run is None and hasInput)
        if self._run is not None:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the running reconstruction; the scene is left unchanged.")
            self.ui.applyButton.enabled = True
        elif hasInput:
            self.ui.applyButton.text = _("Apply")
            self.ui.applyButton.toolTip = (_("Run the reconstruction in the background.") if p.saxSegmentation
                                           else _("Segment the SAX image, then run the reconstruction, in the "
                                                  "background."))
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.text = _("Apply")
            self.ui.applyButton.toolTip = _("Select the SAX segmentation (or the SAX image alone) first.")
            self.ui.applyButton.enabled = False

    # -- methods and their options ------------------------------------------------------------------

    def _populateMethods(self) -> None:
        """Fill the method combo box from the engine's registry and build the option forms of
        every method that can run here (hidden until it is selected). Only method metadata is
        read (the registry imports no torch). Methods that cannot run here stay listed, greyed
        out and not selectable, with the reason as tooltip; the Install button offers what they
        need."""
        for form, advancedForm, _editors in self._optionForms.values():
            form.setParent(None)
            advancedForm.setParent(None)
        self._optionForms, self._methods, self._unavailable = {}, {}, {}
        combo = self.ui.methodComboBox
        combo.blockSignals(True)
        combo.clear()
        catalog = self.logic.methodCatalog()
        if catalog is None:
            combo.addItem(DEFAULT_METHOD, DEFAULT_METHOD)
            self.ui.methodDescriptionLabel.text = _(
                "Some Python packages this module needs are not installed yet; they are installed "
                "(after asking) when you press Apply.")
        else:
            usable, unusable = catalog
            for method in usable:
                self._methods[method.name] = method
                combo.addItem(f"{method.title} ({method.name})", method.name)
                combo.setItemData(combo.count - 1, method.description, qt.Qt.ToolTipRole)
                self._optionForms[method.name] = self._buildOptionForms(method)
            for method, name, reason in unusable:
                self._unavailable[name] = reason
                title = f"{method.title} ({name})" if method is not None else name
                combo.addItem(_("{title}: unavailable").format(title=title), name)
                index = combo.count - 1
                combo.setItemData(index, _("Unavailable: {reason}.").format(reason=reason), qt.Qt.ToolTipRole)
                # QStandardItem (the combo box's model) keeps an item's flags under UserRole - 1:
                # no flags = greyed out and not selectable.
                combo.setItemData(index, 0, qt.Qt.UserRole - 1)
        combo.blockSignals(False)
        self._updateInstallButton(catalog)

    def _updateInstallButton(self, catalog) -> None:
        """Show the Install button while some declared methods only lack packages (a method whose
        module failed to import cannot be fixed by installing)."""
        unusable = catalog[1] if catalog is not None else []
        self._installableRequires = tuple(sorted({package for method, _name, _reason in unusable
                                                  if method is not None for package in method.requires}))
        button = self.ui.installLearnedButton
        button.setVisible(bool(self._installableRequires))
        reasons = [f"{name}: {reason}" for method, name, reason in unusable if method is not None]
        button.toolTip = _("Installs PyTorch through the PyTorch extension first, then the other Python packages "
                           "of these methods:") + "\n" + "\n".join(reasons)

    def _buildOptionForms(self, method):
        """Two QFormLayouts with one editor per methods.Option (spin box, combo box, check box or
        line edit, as worker.option_widget_kind says): the options a user may want to change,
        under the method, and the expert ones (``advanced=True``) in the Advanced section. Edits
        go to the parameter node."""
        from CardiacReconstructionLib import worker

        form, advancedForm = qt.QWidget(), qt.QWidget()
        layouts = {False: qt.QFormLayout(form), True: qt.QFormLayout(advancedForm)}
        for layout in layouts.values():
            layout.setContentsMargins(0, 0, 0, 0)
        if any(option.advanced for option in method.options):
            heading = qt.QLabel(_("Expert options of {title}:").format(title=method.title))
            heading.wordWrap = True
            layouts[True].addRow(heading)
        editors = {}
        for option in method.options:
            kind = worker.option_widget_kind(option)
            editor = self._createOptionEditor(kind, option, method.name)
            editor.toolTip = option.help
            layouts[bool(option.advanced)].addRow(option.name.replace("_", " ").capitalize() + ":", editor)
            editors[option.name] = (kind, editor, option)
        for widget, container in ((form, self.ui.methodOptionsWidget), (advancedForm, self.ui.advancedOptionsWidget)):
            widget.setVisible(False)
            container.layout().addWidget(widget)
        return form, advancedForm, editors

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
        for name, (kind, editor, option) in self._optionForms[methodName][2].items():
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
        for methodName, (form, advancedForm, _editors) in self._optionForms.items():
            form.setVisible(methodName == name)
            advancedForm.setVisible(methodName == name)
        if name in self._methods:
            self.ui.methodDescriptionLabel.text = self._methods[name].description
        elif name in self._unavailable:  # e.g. a saved scene's method; Apply offers to install
            self.ui.methodDescriptionLabel.text = _("This method cannot run here yet: {reason}.").format(
                reason=self._unavailable[name])

    def onInstallLearnedButton(self) -> None:
        """Install what the greyed-out methods need (torch first, see installPlan), then list the
        methods again."""
        try:
            installed = self.logic.ensureDependencies(requires=self._installableRequires)
        except Exception as exc:
            showError(exc, _("Could not install the packages."))
            return
        if installed:
            self._refreshMethods()
            self.ui.statusLabel.text = _("The Python packages are installed.")

    def _refreshMethods(self) -> None:
        """List the methods again when an installation changed which ones can run."""
        catalog = self.logic.methodCatalog()
        usable = {m.name for m in catalog[0]} if catalog is not None else set()
        if catalog is None or usable != set(self._methods):
            self._populateMethods()
            self._onParameterNodeModified()
        if self._deviceInfoShown:  # torch may just have been installed
            self._showDeviceInfo()

    # -- Check inputs, Apply, progress, Cancel --------------------------------------------------

    def onCheckInputsButton(self) -> None:
        """What ``cardiac-recon check`` prints, for the nodes selected here."""
        p = self._parameterNode
        try:
            if not self.logic.ensureDependencies(requires=()):
                return
            with slicer.util.WaitCursor():
                text = self.logic.checkInputs(p.saxSegmentation, lax2ch=p.lax2ch, lax3ch=p.lax3ch, lax4ch=p.lax4ch,
                                              imageNode=p.saxImage, convention=p.convention,
                                              sliceSpacing=None if p.sliceSpacing <= AUTO_SLICE_SPACING
                                              else p.sliceSpacing,
                                              segmenter=p.segmenter if p.saxSegmentation is None else None)
        except Exception as exc:
            showError(exc, _("Could not read the inputs."))
            return
        slicer.util.infoDisplay(text, windowTitle=_("Cardiac Reconstruction: inputs"))

    def onApplyButton(self) -> None:
        """Apply starts a background run; while one runs the same button cancels it."""
        if self._run is not None:
            self.onCancel()
            return
        p = self._parameterNode
        try:
            if not self.logic.ensureDependencies(p.method, segment=p.saxSegmentation is None):
                return
            self._refreshMethods()  # packages may just have been installed
            with slicer.util.WaitCursor():
                from CardiacReconstructionLib import worker

                run = self.logic.startBackgroundRun(
                    p.saxSegmentation, outputSegmentation=p.outputSegmentation, method=p.method,
                    lax2ch=p.lax2ch, lax3ch=p.lax3ch, lax4ch=p.lax4ch, imageNode=p.saxImage,
                    convention=p.convention, device=p.device,
                    sliceSpacing=None if p.sliceSpacing <= AUTO_SLICE_SPACING else p.sliceSpacing,
                    options=worker.method_options(p.methodOptions, p.method),
                    segmenter=p.segmenter if p.saxSegmentation is None else None)
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
    errors = sys.modules.get(ENGINE_PACKAGE + ".core.errors")
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
# and the widget's helpers that need no engine
#

def requirementsPath(name=CORE_REQUIREMENTS) -> str:
    """Path of a requirement file in Resources/ (CORE_REQUIREMENTS or LEARNED_REQUIREMENTS)."""
    return os.path.join(MODULE_FOLDER, "Resources", name)


def readRequirements(path=None) -> List[str]:
    """Requirement lines of a requirement file (default: the core, Resources/requirements.txt)."""
    with open(path or requirementsPath()) as f:
        return [line.strip() for line in f if line.strip() and not line.strip().startswith("#")]


def requirementImportName(requirement) -> str:
    distribution = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
    return REQUIREMENT_IMPORT_NAMES.get(distribution, distribution.lower().replace("-", "_"))


def missingRequirements(requirements=None) -> List[str]:
    """The requirements (default: the core file's) whose module cannot be imported."""
    importlib.invalidate_caches()
    return [r for r in (readRequirements() if requirements is None else requirements)
            if importlib.util.find_spec(requirementImportName(r)) is None]


def installPlan(methodRequires, missingCore, torchMissing, learnedPackages,
                missingLearned) -> List[Tuple[str, List[str]]]:
    """The ordered installation steps that let a method run, as ``(step, requirements)`` pairs.

    Steps: ``"core"`` (pip: the missing lines of Resources/requirements.txt, which every method
    needs), ``"torch"`` (the PyTorch extension installs torch, choosing the CUDA or CPU build for
    this computer), ``"learned"`` (pip: the missing lines of Resources/requirements-learned.txt)
    and ``"replan"`` (plan again: only after "core", while the engine could not be imported to
    say what the method needs).

    The order is the point. MONAI declares torch as a dependency: pip-installed while torch is
    missing, pip would fetch a torch wheel from the package index (often not the CUDA
    build this computer needs) behind the PyTorch extension's back. So a "learned" step always
    comes after torch is importable, and pip is never asked for torch.

    Args:
        methodRequires: import names the method needs beyond the core (``Method.requires``, e.g.
            ``("torch", "monai")``); None while the engine cannot be imported.
        missingCore: core requirement lines whose module cannot be found.
        torchMissing: whether torch cannot be found.
        learnedPackages: import names of the learned requirement lines (installed or not).
        missingLearned: learned requirement lines whose module cannot be found.
    """
    steps = []
    if missingCore:
        steps.append(("core", list(missingCore)))
    if methodRequires is None:
        if missingCore:
            steps.append(("replan", []))
        return steps
    # The learned file is installed as a whole for a method that needs any of it (einops is
    # MONAI's own import, not in a method's requires).
    learned = list(missingLearned) if set(methodRequires) & set(learnedPackages) else []
    if torchMissing and ("torch" in methodRequires or learned):
        steps.append(("torch", []))
    if learned:
        steps.append(("learned", learned))
    return steps


def writeTorchConstraints(folder) -> Optional[str]:
    """Write a pip constraints file pinning the installed torch (``torch==<its version>``) into
    ``folder`` and return its path; None without torch. The learned packages are installed under
    it, so that pip can never replace the build the PyTorch extension chose: a package that wants
    another torch fails to install, with pip's message, instead."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pinned = f"torch=={version('torch')}"
    except PackageNotFoundError:
        return None
    path = os.path.join(folder, "torch-constraints.txt")
    with open(path, "w") as f:
        f.write(pinned + "\n")
    return path


def refreshMethodRegistry() -> None:
    """Let the engine's method registry look for packages again after an installation (it
    records once per process which methods' packages are missing)."""
    registry = sys.modules.get(ENGINE_PACKAGE + ".methods")
    if registry is not None:
        registry.refresh()


def sliceGrid(node) -> Optional[Tuple[int, float]]:
    """(number of slices, slice spacing in mm) along the k axis of a SAX labelmap volume or of a
    segmentation's binary labelmap, read from the node without exporting it (for the 'Auto'
    caption of the slice spacing); None where there is none (no node, closed surfaces only)."""
    if node is None:
        return None
    if node.IsA("vtkMRMLSegmentationNode"):
        segmentation = node.GetSegmentation()
        if segmentation.GetNumberOfSegments() == 0:
            return None
        image = segmentation.GetNthSegment(0).GetRepresentation(BINARY_LABELMAP)
        spacing = image.GetSpacing() if image is not None else None
    else:
        image = node.GetImageData()
        spacing = node.GetSpacing()
    if image is None or image.GetDimensions()[2] < 1 or not spacing[2] > 0:
        return None
    return int(image.GetDimensions()[2]), float(spacing[2])


def askTorchBuild() -> str:
    """Ask how PyTorch is to be installed: 'automatic' (the PyTorch extension picks the build for
    this computer's NVIDIA driver, or a CPU build), 'choose' (the user picks the build in the
    PyTorch Utils module) or '' (not now)."""
    box = qt.QMessageBox(slicer.util.mainWindow())
    box.setWindowTitle(_("Install PyTorch"))
    box.setIcon(qt.QMessageBox.Question)
    box.setText(_("This method needs PyTorch, which the PyTorch extension installs (a download of up to a few GB). "
                  "Its other Python packages are installed after it."))
    box.setInformativeText(_("'Install' lets the PyTorch extension pick the build for this computer's NVIDIA driver "
                             "(or a CPU build). 'Choose build...' opens the PyTorch Utils module, where you can pick "
                             "one; press Apply again afterwards."))
    automatic = box.addButton(_("Install"), qt.QMessageBox.AcceptRole)
    choose = box.addButton(_("Choose build..."), qt.QMessageBox.ActionRole)
    box.addButton(qt.QMessageBox.Cancel)
    box.setDefaultButton(automatic)
    box.exec_()
    clicked = box.clickedButton()
    return "automatic" if clicked == automatic else "choose" if clicked == choose else ""


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

    def __init__(self, worker, case, messages, folder, outputFolder, method, outputSegmentation, imageNode,
                 imageStack=None):
        self.worker = worker  # CardiacReconstructionLib.worker.WorkerProcess
        self.case = case  # the engine case read from the nodes when the run started (None: image alone)
        #: For an image given alone: (image, axis order, long-axis views, name, segmenter); the case
        #: is made when the worker's segmentation of the image is read back.
        self.imageStack = imageStack
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
    def methodCatalog():
        """``(usable methods, [(method or None, name, reason) of the others])`` from the engine's
        registry, or None while the engine's own packages are not installed. Metadata only: the
        registry imports no torch (it looks packages up without importing them)."""
        try:
            from CardiacReconstructionLib import methods
        except ImportError as exc:
            logging.warning(f"CardiacReconstruction: the engine cannot be imported yet ({exc}).")
            return None
        return methods.available(), [entry for entry in methods.catalog() if entry[2]]

    def methodRequires(self, method) -> Optional[Tuple[str, ...]]:
        """Import names ``method`` needs beyond the core packages (its ``Method.requires``); ()
        for a name the registry does not know (running it reports that); None while the engine
        cannot be imported."""
        catalog = self.methodCatalog()
        if catalog is None:
            return None
        usable, unusable = catalog
        for entry in list(usable) + [m for m, _name, _reason in unusable if m is not None]:
            if entry.name == method:
                return tuple(entry.requires)
        return ()

    @staticmethod
    def segmentationRequires() -> Optional[Tuple[str, ...]]:
        """Import names that segmenting an SAX image given alone needs (DeepRecon's segmenters);
        None while the engine cannot be imported. Metadata only: no torch is imported."""
        try:
            from CardiacReconstructionLib.methods import deeprecon
        except Exception as exc:  # the engine, or the DeepRecon module, cannot be imported here
            logging.warning(f"CardiacReconstruction: the segmenters cannot be imported ({exc}).")
            return None
        return tuple(deeprecon.REQUIRES)

    @staticmethod
    def defaultSliceSpacing(saxNode=None) -> Optional[float]:
        """The output slice spacing the engine picks when none is given (``methods.output_geometry``:
        methods.DEFAULT_SLICE_SPACING_MM, or the input's slice spacing if finer) for ``saxNode``'s
        grid (see :func:`sliceGrid`); the plain default without a readable grid; None while the
        engine cannot be imported."""
        try:
            from CardiacReconstructionLib import methods
            from CardiacReconstructionLib.core.geometry import Geometry
        except ImportError:
            return None
        grid = sliceGrid(saxNode)
        if grid is None:
            return float(methods.DEFAULT_SLICE_SPACING_MM)
        count, spacing = grid
        stack = Geometry((count, 1, 1), [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, spacing, 0], [0, 0, 0, 1]])
        return float(methods.output_geometry(stack).spacing[2])

    @staticmethod
    def deviceDescription() -> str:
        """Detected device, torch version and CUDA build (engine's device.describe; imports torch,
        so the widget asks only when its Advanced section is opened)."""
        try:
            from CardiacReconstructionLib.core import device
        except ImportError:
            return _("Unknown until the module's Python packages are installed (press Apply).")
        return device.describe()

    def ensureDependencies(self, method=None, askConfirmation=True, requires=None, segment=False) -> bool:
        """Make sure ``method`` can run here, installing what is missing after asking, in the
        order :func:`installPlan` gives: the core packages (Resources/requirements.txt), then
        torch through the PyTorch extension, then the learned methods' packages
        (Resources/requirements-learned.txt). ``requires``: install for these import names
        instead of ``method``'s (the widget's Install button). ``segment``: an SAX image given
        alone is segmented first, so the segmenters' packages are needed too. Never called at
        import time. Returns False (after telling the user why) when something is still missing."""
        if requires is None:
            requires = self.methodRequires(method)
            if segment and requires is not None:
                segmentation = self.segmentationRequires()
                requires = None if segmentation is None else tuple(sorted(set(requires) | set(segmentation)))
        core = readRequirements(requirementsPath(CORE_REQUIREMENTS))
        learned = readRequirements(requirementsPath(LEARNED_REQUIREMENTS))
        plan = installPlan(requires, missingRequirements(core), bool(missingRequirements(["torch"])),
                           [requirementImportName(r) for r in learned], missingRequirements(learned))
        for step, requirements in plan:
            if step == "replan":  # the core packages are in: the registry can now say what the method needs
                return self.ensureDependencies(method, askConfirmation, segment=segment)
            if step == "torch":
                installed = self._ensureTorch(askConfirmation)
            else:  # pip; the learned packages with torch pinned (installPlan put torch first)
                constraints = (writeTorchConstraints(slicer.util.tempDirectory("CardiacReconstruction"))
                               if step == "learned" else None)
                installed = self._installRequirements(requirements, askConfirmation, constraints)
            refreshMethodRegistry()
            if not installed:
                return False
        return True

    @staticmethod
    def _installRequirements(missing, askConfirmation=True, constraints=None) -> bool:
        """pip_ensure on Slicer 5.12+ (it asks and reports itself), else pip_install after a
        confirmation; skipped in testing mode. ``constraints``: a pip constraints file."""
        if slicer.app.testingEnabled():  # tests must not change the Python environment
            logging.error(f"CardiacReconstruction: missing Python packages {missing} (not installed in testing mode).")
            return False
        try:
            import slicer.packaging as packaging  # Slicer 5.12 and later
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            try:  # pip_ensure takes Requirement objects (it reads their name and marker)
                packaging.pip_ensure([packaging.Requirement(r) for r in missing], constraints=constraints,
                                     prompt_install=askConfirmation, requester="Cardiac Reconstruction")
            except RuntimeError:  # the user declined
                return False
        else:
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("Cardiac Reconstruction needs these Python packages, which will now be downloaded and "
                      "installed (this can take a few minutes):") + "\n\n" + "\n".join(missing),
                    windowTitle=_("Install Python packages")):
                return False
            with slicer.util.WaitCursor():
                slicer.util.pip_install(list(missing) + (["-c", constraints] if constraints else []))
        still = missingRequirements(missing)
        if still:
            slicer.util.errorDisplay(_("These Python packages could not be installed: ") + ", ".join(still)
                                     + _(". Restart Slicer and try again, or install them from the Python console "
                                         "with slicer.util.pip_install."), windowTitle=_("Cardiac Reconstruction"))
            return False
        return True

    @staticmethod
    def _ensureTorch(askConfirmation=True) -> bool:
        """torch through the PyTorch extension (PyTorchUtils), which picks the build that fits this
        computer (the CUDA version its NVIDIA driver supports, or CPU only); pip is never asked for
        torch. The user may pick the build in the PyTorch Utils module instead."""
        if not missingRequirements(["torch"]):
            return True
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
        if askConfirmation:
            choice = askTorchBuild()
            if choice == "choose":
                slicer.util.selectModule("PyTorchUtils")
            if choice != "automatic":
                return False
        installed = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                                  torchVersionRequirement=TORCH_REQUIREMENT)
        if installed is None:  # the installation failed
            slicer.util.errorDisplay(_("PyTorch was not installed, so this method cannot run. Install it from the "
                                       "PyTorch Utils module and press Apply again."),
                                     windowTitle=_("Cardiac Reconstruction"))
            return False
        return True

    # -- nodes <-> engine -------------------------------------------------------------------------

    def checkInputs(self, saxNode, lax2ch=None, lax3ch=None, lax4ch=None, imageNode=None, convention="auto",
                    sliceSpacing=None, segmenter=None) -> str:
        """The report of ``cardiac-recon check`` for these nodes (nothing runs, nothing changes).
        Without ``saxNode``, what was understood of the SAX image that would be segmented first
        (with ``segmenter``; it is not segmented here)."""
        from CardiacReconstructionLib.check import report

        if saxNode is None:
            image, order, _views, messages = self._readImageInputs(imageNode, None, lax2ch, lax3ch, lax4ch, convention)
            return "\n".join(self._imageOnlyReport(imageNode.GetName(), image, order, segmenter or SEGMENTERS[0])
                             + messages)
        case, messages = self._readInputs(saxNode, None, lax2ch, lax3ch, lax4ch, imageNode, convention)
        return "\n".join(report(case, messages, sliceSpacing))

    @staticmethod
    def _imageOnlyReport(name, image, order, segmenter) -> List[str]:
        axis = "ijk"[order[2]]
        si, sj, sk = (float(v) for v in image.spacing)
        return [f"SAX image '{name}': {image.shape[0]} slices along the volume's {axis} axis, {sk:.3g} mm apart; "
                f"{image.shape[2]} x {image.shape[1]} voxels of {si:.3g} x {sj:.3g} mm in-plane.",
                f"No SAX segmentation is selected: Apply segments the image with "
                f"{SEGMENTER_TITLES.get(segmenter, segmenter)} first, adds that segmentation to the scene and runs "
                "the method on it."]

    @staticmethod
    def _readImageInputs(imageNode, outputSegmentation, lax2ch, lax3ch, lax4ch, convention):
        """An SAX image given alone (slices along k), its axis order, the long-axis views and the
        messages for the user (nodes untouched)."""
        from CardiacReconstructionLib import mrml
        from CardiacReconstructionLib.core.errors import InputError

        if imageNode is None:
            raise InputError("Select the SAX segmentation, or the SAX image alone to segment it first.")
        if outputSegmentation is not None and outputSegmentation in (lax2ch, lax3ch, lax4ch):
            raise InputError(f"The output segmentation '{outputSegmentation.GetName()}' is also an input; choose "
                             "another output (or 'Create new segmentation'): inputs are never modified.")
        image, order, messages = mrml.image_stack_from_node(imageNode)
        views, laxMessages = mrml.lax_views_from_nodes({"2ch": lax2ch, "3ch": lax3ch, "4ch": lax4ch}, convention)
        for message in messages + laxMessages:
            logging.info(f"CardiacReconstruction: {message}")
        return image, order, views, messages + laxMessages

    @staticmethod
    def _segmentImage(image, segmenter, device="auto", progress=None, cancel=None):
        """Canonical labels of an SAX image given alone (``methods.deeprecon.segment_image``), in
        Slicer's interpreter; progress takes the first SEGMENTATION_PROGRESS_SHARE."""
        from CardiacReconstructionLib.core.device import resolve_device
        from CardiacReconstructionLib.core.errors import Cancelled
        from CardiacReconstructionLib.methods import DEFAULT_THREADS, deeprecon, torch_threads

        def report(fraction):
            if cancel is not None and cancel():
                raise Cancelled("Cancelled by the user.")
            if progress is not None:
                progress(SEGMENTATION_PROGRESS_SHARE * fraction,
                         _("segmenting the image ({name})").format(name=SEGMENTER_TITLES.get(segmenter, segmenter)))

        device = resolve_device(device)
        report(0.0)
        with torch_threads(DEFAULT_THREADS, device):
            labels = deeprecon.segment_image(image, segmenter, device=device, progress=report)
        report(1.0)
        return labels

    @staticmethod
    def _readInputs(saxNode, outputSegmentation, lax2ch, lax3ch, lax4ch, imageNode, convention):
        """The engine case of the input nodes and the label-mapping messages (nodes untouched)."""
        from CardiacReconstructionLib import mrml
        from CardiacReconstructionLib.core.errors import InputError

        if saxNode is None:
            raise InputError("Select the SAX segmentation, or the SAX image alone to segment it first.")
        if outputSegmentation is not None and outputSegmentation in (saxNode, lax2ch, lax3ch, lax4ch):
            raise InputError(f"The output segmentation '{outputSegmentation.GetName()}' is also an input; choose "
                             "another output (or 'Create new segmentation'): inputs are never modified.")
        case, messages = mrml.case_from_nodes(saxNode, {"2ch": lax2ch, "3ch": lax3ch, "4ch": lax4ch},
                                              image_node=imageNode, convention=convention)
        for message in messages:
            logging.info(f"CardiacReconstruction: {message}")
        return case, messages

    @staticmethod
    def _addResultToScene(result, case, outputSegmentation, imageNode, seconds, inputSegmentation=False):
        """The result as nodes (segmentation, models, table, corrected image, synthetic image and,
        with ``inputSegmentation``, the segmentation an image given alone was segmented into)
        plus a summary."""
        from CardiacReconstructionLib import mrml

        scene = slicer.mrmlScene
        if outputSegmentation is not None and not scene.IsNodePresent(outputSegmentation):
            outputSegmentation = None  # deleted while the run was going on: make a new one
        if imageNode is not None and not scene.IsNodePresent(imageNode):
            imageNode = None
        nodes = mrml.result_to_nodes(result, case, output_segmentation=outputSegmentation, image_node=imageNode,
                                     scene=scene, input_segmentation=inputSegmentation)
        summary = mrml.summary_line(case, result, seconds, str(result.diagnostics.get("device", "cpu")))
        warnings = [str(w) for w in result.diagnostics.get("warnings", [])]
        for warning in warnings:
            logging.warning(f"CardiacReconstruction: {warning}")
        logging.info(f"CardiacReconstruction: {summary}")
        return dict(nodes, result=result, summary=summary, warnings=warnings)

    def process(self, saxNode, outputSegmentation=None, method=DEFAULT_METHOD, lax2ch=None, lax3ch=None,
                lax4ch=None, imageNode=None, convention="auto", device="auto", sliceSpacing=None, progress=None,
                cancel=None, segmenter=None, **options):
        """Reconstruct synchronously in Slicer's interpreter (Python console, batch scripts, tests).

        Parameters
        ----------
        saxNode : vtkMRMLSegmentationNode or vtkMRMLLabelMapVolumeNode, or None
            The SAX stack (its slice axis: the volume axis with the clearly largest spacing). Never
            modified. None with ``imageNode``: the image is segmented first (``segmenter``).
        outputSegmentation : vtkMRMLSegmentationNode, optional
            Receives the result (its segments are replaced); None creates
            '<SAX name> <method>'.
        method : str
            A registered method (see ``CardiacReconstructionLib.methods.available()``).
        lax2ch, lax3ch, lax4ch : segmentation or labelmap nodes, optional
            Long-axis views (single slices with their own pose).
        imageNode : vtkMRMLScalarVolumeNode, optional
            SAX image on the segmentation's grid, or alone; a motion-corrected copy is added.
            Image-domain methods (``deeprecon``) need it.
        convention : str
            Label convention of label values: 'auto', 'canonical', 'acdc', 'ukbb' or 'mmwhs'.
        device : str
            'auto', 'cuda' or 'cpu' (learned methods; out of GPU memory falls back to the CPU).
        sliceSpacing : float, optional
            Output slice spacing in mm; None: the engine's default (``methods.DEFAULT_SLICE_SPACING_MM``,
            or the input's slice spacing if finer).
        progress : callable(fraction, message), optional
        cancel : callable() -> bool, optional
            Return True to stop (raises CardiacReconstructionLib.Cancelled; scene unchanged).
        segmenter : str, optional
            How an image given without ``saxNode`` is segmented: 'directseg' (default) or
            'deeprecon'. Only with an image alone.
        **options
            The method's own options, e.g. ``fit_degree=2``.

        Returns
        -------
        dict with 'segmentation', 'models', 'table', 'corrected_image' (nodes; the last is None
        without an image), 'image' (the synthetic image volume of a method that makes one, e.g.
        '<image> DeepRecon image', else None), 'input_segmentation' (the segmentation of an image
        given alone, else None), 'result' (the engine's methods.Result), 'summary' (one line: time,
        device, volumes and mass), 'warnings' and 'messages' (how labels were mapped).

        Raises CardiacReconstructionLib.InputError with a message for the user on bad input.
        """
        from CardiacReconstructionLib import methods, mrml

        start = time.perf_counter()
        runProgress = progress
        if saxNode is None and imageNode is not None:
            methods.get(method)  # an unknown method is refused before the segmentation runs
            segmenter = segmenter or SEGMENTERS[0]
            image, order, views, messages = self._readImageInputs(imageNode, outputSegmentation, lax2ch, lax3ch,
                                                                  lax4ch, convention)
            labels = self._segmentImage(image, segmenter, device, progress, cancel)
            case = mrml.segmented_case(labels, image, order, imageNode.GetName(), views, segmenter)
            if progress is not None:
                def runProgress(fraction, message=""):
                    progress(SEGMENTATION_PROGRESS_SHARE + (1 - SEGMENTATION_PROGRESS_SHARE) * fraction, message)
        else:
            self._refuseSegmenterWithSegmentation(segmenter)
            case, messages = self._readInputs(saxNode, outputSegmentation, lax2ch, lax3ch, lax4ch, imageNode,
                                              convention)
        result = methods.run(method, case, slice_spacing=sliceSpacing, device=device, progress=runProgress,
                             cancel=cancel, surfaces=True, **options)
        outputs = self._addResultToScene(result, case, outputSegmentation, imageNode, time.perf_counter() - start,
                                         inputSegmentation=saxNode is None)
        outputs["messages"] = messages
        return outputs

    @staticmethod
    def _refuseSegmenterWithSegmentation(segmenter) -> None:
        from CardiacReconstructionLib.core.errors import InputError

        if segmenter is not None:
            raise InputError("A segmenter segments an SAX image given without its segmentation; a segmentation is "
                             "selected, so it is used: leave the segmenter out.")

    # -- background runs (what Apply uses) ------------------------------------------------------

    def startBackgroundRun(self, saxNode, outputSegmentation=None, method=DEFAULT_METHOD, lax2ch=None, lax3ch=None,
                           lax4ch=None, imageNode=None, convention="auto", device="auto", sliceSpacing=None,
                           options=None, segmenter=None) -> BackgroundRun:
        """Read the nodes (here, so input errors show at once), write them to a temporary folder
        and start ``PythonSlicer -m CardiacReconstructionLib run ... --progress-format lines``.
        Poll ``run.worker`` (``poll()``, ``finished``) from a timer, then call
        :meth:`finishBackgroundRun`; or :meth:`cancelBackgroundRun`. Arguments as in :meth:`process`;
        an image given alone (no ``saxNode``) is segmented by the worker first."""
        from CardiacReconstructionLib import methods, worker

        methods.get(method)  # an unknown method is an input error now, not in the worker
        case, imageStack = None, None
        if saxNode is None and imageNode is not None:
            segmenter = segmenter or SEGMENTERS[0]
            image, order, views, messages = self._readImageInputs(imageNode, outputSegmentation, lax2ch, lax3ch,
                                                                  lax4ch, convention)
            imageStack = (image, order, views, imageNode.GetName(), segmenter)
        else:
            self._refuseSegmenterWithSegmentation(segmenter)
            case, messages = self._readInputs(saxNode, outputSegmentation, lax2ch, lax3ch, lax4ch, imageNode,
                                              convention)
        folder = slicer.util.tempDirectory("CardiacReconstruction")
        outputFolder = os.path.join(folder, "output")
        cancelFile = os.path.join(folder, "CANCEL")
        if case is None:
            inputs = worker.write_image_inputs(image, os.path.join(folder, "input"), views, segmenter)
        else:
            inputs = worker.write_inputs(case, os.path.join(folder, "input"))
        arguments = worker.run_arguments(inputs, outputFolder, method, device=device, slice_spacing=sliceSpacing,
                                         options=options, cancel_file=cancelFile)
        command = worker.worker_command(pythonSlicerExecutable(), arguments)
        environment = worker.worker_environment(MODULE_FOLDER, slicer.util.startupEnvironment())
        logging.info(f"CardiacReconstruction: starting {' '.join(command)}")
        process = slicer.util.launchConsoleProcess(command, updateEnvironment=environment, cwd=MODULE_FOLDER)
        return BackgroundRun(worker.WorkerProcess(process, cancelFile), case, messages, folder, outputFolder, method,
                             outputSegmentation, imageNode, imageStack)

    def finishBackgroundRun(self, run: BackgroundRun):
        """Read a successfully finished run's folder and add the result to the scene (main
        thread); returns what :meth:`process` returns. The temporary folder is removed."""
        from CardiacReconstructionLib import mrml, worker

        try:
            result = worker.read_run_folder(run.outputFolder)
            case = run.case
            if case is None:  # an image given alone: the worker segmented it
                image, order, views, name, segmenter = run.imageStack
                labels = worker.read_input_segmentation(run.outputFolder)
                if labels is None:
                    raise RuntimeError(f"The run wrote no segmentation of the image ({run.outputFolder}).")
                case = mrml.segmented_case(labels, image, order, name, views, segmenter)
            outputs = self._addResultToScene(result, case, run.outputSegmentation, run.imageNode,
                                             time.perf_counter() - run.startTime, inputSegmentation=run.case is None)
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
        self.test_WidgetListsEveryMethod()  # first: the other tests import torch in this process
        self.setUp()
        self.test_EveryMethodOnPhantom()
        self.setUp()
        self.test_BackgroundRunAndCancel()
        self.setUp()
        self.test_ImageAlone()

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
    def _phantomImageNode(case):
        """A synthetic bSSFP-like cine of the phantom's SAX stack (simulation.mr_render) on its grid,
        as a scalar volume: the image the image-domain methods (deeprecon) need."""
        from CardiacReconstructionLib.simulation.mr_render import render_cine

        image = render_cine(case.sax, seed=0)
        return slicer.util.addVolumeFromArray(image.array, image.ijk_to_ras, "Phantom SAX image")

    @staticmethod
    def _segmentersInstalled() -> bool:
        """Whether the segmenters of an image given alone can run here (torch, MONAI and DeepRecon's
        DirectSeg weights)."""
        from CardiacReconstructionLib.methods import deeprecon
        from CardiacReconstructionLib.networks import weights

        missing = [name for name in deeprecon.REQUIRES if importlib.util.find_spec(name) is None]
        return not missing and deeprecon.DIRECTSEG_WEIGHTS in weights.manifest()

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

    def test_WidgetListsEveryMethod(self):
        """The widget lists every declared method (those that cannot run here greyed out, with
        the reason), folds expert options into the Advanced section, says what 'Auto' slice
        spacing means for the input and asks PyTorch only when the Advanced section opens."""
        from CardiacReconstructionLib import methods

        torchBefore = "torch" in sys.modules  # Slicer or another module may have imported it
        widget = slicer.util.getModuleWidget("CardiacReconstruction")
        widget.initializeParameterNode()  # setUp's scene close disconnected it
        widget._populateMethods()
        if not torchBefore:
            self.assertNotIn("torch", sys.modules, "listing the methods imported torch")
        combo = widget.ui.methodComboBox
        names = [combo.itemData(i) for i in range(combo.count)]
        self.assertEqual(sorted(names), sorted(name for _method, name, _reason in methods.catalog()))
        reasons = dict(methods.unavailable())
        for index, name in enumerate(names):
            flags = combo.itemData(index, qt.Qt.UserRole - 1)  # QStandardItem's flags role
            if name in reasons:
                self.assertEqual(flags, 0, f"{name} is unavailable but selectable")
                self.assertIn(reasons[name], combo.itemData(index, qt.Qt.ToolTipRole))
            else:
                self.assertNotEqual(flags, 0, f"{name} is greyed out")
        for method in methods.available():
            form, advancedForm, editors = widget._optionForms[method.name]
            for option in method.options:
                where = advancedForm if option.advanced else form
                self.assertTrue(where.isAncestorOf(editors[option.name][1]), f"{method.name}.{option.name}")

        case, saxNode, _laxNode = self._phantomCase()
        widget._parameterNode.saxSegmentation = None  # no segmentation: 'Segment with' is offered
        self.assertFalse(widget.segmenterComboBox.isHidden(), "'Segment with' is hidden without a segmentation")
        widget._parameterNode.saxSegmentation = saxNode
        self.assertTrue(widget.segmenterComboBox.isHidden(), "'Segment with' is shown beside a segmentation")
        spacing = CardiacReconstructionLogic.defaultSliceSpacing(saxNode)
        self.assertAlmostEqual(spacing, methods.output_geometry(case.sax.geometry).spacing[2], places=6)
        self.assertIn(f"{spacing:.3g}", widget.ui.sliceSpacingSpinBox.specialValueText)

        widget.ui.advancedCollapsibleButton.collapsed = False
        self.assertEqual(widget.ui.deviceInfoLabel.text, CardiacReconstructionLogic.deviceDescription())
        widget.ui.advancedCollapsibleButton.collapsed = True
        self.delayDisplay("The widget lists every method")

    def test_EveryMethodOnPhantom(self):
        """Logic.process with every registered method (its fast test options) on the CPU."""
        from CardiacReconstructionLib import methods, mrml

        self.delayDisplay("Building a phantom case")
        case, saxNode, laxNode = self._phantomCase()
        before = mrml.volume_from_node(saxNode)[0].array.copy()
        logic = CardiacReconstructionLogic()
        report = logic.checkInputs(saxNode, lax4ch=laxNode)
        self.assertIn(f"{case.n_slices} slices along the file's k axis", report)
        self.assertIn("4ch view: its plane is", report)
        spacing = float(case.truth.spacing[2])
        imageNode = self._phantomImageNode(case)  # every method gets the image: deeprecon needs it
        for method in methods.available():
            self.delayDisplay(f"Running {method.name}")
            outputs = logic.process(saxNode, method=method.name, lax4ch=laxNode, imageNode=imageNode, device="cpu",
                                    sliceSpacing=spacing, **dict(method.test_options))
            self._checkOutputs(outputs, case, method.name)
            self.assertIsNotNone(outputs["corrected_image"], method.name)
            self.assertIsNone(outputs["input_segmentation"], method.name)
            if outputs["result"].image is not None:  # the synthetic image of an image-domain method
                self.assertEqual(tuple(slicer.util.arrayFromVolume(outputs["image"]).shape),
                                 outputs["result"].labels.shape, method.name)
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

    def test_ImageAlone(self):
        """The SAX image without its segmentation: segmented (DirectSeg) first, in process and in a
        worker; that segmentation joins the result in the scene."""
        from CardiacReconstructionLib import mrml

        if not self._segmentersInstalled():
            logging.warning("CardiacReconstruction self-test: the image-alone run is NOT tested here (torch, MONAI "
                            "or DeepRecon's DirectSeg weights are not installed).")
            self.delayDisplay("Image alone: skipped (the segmenters cannot run here)")
            return
        self.delayDisplay("Image alone, segmented with DirectSeg")
        case, _saxNode, _laxNode = self._phantomCase()
        imageNode = self._phantomImageNode(case)
        logic = CardiacReconstructionLogic()
        self.assertIn("DirectSeg", logic.checkInputs(None, imageNode=imageNode))
        outputs = logic.process(None, method=DEFAULT_METHOD, imageNode=imageNode, device="cpu",
                                segmenter="directseg")
        computed = outputs["input_segmentation"]
        self.assertIsNotNone(computed)
        self.assertIn("DirectSeg segmentation", computed.GetName())
        segmentation = computed.GetSegmentation()
        names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
        self.assertTrue(set(RECONSTRUCTION_SEGMENTS) <= names, f"DirectSeg: segments {sorted(names)}")
        self.assertEqual(mrml.volume_from_node(computed)[0].shape, case.sax.shape)  # on the image's grid
        self.assertEqual(outputs["table"].GetNumberOfRows(), case.n_slices)
        self.assertIsNotNone(outputs["corrected_image"])

        run = logic.startBackgroundRun(None, method=DEFAULT_METHOD, imageNode=imageNode, device="cpu",
                                       segmenter="directseg")
        status = logic.waitForBackgroundRun(run, 300)
        self.assertEqual(status, 0, "\n".join(run.worker.log))
        background = logic.finishBackgroundRun(run)
        self.assertIs(background["input_segmentation"], computed)  # the same node, updated
        self.assertEqual(background["table"].GetNumberOfRows(), case.n_slices)
        self.assertFalse(os.path.exists(run.folder))
        self.delayDisplay("Image alone passed")
