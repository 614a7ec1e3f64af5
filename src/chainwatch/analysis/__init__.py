"""Pure analysis: path building, profile verdicts, forecasts and findings. No I/O.

:class:`Analyzer` is the engine with its memo tables; :func:`analyze` runs the default
one. :mod:`chainwatch.model.behaviours` lists the named client behaviours.
"""

from chainwatch.analysis.engine import Analyzer, analyze, clear_caches, default_analyzer
from chainwatch.model.behaviours import BEHAVIOURS, behaviour

__all__ = ["BEHAVIOURS", "Analyzer", "analyze", "behaviour", "clear_caches", "default_analyzer"]
