"""Dataset helpers: split importers and pre-flight checks of atomic files."""

from recbole_quant.data.checks import check_dataset_files
from recbole_quant.data.lightgcn_split import import_lightgcn

__all__ = ["check_dataset_files", "import_lightgcn"]
