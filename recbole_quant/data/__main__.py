"""``python -m recbole_quant.data import-lightgcn SRC --name NAME --out DIR``."""

import argparse
import sys

from recbole_quant.data.lightgcn_split import import_lightgcn
from recbole_quant.errors import RecboleQuantError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recbole_quant.data")
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser(
        "import-lightgcn",
        help="convert a LightGCN/BiGeaR split (train.txt, test.txt) to RecBole benchmark files",
    )
    imp.add_argument("src", help="folder with train.txt and test.txt")
    imp.add_argument("--name", required=True,
                     help="dataset name (used as --dataset): letters, digits, '.', '_', '-'")
    imp.add_argument("--out", required=True, help="output root folder (used as --data_path)")
    imp.add_argument("--force", action="store_true",
                     help="replace the dataset's files if they exist (otherwise an error)")
    imp.add_argument("--valid-ratio", type=float, default=0.1,
                     help="share of each user's training items moved to validation (default 0.1)")
    imp.add_argument("--seed", type=int, default=2020, help="seed of the validation split")
    args = parser.parse_args(argv)
    try:
        counts = import_lightgcn(args.src, args.name, args.out, args.valid_ratio, args.seed,
                                 force=args.force)
    except (RecboleQuantError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unwritable --out, disk full...
        print(f"error: cannot write to {args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    dups = counts["duplicates"]
    if dups["train"] or dups["test"]:
        print(f"dropped repeated items on a line: {dups['train']} in train.txt, "
              f"{dups['test']} in test.txt")
    if counts["test_unseen"]:
        print(f"warning: {counts['test_unseen']} test interactions have an item that never "
              "occurs in the train split (no model can learn it)", file=sys.stderr)
    print(
        f"wrote {counts['folder']}: {counts['users']} users, {counts['items']} items, "
        f"{counts['train']} train / {counts['valid']} valid / {counts['test']} test interactions"
    )
    print(f"train with: --dataset={args.name} --data_path={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
