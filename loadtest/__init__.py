"""Load tests and the benchmark of POST /classify: Locust traffic, a baseline app, `loadtest.bench`."""
