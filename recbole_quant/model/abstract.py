"""Base class of the plugin's quantized recommenders.

What every quantized model shares and RecBole's ``GeneralRecommender`` lacks:

* trained by :class:`recbole_quant.trainer.QuantTrainer` (picked by name in
  ``recbole_quant.trainer.get_trainer``; models never import the trainer), which calls
  ``on_train_epoch_start`` and writes safe checkpoints;
* a cached :class:`recbole_quant.packed.PackedPredictor` built from the model's codes once
  after training (:meth:`build_predictor`, per model) and dropped whenever the model goes
  back to training mode, so codes never go stale;
* ``full_sort_predict`` and ``predict`` answered by that predictor, so both give exactly the
  packed scores; ``storage()`` reports what the codes cost;
* options read by ``read_options`` (config only, no dataset) with the checks of
  :mod:`recbole_quant.model.options`.
"""

import numpy as np
import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_quant.packed import PackedPredictor, unpack_signs
from recbole_quant.packed.bitpack import n_words


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
        # load parameters info: every option checked before any layer is built
        for name, value in self.read_options(config).items():
            setattr(self, name, value)
        self._predictor = None

    @classmethod
    def read_options(cls, config):
        """The model's options from ``config``, checked, as ``{attribute: value}``.

        Each value is read with :mod:`recbole_quant.model.options` (a bad one raises
        :class:`ConfigValueError`). Needs only the config, so it can run before the dataset
        loads; ``__init__`` sets the returned attributes.
        """
        return {}

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

    def integer_codes(self):
        """The codes the predictor scores, unpacked: ``(user_codes, item_codes)`` or None.

        ``torch.uint8`` [n_users, D] and [n_items, D] (row 0: RecBole's padding id). Sign codes
        hold 1 for +1 and 0 for -1, with a code of G groups (L2Q-GCN's layers) flattened to
        D = G * d; uniform codes hold the level k in [0, 2^bits). Unpacked from the cached
        predictor (no forward pass once it is built); None when the model has no codes
        (HashGNN ``quantize: False``). Read by :mod:`recbole_quant.diagnostics`.
        """
        packed = getattr(self.predictor, "packed", self.predictor)  # soft re-ranking wraps one
        if not isinstance(packed, PackedPredictor):
            return None
        arrays = packed.to_arrays()
        dim = int(arrays["shape"][0])
        tables = []
        for words in (arrays["user_words"], arrays["item_words"]):
            words = words.reshape(len(words), -1, n_words(dim))  # [n, G or bits, W]
            if str(arrays["kind"]) == "sign":
                codes = (unpack_signs(words, dim) > 0).view(np.uint8)
            else:  # plane by plane in uint8: 6x faster than unpack_planes' int64 sum
                codes = np.zeros((len(words), dim), dtype=np.uint8)
                for plane in range(words.shape[1]):
                    bit = (unpack_signs(words[:, plane], dim) > 0).view(np.uint8)
                    codes |= bit << np.uint8(plane)
            tables.append(torch.from_numpy(codes.reshape(len(words), -1)))
        return tuple(tables)
