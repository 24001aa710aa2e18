"""Performance estimator: GPU catalog, model architecture facts, a calibrated roofline, memory plan.

`estimate(query)` answers "how fast and does it fit" for any catalog GPU without owning it.
Everything here is pure Python + numpy/pandas (scipy only for the calibration fit).
"""

from engine.perf.estimate import Estimate, Query, estimate

__all__ = ["Estimate", "Query", "estimate"]
