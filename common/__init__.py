"""Small helpers the pipeline's stages share: provenance, classification metrics, CLI -> config.

Not used by the serving runtime (the bento does not ship it). Importing it imports nothing heavy.
"""
