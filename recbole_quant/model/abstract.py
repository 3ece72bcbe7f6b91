"""Base class of the plugin's quantized recommenders.

What every quantized model shares and RecBole's ``GeneralRecommender`` lacks:

* trained by :class:`recbole_quant.trainer.QuantTrainer` (picked by name in
  ``recbole_quant.trainer.get_trainer``; models never import the trainer), which calls
  ``on_train_epoch_start`` and writes safe checkpoints;
* a cached :class:`recbole_quant.packed.PackedPredictor` built from the model's codes once
  after training (:meth:`build_predictor`, per model) and dropped whenever the model goes
  back to training mode, so codes never go stale;
* ``full_sort_predict`` and ``predict`` answered by that predictor, so both give exactly the
  packed scores; ``storage()`` reports what the codes cost.
"""

import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_quant.errors import ConfigValueError


class QuantizedRecommender(GeneralRecommender):
    """A ``GeneralRecommender`` whose inference runs on packed codes."""

    input_type = InputType.PAIRWISE
    # Name of the config key holding a per-dimension code width, if the model has one
    # (comparisons expand ``--bits=1,2,4`` over it); sign-code models leave it None.
    bit_width_key = None

    @property
    def code_width(self):
        """Bits per code dimension (1 for sign codes)."""
        return getattr(self, self.bit_width_key) if self.bit_width_key else 1

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._predictor = None

    # -- configuration helpers -------------------------------------------------------------
    @staticmethod
    def choice(config, key, allowed):
        """``config[key]``, checked against ``allowed`` with a clear error."""
        value = config[key]
        if value not in allowed:
            raise ConfigValueError(
                f"{key}={value!r} is not valid: choose one of {', '.join(map(str, allowed))}."
            )
        return value

    @staticmethod
    def int_in_range(config, key, low, high=None):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high
        ):
            span = f"{low}..{high}" if high is not None else f">= {low}"
            raise ConfigValueError(f"{key}={value!r} is not valid: an integer in {span}.")
        return value

    # -- packed inference ------------------------------------------------------------------
    def build_predictor(self):
        """Return a :class:`PackedPredictor` over all users and items (incl. padding item 0)."""
        raise NotImplementedError

    @property
    def predictor(self):
        if self._predictor is None:
            with torch.no_grad():
                self._predictor = self.build_predictor()
        return self._predictor

    def train(self, mode=True):
        if mode:
            self._predictor = None  # parameters are about to change
        return super().train(mode)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        self._predictor = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def full_sort_predict(self, interaction):
        """Scores of every item for a batch of users, from the packed codes.

        Args:
            interaction (Interaction): holds ``USER_ID`` [B].

        Returns:
            torch.Tensor: a fresh float32 tensor [B, n_items] (padding item 0 included; the
            trainer writes -inf into it in place).
        """
        user = interaction[self.USER_ID]
        return self.predictor.score(user.cpu()).to(user.device)

    def predict(self, interaction):
        """Scores of (user, item) pairs, equal to the matching ``full_sort_predict`` entries.

        Args:
            interaction (Interaction): ``USER_ID`` [B] and ``ITEM_ID`` [B].

        Returns:
            torch.Tensor: [B] float32.
        """
        user = interaction[self.USER_ID]
        item = interaction[self.ITEM_ID]
        unique, inverse = torch.unique(user.cpu(), return_inverse=True)
        scores = self.predictor.score(unique)
        return scores[inverse, item.cpu()].to(user.device)

    def storage(self):
        """:class:`StorageReport` of the packed user and item code tables."""
        return self.predictor.storage()
