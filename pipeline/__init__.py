"""Recast's domain: the stages of the publishing pipeline as plain functions and types.

Nothing in this package imports Celery; the Celery executor lives in ``workers/``.
"""

__version__ = "0.1.0"
