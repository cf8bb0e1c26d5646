"""Evaluation layer: metrics against a truth (:mod:`.metrics`), the benchmark (:mod:`.bench`),
ground-truth surfaces of the CT cohort (:mod:`.surface_truth`) and figures (:mod:`.figures`).
Never imported by the runtime.
"""
