"""The ``netgrow`` command.

    netgrow run EXPERIMENT.toml [--out DIR] [--resume] [--set KEY=VALUE]... [--quiet] [--tensorboard]
                [--threads N]
    netgrow compare RUN_DIR... [--baseline DIR] [--out DIR] [--force]
    netgrow report RUN_DIR... [--out DIR] [--force]
    netgrow demo [--out DIR] [--quick] [--threads N]
    netgrow analyze RUN_DIR [--baseline SCRATCH_RUN_DIR] [--out DIR] [--threads N]
    netgrow frontier CONFIG... --budgets 0.5,1 --seeds 3 --out DIR [--reference NAME]

Exit codes: 0 success; 2 a bad config or command line (nothing was written); 1 a failure while running
(the message says what happened; a killed or failed run can be continued with ``--resume``); 143 SIGTERM
and 130 Ctrl-C (``run`` and ``demo`` first finish the current step and write a checkpoint, see
:mod:`netgrow.train.interrupt`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from netgrow.errors import ConfigError, NetgrowError, RunInterrupted, StorageError

log = logging.getLogger("netgrow.cli")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def _setup_logging(quiet: bool) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_netgrow", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("[netgrow] %(message)s"))
        h._netgrow = True  # type: ignore[attr-defined]
        root.addHandler(h)
    import os

    main_rank = int(os.environ.get("RANK", "0")) == 0  # torchrun: only rank 0 reports progress
    root.setLevel(logging.WARNING if quiet or not main_rank else logging.INFO)


# files a start writes before training; a directory holding only these blocks no corrected run
_START_FILES = {"config.json", "train_config.json", "history.jsonl"}


def check_out_dir(out: Path, resume: bool) -> None:
    """A new run needs a new (or empty) directory; a resumed one needs an existing run."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file, not a directory; allowed: a new directory path")
    content = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if resume and not (out / "config.json").is_file():
        raise ConfigError(f"--resume: {str(out)!r} holds no run to continue (no config.json); "
                          f"allowed: the --out directory of a started run, or drop --resume")
    if not resume and content - _START_FILES:
        raise ConfigError(f"output directory {str(out)!r} already exists and is not empty; allowed: a new --out "
                          f"directory, or --resume to continue the run in it")


