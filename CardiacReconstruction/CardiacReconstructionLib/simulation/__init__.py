"""Simulation layer: the procedural heart phantom (:mod:`.phantom`), clinical degradation of a
high-resolution heart into a SAX stack (:mod:`.degrade`), long-axis views cut from it
(:mod:`.lax`) and whole simulated cases (:mod:`.cases`). Used by tests, the demo, the benchmark,
training and the Slicer self-test; never by the runtime.
"""
