"""Train and evaluate a model with recbole_quant, RecBole-style.

    python run_recbole_quant.py --model=HQGNN
    python run_recbole_quant.py --model=LightGCN --dataset=ml-100k --learning_rate=0.002
    python run_recbole_quant.py --model HQGNN --config_files "a.yaml b.yaml" --bits=2
    python run_recbole_quant.py --list-models
"""

import sys

from recbole_quant.cli import main

if __name__ == "__main__":
    sys.exit(main())
