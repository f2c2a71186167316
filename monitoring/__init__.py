"""Monitoring what the service sees: the reference profile a model carries (made at export),
and the drift report over the service's prediction logs (`python -m monitoring report`).

The statistics themselves (features, profile format, PSI) live in `serving.drift`, shared with
the service's live drift gauges.
"""
