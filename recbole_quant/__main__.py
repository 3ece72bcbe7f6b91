"""``python -m recbole_quant``: export packed codes, serve top-k from the export, tune.

    python -m recbole_quant export CHECKPOINT OUT [--history train|all|none] [--key=value ...]
    python -m recbole_quant tune --model=NAME --params=FILE [--algo=...] [--key=value ...]
    python -m recbole_quant recommend FILE --user 196 [--user 42 ...] [--k 10] [--keep-seen]
    python -m recbole_quant info FILE [--users]

Training stays ``run_recbole_quant.py`` / ``recbole-quant`` (:mod:`recbole_quant.cli`).
Input problems print ``error: message`` on stderr and exit with status 2, no traceback.
``recommend`` and ``info`` never import RecBole: only the export file is needed.
"""

import argparse
import logging
import os
import sys
import warnings

from recbole_quant.errors import CheckpointError, RecboleQuantError


class UsageError(RecboleQuantError):
    pass


def _parser():
    parser = argparse.ArgumentParser(prog="python -m recbole_quant", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser(
        "export",
        allow_abbrev=False,  # --key=value overrides must not prefix-match the options
        help="write a checkpoint's packed codes, id maps and history to one .npz file",
        description="Extra --key=value arguments override the saved config, e.g. "
                    "--mode=hard (HashGNN soft) or --data_path=DIR (the dataset moved).",
    )
    exp.add_argument("checkpoint", help="a checkpoint written by recbole_quant (saved/*.pth)")
    exp.add_argument("out", help="the .npz file to write")
    exp.add_argument("--history", default="train", choices=("train", "all", "none"),
                     help="items 'recommend' skips: the training split (default), every "
                          "interaction of the dataset, or none")
    exp.add_argument("--model", dest="expected_model", default=None,
                     help="fail unless the checkpoint holds this model")
    rec = sub.add_parser(
        "recommend", help="top-k items of users, from an export file",
        description="Items are listed by higher score; equal scores (common with short codes) "
                    "by lower internal item id, the rule of training's evaluation too "
                    "(docs/export.md).")
    rec.add_argument("file", help="an export written by 'export'")
    rec.add_argument("--user", action="append", required=True,
                     help="raw user token as in the dataset files (repeat for several users)")
    rec.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    rec.add_argument("--keep-seen", action="store_true",
                     help="do not skip the items in the user's stored history")
    sub.add_parser("tune", help="hyper-parameter search (python -m recbole_quant tune --help)",
                   add_help=False)
    info = sub.add_parser("info", help="describe an export file")
    info.add_argument("file")
    info.add_argument("--users", action="store_true", help="list every user token, one a line")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "tune":  # RecBole-style --key=value options: its own parser
        from recbole_quant.tune import main as tune_main

        return tune_main(argv[1:])
    args, extra = _parser().parse_known_args(argv)
    try:
        if args.command != "export" and extra:
            raise UsageError(f"Unexpected argument(s): {' '.join(extra)}.")
        if args.command == "export":
            _export(args, extra)
        elif args.command == "recommend":
            _recommend(args)
        else:
            _info(args)
    except RecboleQuantError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the export is written to a temporary file: nothing half-done
        print("interrupted.", file=sys.stderr)
        return 130
    return 0


def _export(args, extra):
    overrides = []
    for arg in extra:
        if not arg.startswith("--") or "=" not in arg:
            raise UsageError(f"Unexpected argument '{arg}': config overrides are written --key=value.")
        overrides.append(arg)
    if not os.path.isfile(args.checkpoint):  # answered before torch and RecBole load (~20 s busy)
        raise CheckpointError(f"Checkpoint not found: {args.checkpoint}")
    from recbole_quant.export import export_model

    # rebuilding the dataset and model logs RecBole's and pandas' warnings (and training
    # notes such as HashGNN's schedule) that say nothing about the export
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = export_model(args.checkpoint, args.out, expected_model=args.expected_model,
                                   history=args.history, overrides=overrides)
    finally:
        root.setLevel(level)
    print(summary)


def _recommend(args):
    from recbole_quant.export import load_export

    exported = load_export(args.file)
    results = exported.recommend(args.user, k=args.k, exclude_seen=not args.keep_seen)
    seen = "seen items kept" if args.keep_seen else f"seen items excluded ({exported.meta.get('history')} history)"
    for user, recs in zip(args.user, results):
        print(f"user {user}: top-{args.k} of {exported.n_items} items, {seen}"
              + (f"; only {len(recs)} left" if len(recs) < args.k else ""))
        width = max([len("item")] + [len(item) for item, _ in recs])
        print(f"  rank  {'item':<{width}}  score")
        for rank, (item, score) in enumerate(recs, 1):
            print(f"  {rank:>4}  {item:<{width}}  {_float32(score)}")


def _info(args):
    from recbole_quant.export import load_export

    exported = load_export(args.file)
    if args.users:
        print("\n".join(str(t) for t in exported.user_tokens[1:]))
        return
    meta = exported.meta
    print(f"{args.file}: {exported!r}")
    print(f"  format {meta['format']}, checkpoint epoch {meta.get('epoch')}")
    print(f"  {exported.storage()}")


def _float32(score):
    # shortest text that reads back as the same float32 (the model's score exactly)
    import numpy as np

    return str(np.float32(score))


if __name__ == "__main__":
    sys.exit(main())
