"""Networks layer: the architectures of the learned methods, their one checkpoint format
(:mod:`.checkpoint`), the shipped-weights manifest (:mod:`.weights`) and the per-method cache
(:mod:`.cache`).

Importing this package imports no torch: the architecture modules do, and the methods import
them on first use, so the method catalogue and the Slicer module open without torch.
"""
