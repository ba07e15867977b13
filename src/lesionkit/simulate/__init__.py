"""Digital brain phantom: anatomy, tissue parameters, lesions, acquisitions, cohorts.

Example:
    >>> from lesionkit.simulate import simulate_cohort
    >>> simulate_cohort("fcd-classify", "out/", 4, seed=0, resolution=2)  # doctest: +SKIP
"""

from lesionkit.simulate.cohorts import COHORTS, simulate_cohort

__all__ = ["COHORTS", "simulate_cohort"]