def make_out_dir(out: Path) -> None:
    """Create the run directory -- the last step of a start, after every check passed."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".netgrow-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {str(out)!r}: cannot create a run directory there ({exc.strerror or exc}); "
                          "allowed: a writable directory path, e.g. runs/NAME") from None


def cmd_run(args: argparse.Namespace) -> int:
    from netgrow.cli.config import load_config, override_keys
    from netgrow.strategies import run_experiment
    from netgrow.strategies.base import is_main_process
    from netgrow.strategies.resources import validate_resources
    from netgrow.train.interrupt import graceful_stop

    overrides = list(args.set or [])
    if args.tensorboard:  # an override like any other: on --resume it is a recorded, allowed change
        overrides.append("train.tensorboard=true")
    cfg = load_config(args.config, overrides)
    out = Path(args.out or cfg.out)
    if is_main_process():  # under torchrun rank 0 may already have created it
        check_out_dir(out, args.resume)
    cfg, train, test = validate_resources(cfg)  # device, data, batch size, models: all before any write
    cfg = cfg.replace(out=str(out))
    if is_main_process() and not args.resume:
        make_out_dir(out)
    with graceful_stop():
        summary = run_experiment(cfg, out, train, test, quiet=args.quiet, resume=args.resume,
                                 changes=override_keys(overrides))
    if not args.quiet and is_main_process():
        final = summary["final"]
        acc = final.get("test_acc")
        print(f"{cfg.name}: {len(summary['stages'])} stage(s), final test accuracy "
              f"{'-' if acc is None else f'{100 * acc:.2f}%'}, M = {summary['M_total']:.4g} MACs, "
              f"wall {summary['wall_time_total']:.1f} s -> {out}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from netgrow.cli.compare import compare

    compare(args.runs, out_dir=args.out, baseline=args.baseline, quiet=args.quiet, force=args.force)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from netgrow.cli.report import report

    report(args.runs, out_dir=args.out, quiet=args.quiet, force=args.force)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from netgrow.cli.demo import demo
    from netgrow.train.interrupt import graceful_stop

    with graceful_stop():
        demo(out=args.out, quick=args.quick, quiet=args.quiet)
    return EXIT_OK


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="torch CPU threads (default: torch's choice, which honours OMP_NUM_THREADS)")


def cmd_analyze(args: argparse.Namespace) -> int:
    try:
        from netgrow.analysis.run_analysis import analyze_run
    except ImportError as exc:
        raise NetgrowError(f"netgrow analyze is not available in this installation ({exc})") from None
    kwargs = {"max_samples": args.max_samples} if args.max_samples else {}
    analyze_run(args.run, baseline=args.baseline, out_dir=args.out, quiet=args.quiet, **kwargs)
    return EXIT_OK


def cmd_frontier(args: argparse.Namespace) -> int:
    from netgrow.cli.frontier import frontier, parse_list

    budgets = parse_list(args.budgets, float, "--budgets")
    seeds = list(range(int(args.seeds))) if "," not in args.seeds and args.seeds.strip().isdigit() else parse_list(
        args.seeds, int, "--seeds")
    frontier(args.configs, budgets, seeds, args.out, reference=args.reference, quiet=args.quiet)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one sub-parser per command)."""
    p = argparse.ArgumentParser(prog="netgrow", description="Grow neural networks while they train.")
    from netgrow import __version__

    p.add_argument("--version", action="version", version=f"netgrow {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run one experiment from a TOML config")
    r.add_argument("config", help="experiment file (see configs/*.toml and docs/cli.md)")
    r.add_argument("--out", help="run directory (default: the config's `out`, else runs/<name>)")
    r.add_argument("--resume", action="store_true", help="continue a killed run in --out from its checkpoint")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=0.01 --set seed=3 (validated like the file); "
                        "with --resume the named changes are recorded in RUN_DIR/history.jsonl")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to RUN_DIR/tensorboard (as [train] tensorboard = true)")
    _threads_option(r)
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("compare", help="Table 1 side by side: accuracy, M and its ratio to scratch, per stage")
    c.add_argument("runs", nargs="+", help="run directories")
    c.add_argument("--baseline", help="the scratch run M ratios refer to (default: the first scratch run given)")
    c.add_argument("--out", help="where compare.md / compare.csv go (default: parent of the first run)")
    c.add_argument("--quiet", action="store_true")
    c.add_argument("--force", action="store_true", help="overwrite compare.md / compare.csv of an earlier compare")
    c.set_defaults(func=cmd_compare)

    rp = sub.add_parser("report", help="PNG plots: accuracy vs epochs, vs MACs, vs parameters")
    rp.add_argument("runs", nargs="+", help="run directories")
    rp.add_argument("--out", help="plot directory (default: plots/ beside the first run)")
    rp.add_argument("--quiet", action="store_true")
    rp.add_argument("--force", action="store_true", help="overwrite the plots of an earlier report")
    rp.set_defaults(func=cmd_report)

    d = sub.add_parser("demo", help="scratch VGG19 vs cumulative VGG11→16→19 on Fashion-MNIST (~3.5 min on 2 idle cores, "
                                           "longer on busy ones)")
    d.add_argument("--out", help="demo directory (default: runs/demo-<time>)")
    d.add_argument("--quick", action="store_true", help="a tiny subset and 1 epoch per stage (seconds; for tests)")
    d.add_argument("--quiet", action="store_true")
    _threads_option(d)
    d.set_defaults(func=cmd_demo)

    a = sub.add_parser("analyze", help="robustness, FGSM and mutual inference of a run's stage models")
    a.add_argument("run", help="run directory (cumulative runs give mutual inference over their stages)")
    a.add_argument("--baseline", help="a scratch run to compare with")
    a.add_argument("--out", help="output directory (default: RUN_DIR/analysis)")
    a.add_argument("--max-samples", type=int, help="analyse a seeded random subset of the test set (quick look)")
    a.add_argument("--quiet", action="store_true")
    _threads_option(a)
    a.set_defaults(func=cmd_analyze)

    f = sub.add_parser("frontier", help="accuracy vs M over budgets x seeds, every config on one axis, M to targets")
    f.add_argument("configs", nargs="+", help="experiment files (the first is the reference unless --reference)")
    f.add_argument("--budgets", default="0.5,0.75,1", help="factors applied to every epoch count (default 0.5,0.75,1)")
    f.add_argument("--seeds", default="3", help="a count N (seeds 0..N-1) or a list '0,1,2' (default 3)")
    f.add_argument("--out", required=True, help="frontier directory (finished runs in it are reused)")
    f.add_argument("--reference", help="the config name that sets the targets (default: the first config)")
    f.add_argument("--quiet", action="store_true")
    _threads_option(f)
    f.set_defaults(func=cmd_frontier)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``netgrow`` script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "quiet", False))
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"netgrow: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RunInterrupted as exc:
        print(f"netgrow: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except StorageError as exc:
        hint = "" if "--resume" in str(exc) or args.command not in ("run", "demo") else (
            "; files written before are intact: free space (or fix the permissions) and continue with --resume")
        print(f"netgrow: error: {exc}{hint}", file=sys.stderr)
        return EXIT_FAILED
    except NetgrowError as exc:
        print(f"netgrow: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # a write outside the checkpoint code (a plot, a table): name the file, no traceback
        where = f" {exc.filename!r}" if exc.filename else ""
        print(f"netgrow: error: cannot access{where}: {exc.strerror or exc}; files written before are kept",
              file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("netgrow: interrupted; continue with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
