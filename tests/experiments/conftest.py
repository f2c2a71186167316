"""The monitoring tests' stored model (400-row held-out splits, exported with its reference
profile), for the cost probe of the prediction monitor."""

from tests.monitoring.conftest import monitored_model, monitored_run_dir  # noqa: F401
