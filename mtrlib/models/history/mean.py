"""Mean pooling: the user's interest is the average of their past items' vectors.

The "average of the watch history's embeddings" of Covington, Adams & Sargin, "Deep Neural
Networks for YouTube Recommendations", RecSys 2016; every past item counts the same:
v_U = (1/n) sum_j e_j over the n real past items.
"""
from __future__ import annotations

from ._base import Encoder, HistoryEncoder, masked_mean_weights, pool


class MeanPoolingEncoder(HistoryEncoder):
    linear = True

    def forward(self, past, mask, target=None):
        return pool(masked_mean_weights(mask), past)  # [B, d]

    def weights(self, past, mask, target=None):
        return masked_mean_weights(mask)  # [B, L]


class MeanPooling(Encoder):
    name = "mean"
    label = "Mean pooling"
    short = "mean"  # the diagram's box
    paper = "Covington et al., RecSys 2016 (average of the history's embeddings)"
    order = 10
    Model = MeanPoolingEncoder
