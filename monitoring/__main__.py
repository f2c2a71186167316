"""CLI:

    python -m monitoring report --logs DIR --model TAG [--since 24h] [--out reports/drift]
    python -m monitoring profile RUN_DIR --model TAG [--output FILE]

`report` exits 0 when no feature drifted, 1 when one did (a scheduled job can alert on it),
2 on bad input (no logs, too few records, no profile), with a message saying which.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from common.cli import comma_list, config_from_args, with_default
from monitoring.logs import LogError
from monitoring.report import ReportConfig


def report_parser(sub) -> None:
    d = partial(with_default, ReportConfig)  # "text (default: X)", X from ReportConfig
    p = sub.add_parser(
        "report",
        help="drift report of the prediction logs against the model's reference profile",
        description="Compare the service's prediction logs with the model's reference profile "
        "(PSI per feature); write report.md, report.json and PNGs. Exit 0: no drift, 1: drift, "
        "2: bad input.",
    )
    p.add_argument(
        "--logs",
        required=True,
        action="append",
        type=comma_list,
        help="log directory or file (repeat or comma-separate); .gz, rotated files "
        "and Cloud Logging exports (JSON lines or a JSON array) are read",
    )
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument("--model", help="stored model tag: its reference profile, its records only")
    ref.add_argument("--profile", help="a reference_profile.json (no model store needed)")
    p.add_argument("--since", help="ISO-8601 time or a duration back from now (30m, 24h, 7d)")
    p.add_argument("--until", help="same forms as --since; records before it")
    p.add_argument("--out", help=d("out", "output directory"))
    p.add_argument("--warn", type=float, help=d("warn", "PSI of a warning"))
    p.add_argument("--threshold", type=float, help=d("threshold", "PSI of drift, exit 1"))
    p.add_argument(
        "--min-texts", type=int, help=d("min_texts", "fewer records: no verdict, exit 2")
    )
    p.add_argument("--intervals", type=int, help=d("intervals", "points of the PSI-over-time plot"))


def profile_parser(sub) -> None:
    p = sub.add_parser(
        "profile",
        help="make the reference profile of a stored model from its training run",
        description="Write the reference profile of a stored model made before drift "
        "monitoring (the export stage makes it for new models).",
    )
    p.add_argument("run_dir", type=Path, help="the training run the model was exported from")
    p.add_argument("--model", required=True, help="stored model tag")
    p.add_argument(
        "--output",
        type=Path,
        help="where to write it (default: into the stored model, if it has none)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    report_parser(sub)
    profile_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            return run_report(args)
        return run_profile_command(args)
    except LogError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run_report(args: argparse.Namespace) -> int:
    from monitoring.report import write_report

    args.logs = [path for group in args.logs for path in group]
    config = config_from_args(ReportConfig, args)
    report = write_report(config)
    width = max(len(f.feature) for f in report.features)
    print(
        f"{report.texts:,} records, {report.start} .. {report.end}; reference {report.profile_source}"
    )
    for f in report.features:
        print(
            f"  {f.feature:<{width}}  PSI {f.psi:7.3f}  {f.status:<5}  {f.reference} -> {f.current}"
        )
    verdict = f"DRIFT in {', '.join(report.drifted)}" if report.drifted else "no drift"
    print(f"{verdict}; report: {Path(config.out) / 'report.md'}")
    return 1 if report.drifted else 0


def run_profile_command(args: argparse.Namespace) -> int:
    import bentoml
    from bentoml.exceptions import BentoMLException

    from export.profile import run_profile
    from export.rundir import RunDirError, load_run_dir
    from serving.drift import PROFILE_FILE
    from serving.inference import Classifier

    try:
        model = bentoml.models.get(args.model)
        run = load_run_dir(args.run_dir)
    except (BentoMLException, ValueError, RunDirError) as e:
        raise LogError(str(e)) from None
    fingerprint = model.info.metadata.get("data_fingerprint")
    if fingerprint and fingerprint != run.info["data_fingerprint"]:
        raise LogError(
            f"{args.run_dir} is not the run {model.tag} was exported from (its data "
            "fingerprint differs)"
        )
    output = args.output or Path(model.path) / PROFILE_FILE
    if output.exists():
        raise LogError(f"{output} exists; give another --output")
    classifier = Classifier.from_dir(model.path)
    profile = run_profile(classifier, run)
    profile.save(output)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
