"""Command line of ``run_recbole_quant.py`` (also installed as ``recbole-quant``).

RecBole's own parser reads only ``--key=value`` and silently drops ``--model HQGNN`` (with a
space). Here ``--model``, ``--dataset`` and ``--config_files`` take either form, every other
``--key=value`` (or ``--key value``) is a RecBole/plugin config override, and an unknown key
is an error listing the closest known ones.
"""

import sys

from recbole_quant.errors import RecboleQuantError, TrainingInterrupted

INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

USAGE = """usage: run_recbole_quant.py --model=NAME[,NAME...] [--dataset=NAME] [--config_files="a.yaml b.yaml"]
                            [--key=value ...] [--bits=1,2,4] [--seeds=2020,2021,2022]
                            [--out_dir=DIR] [--list-models]

  --model         a recbole_quant model (HQGNN, HashGNN, L2QGCN) or any RecBole model;
                  several, comma-separated, train in turn and are compared side by side;
                  NAME:key=value[:key=value] gives one entry its own options,
                  e.g. --model=HQGNN,HQGNN:grad_estimator=ste,LightGCN
  --dataset       dataset name (default ml-100k, shipped with RecBole: works offline)
  --config_files  space-separated yaml files, later files win
  --key=value     any RecBole or model option, e.g. --bits=2 --learning_rate=0.002
  --bits=1,2,4    (comparison) one run per width for models with a bit-width option
  --seeds=2020,2021,2022
                  (comparison, also for one model) every entry runs once per seed, all
                  entries of a seed on the same split; the table gives each metric's mean
                  and sample std over the seeds that succeeded, runs.csv every run
                  (--seed=N alone: one run at that seed, as before)
  --out_dir       (comparison) folder for table.md, table.csv, tradeoff.png (and runs.csv)
                  (default results/<dataset>-<time>)
  --resume=CKPT   continue training from a checkpoint (same model and dataset)
  --list-models   print the available models and exit

Options that need no data (the model's, valid_metric, cpu_threads, the dataset's files) are
checked before anything loads. The terminal shows the options that differ from the defaults
(--show_config=True: RecBole's full dump, which always goes to the log file) and ends with a
run summary: test metrics, code sizes, seconds per epoch, best epoch, log / checkpoint /
tensorboard paths. Ctrl-C during training prints where the best checkpoint is and how to
resume it (exit 130).
"""

_OWN_KEYS = ("model", "dataset", "config_files", "out_dir")


class UsageError(RecboleQuantError):
    pass


def parse_args(argv):
    """Split ``argv`` into (own options dict, overrides list of ``--key=value``)."""
    own, overrides = {}, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            own["help"] = True
            i += 1
            continue
        if arg in ("--list-models", "--list_models"):
            own["list_models"] = True
            i += 1
            continue
        if not arg.startswith("--") or len(arg) == 2:
            raise UsageError(f"Unexpected argument '{arg}'.\n{USAGE}")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        else:
            key = arg[2:]
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise UsageError(f"--{key} needs a value: --{key}=VALUE.")
            value = argv[i + 1]
            i += 2
        if key in _OWN_KEYS:
            own[key] = value
        else:
            overrides.append(f"--{key}={value}")
    return own, overrides


def parse_int_list(text):
    """``"1,2,4"`` -> ``[1, 2, 4]`` with a clear error."""
    try:
        return [int(part) for part in text.strip("[]() ").split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--bits={text}: expected comma-separated integers, e.g. --bits=1,2,4.")


def list_models_text():
    from recbole_quant.registry import plugin_model_names, recbole_model_names

    lines = ["recbole_quant models:"]
    lines += [f"  {name}" for name in plugin_model_names()]
    lines.append("RecBole general recommenders (baselines):")
    lines.append("  " + ", ".join(recbole_model_names("general_recommender")))
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        own, overrides = parse_args(argv)
        if own.get("help"):
            print(USAGE)
            return 0
        if own.get("list_models"):
            print(list_models_text())
            return 0
        if "model" not in own:
            raise UsageError(f"No model given.\n{USAGE}")
        from recbole_quant.registry import get_model

        models = [m.strip() for m in own["model"].split(",") if m.strip()]
        from recbole_quant.compare import parse_model_spec

        for spec in models:
            get_model(parse_model_spec(spec)[0])  # fail fast on a wrong name, before any data
        config_files = own.get("config_files")
        common = dict(
            dataset=own.get("dataset", "ml-100k"),
            config_file_list=config_files.split() if config_files else None,
        )
        # --seeds is the comparison's, never a config key: it makes a comparison even of one
        # model (the mean and std over seeds are its report)
        seeds = [o.split("=", 1)[1] for o in overrides if o.startswith("--seeds=")]
        overrides = [o for o in overrides if not o.startswith("--seeds=")]
        if (len(models) > 1 or ":" in models[0] or seeds
                or any(o.startswith("--bits=") and "," in o for o in overrides)):
            from recbole_quant.compare import compare, parse_seeds

            bits = [o.split("=", 1)[1] for o in overrides if o.startswith("--bits=")]
            overrides = [o for o in overrides if not o.startswith("--bits=")]
            compare(
                models,
                bits=parse_int_list(bits[-1]) if bits else None,
                cmd_args=overrides,
                out_dir=own.get("out_dir"),
                seeds=parse_seeds(seeds[-1]) if seeds else None,
                **common,
            )
        else:
            from recbole_quant.quick_start import run_recbole_quant

            run_recbole_quant(model=models[0], cmd_args=overrides, **common)
    except RecboleQuantError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:
        print(err, file=sys.stderr)
        return INTERRUPTED_EXIT
    except KeyboardInterrupt:  # while loading data or testing: nothing to point at
        print("interrupted.", file=sys.stderr)
        return INTERRUPTED_EXIT
    return 0
