"""`python -m experiments.monitor_cost`: the prediction monitor's CPU per text, per setup."""

from __future__ import annotations


def test_cost_command_measures_each_setup(monitored_model, monitored_run_dir, capsys):
    from experiments.monitor_cost import main

    args = ["--model", str(monitored_model), "--run-dir", str(monitored_run_dir), "--rounds", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in out] == ["log + drift", "log only", "drift only"]
    assert all(float(line.split(":")[1].split()[0]) > 0 for line in out)
