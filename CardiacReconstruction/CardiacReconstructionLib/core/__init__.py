"""Core layer: what every other layer builds on, with no torch and no data sets.

Geometry (:mod:`.geometry`: ``[k, j, i]`` arrays with a 4x4 IJK-to-RAS matrix, converted to LPS
files and slicerio only at the edges), file io (:mod:`.io`), labels and conventions
(:mod:`.labels`), the case (:mod:`.case`), the method interface and output grid (:mod:`.api`),
slice operations (:mod:`.stack`), surfaces and signed distance grids (:mod:`.surfaces`,
:mod:`.sdf`), clinical indices (:mod:`.indices`) and the compute device (:mod:`.device`).
"""
