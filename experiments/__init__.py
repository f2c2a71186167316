"""Measurement code, apart from the pipeline: comparisons, tuning grids, demos and cost probes.

Each module is a command that imports the stages and the clients and measures them; no stage or
client imports this package (import-linter contracts in pyproject.toml, run by `make lint`).

    python -m experiments.quantization [RUN_DIR]       # quantization settings side by side
    python -m experiments.mcnemar BASE OTHER [...]     # paired test of models on the same rows
    python -m experiments.tradeoff TAG [TAG ...]       # accuracy vs speed of stored models
    python -m experiments.invariance MODEL [...]       # accuracy, speed, batch invariance
    python -m experiments.scoring_engines              # HTTP vs Ray Data batch scoring
    python -m experiments.scoring_grid INPUT ...       # HTTP scoring over batch x concurrency
    python -m experiments.drift_demo                   # live drift gauges and report, real model
    python -m experiments.monitor_cost                 # CPU per text of the prediction monitor
    python -m experiments.tune WHAT                    # tuning grids behind the defaults

Outputs that the docs cite are written under reports/ by make targets (`make help`).
"""
