"""Mean pooling: the user's interest is the average of their past items' vectors.

The "average of the watch history's embeddings" of Covington, Adams & Sargin, "Deep Neural
Networks for YouTube Recommendations", RecSys 2016; every past item counts the same.
"""
from __future__ import annotations

from ._base import HistoryEncoder, masked_mean_weights, pool


class MeanPooling(HistoryEncoder):
    name = "mean"
    label = "Mean pooling"
    short = "mean"  # the diagram's box
    paper = "Covington et al., RecSys 2016 (average of the history's embeddings)"
    order = 10
    linear = True

    def forward(self, past, mask, target=None):
        return pool(masked_mean_weights(mask), past)  # [B, d]

    def weights(self, past, mask, target=None):
        return masked_mean_weights(mask)
