"""The training losses the plugin's models share."""

import torch.nn.functional as F


def bpr(pos_scores, neg_scores):
    r"""BPR: mean of ``softplus(s_neg - s_pos)`` (= ``-log sigmoid(s_pos - s_neg)``), any shape."""
    return F.softplus(neg_scores - pos_scores).mean()


def layer0_l2(user_embedding, item_embedding, user, pos, neg):
    r"""L2 of a batch's layer-0 rows: ``(|e_u|^2 + |e_pos|^2 + |e_neg|^2)`` summed, over ``2B``.

    Args:
        user_embedding, item_embedding (nn.Embedding): the free ID tables (layer 0).
        user, pos, neg (torch.Tensor): [B] ids of the batch's triples.

    Returns:
        torch.Tensor: scalar (RecBole's ``EmbLoss(require_pow=True)`` on the same rows).
    """
    return (
        user_embedding(user).pow(2).sum()
        + item_embedding(pos).pow(2).sum()
        + item_embedding(neg).pow(2).sum()
    ) / (2 * len(user))
