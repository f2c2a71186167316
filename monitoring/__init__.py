"""Monitoring what the service sees: the drift report over the service's prediction logs
(`python -m monitoring report`) against the reference profile a model carries (made at export
by `export.profile`; `python -m monitoring profile` adds one to a model exported before).

The statistics themselves (features, profile format, PSI) live in `serving.drift`, shared with
the service's live drift gauges.
"""
