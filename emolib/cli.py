"""The ``emolib`` command line: run the study, pack its reports, check parameters, write demo data,
extract landmarks."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emolib.errors import EmolibError


def _cmd_run(args: argparse.Namespace) -> int:
    from emolib.config import load_params
    from emolib.data.stage import check_data_source
    from emolib.runner import parse_stages, run_study

    params = load_params(args.params, overrides=args.set)
    stages = parse_stages(args.stages)
    if "01_data_prep" in stages:
        check_data_source(params)  # a wrong data.path is refused before any stage runs
    if {"02_training", "04_pruning"} & set(stages):
        _check_execution(params)  # so is a cluster that cannot be reached
    out = Path(args.out) if args.out else Path("runs") / params.name
    manifest = run_study(params, args.params, out, stages=stages, kernel=args.kernel, force=args.force)
    done = [s for s, e in manifest["stages"].items() if e.get("status") == "complete"]
    print(f"run folder: {out}  ({len(done)} stage(s) complete: {', '.join(done)})")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from emolib.config import load_params
    from emolib.data.stage import check_data_source

    params = load_params(args.params, overrides=args.set)
    data = check_data_source(params)
    execution = _check_execution(params)
    print(f"{args.params}: valid (source={params.data.source}, frames={params.frames}, "
          f"emotions={len(params.emotions)}, seeds={params.seeds}, K={params.pruning.k})")
    print(f"data: {data}")
    print(f"execution: {execution}")
    return 0


def _check_execution(params) -> str:
    """The backend can run: Ray installed, the cluster reachable and (when it is a running one)
    joined for a moment to check its workers' software (emolib.execution.check_backend)."""
    from emolib.execution import check_backend

    return check_backend(params.execution, join=params.execution.address is not None)


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from emolib.data.demo import write_demo_dataset

    out = write_demo_dataset(Path(args.out_dir), seed=args.seed, subjects=args.subjects,
                             frames_per_sequence=args.frames)
    print(f"demo dataset written to {out}")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from emolib.config import parse_params
    from emolib.data.stage import prepare_landmarks
    from emolib.run_folder import RunFolder
    from emolib.run_lock import hold_run_folder
    from emolib.runner import check_out_dir

    raw = {"name": "extract", "frames": args.frames,
           "data": {"source": args.source, "path": str(args.path), "flip": not args.no_flip,
                    "workers": args.workers}}
    params = parse_params(raw, source="emolib extract", overrides=args.set)
    run = RunFolder(check_out_dir(Path(args.out)))
    with hold_run_folder(run.root):  # not beside an `emolib run` on the same folder
        run.ensure()
        before = run.extraction_report.stat().st_mtime_ns if run.extraction_report.is_file() else None
        try:
            data = prepare_landmarks(params, run)
        finally:  # this extraction's report (also when nothing could be extracted), not an older one
            if run.extraction_report.is_file() and run.extraction_report.stat().st_mtime_ns != before:
                _print_extraction_summary(run)
    print(f"{len(data)} samples, {data.frames} frames, {data.n_landmarks} landmarks -> {run.landmarks}")
    return 0


def _print_extraction_summary(run, shown: int = 10) -> None:
    """What extraction left out and why (the full list is the report)."""
    report = run.read_extraction_report()
    counts = report["status"].value_counts().to_dict()
    print("sequences: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    failed = report[report["status"].isin(["error", "dropped"])]
    for row in failed.head(shown).itertuples():
        print(f"  {row.status}: {row.sequence}: {row.reason}")
    if len(failed) > shown:
        print(f"  ... and {len(failed) - shown} more")
    print(f"extraction report: {run.extraction_report}")


def _cmd_report(args: argparse.Namespace) -> int:
    from emolib.report.archive import pack_reports

    out = pack_reports(Path(args.run_dir), args.out)
    print(f"reports of {args.run_dir} packed into {out} ({out.stat().st_size / 1e6:.1f} MB; open index.html "
          "inside it, offline)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emolib",
        description="Explainable landmark-based emotion recognition (T-EMO / R-EMO, global IG, pruning).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the study's notebooks into a run folder")
    p.add_argument("params", help="parameters YAML (e.g. params/demo.yaml)")
    p.add_argument("--out", help="run folder (default: runs/<name>)")
    p.add_argument("--kernel", help="Jupyter kernel to execute with (default: the notebooks' own)")
    p.add_argument("--stages", help="comma-separated stages to run, e.g. 01,02 (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--force", action="store_true", help="redo stages even if complete")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="pack a run's HTML reports, figures and tables into one zip to send")
    p.add_argument("run_dir", help="the run folder")
    p.add_argument("--out", help="the zip to write (default: <run folder>-report.zip beside it)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("check", help="validate a parameters file")
    p.add_argument("params")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("demo-data", help="write the embedded demo dataset (CK+ layout)")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subjects", type=int, default=12)
    p.add_argument("--frames", type=int, default=12, help="frames per sequence")
    p.set_defaults(func=_cmd_demo_data)

    p = sub.add_parser("extract", help="extract MediaPipe landmarks only (writes landmarks.npz)")
    p.add_argument("path", help="CK+ folder, or a folder of videos with labels.csv")
    p.add_argument("--source", choices=["ckplus", "videos", "demo"], default="ckplus")
    p.add_argument("--out", required=True, help="output folder (gets data/landmarks.npz)")
    p.add_argument("--frames", type=int, default=10, help="resample every sequence to this many frames")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-flip", action="store_true", help="skip flip augmentation")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_cmd_extract)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EmolibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
