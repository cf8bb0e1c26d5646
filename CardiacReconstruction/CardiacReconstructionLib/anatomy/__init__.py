"""Anatomy layer: the heart's own frames, shared by the methods, simulation and training.

:mod:`.frame`: the short-axis frame and valve planes of a heart from its landmarks, and the
canonical SAX grid (SRHeart's) that priors are trained and fitted on; :mod:`.canonical`: the
LV-centred, LV-to-RV-rotated in-plane grid the label-domain networks run on.
"""
