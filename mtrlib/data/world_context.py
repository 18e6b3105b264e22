"""The built-in world's optional impression context: the slot an item was shown in, and the device.

Off by default (`WorldConfig.context`), and then the world is exactly what it was. On, every
logged impression gets two columns of the interactions, both categorical context features:

- `position`, the slot 1-10 of a feed page. A user's impressions, in time order, fill pages of
  ten slots (the last page may be shorter); within a page the *logging policy* puts items in the
  order of its own estimate of relevance, the true click logit plus Gaussian noise of standard
  deviation `LOGGER_NOISE` (2 logits: its ranking agrees with the truth's, Spearman about 0.7 within a
  page). So more relevant items tend to sit in better slots, as in a real feed: the slot is
  confounded with relevance, which is what makes position bias hard to read off the raw click
  rates (a naive model credits the slot with the relevance it stands for, and vice versa).
- `device`, drawn for each impression independently: mobile 55%, desktop 35%, tablet 10%.

The examination hypothesis (Richardson et al. 2007; Craswell et al., "An experimental comparison
of click position-bias models", WSDM 2008): a user clicks an item only if they look at its slot,
and looking depends on the slot alone,

    P(click | user, item, slot) = P(examined | slot) * P(click | user, item, examined),
    P(examined | slot) = 1 / slot ** EXAMINATION_POWER

with EXAMINATION_POWER = 1, the propensity model of Joachims, Swaminathan and Schnabel,
"Unbiased Learning-to-Rank with Biased Feedback", WSDM 2017 (their eta = 1): slot 1 is always
examined, slot 2 half the time, slot 10 one time in ten (a slot's mean over 1-10: 0.29). The
second factor is the world's usual click probability, sigmoid of the click logit.

Only the click is examined: a like is asked as before (on every impression, or after a click),
and the dwell of a click is shifted by the device: log dwell + DEVICE_LOG_DWELL, that is
mobile x0.74 (-0.30), desktop x1 (0), tablet x1.16 (+0.15); the device affects nothing else.

The truth (`true_logits`, `mtrlib.eval.truth`) stays the *true* relevance, without examination,
so a model trained on these clicks can be scored on unbiased ranking quality; the curve and
the effects are kept in `ground_truth["context"]`. The random draws of the context come from
their own stream, and the click is drawn from the same uniform numbers as without it, so a
click with context on is a click that would have been drawn without it too (examination only
takes clicks away); the likes and the dwell noise are drawn as without it (in the funnel a like is
then observed on the clicks that remain).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SLOTS = 10  # slots on a feed page
EXAMINATION_POWER = 1.0  # P(examined | slot) = slot ** -EXAMINATION_POWER (Joachims et al. 2017, eta = 1)
LOGGER_NOISE = 2.0  # std (in logits) of the logging policy's error when it orders a page
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_SHARE = (0.55, 0.35, 0.10)
DEVICE_LOG_DWELL = (-0.30, 0.0, 0.15)  # added to a click's log dwell
CONTEXT_FEATURES = {"position": "categorical", "device": "categorical"}


def examination(position) -> np.ndarray:
    """P(examined | slot) for slots 1..SLOTS."""
    return 1.0 / np.asarray(position, dtype=float) ** EXAMINATION_POWER


@dataclass
class Context:
    """Per impression, in the world's impression order (user-major, exposure order)."""
    position: np.ndarray  # int8 slot, 1..SLOTS
    device: np.ndarray  # int8 code into DEVICES

    def examined(self, a: int, b: int) -> np.ndarray:
        return examination(self.position[a:b])

    def dwell_shift(self, a: int, b: int) -> np.ndarray:
        return np.asarray(DEVICE_LOG_DWELL)[self.device[a:b]]

    def columns(self, order: np.ndarray) -> dict:
        """The interactions' context columns, rows in `order`."""
        return {"position": self.position[order].astype(np.int64),
                "device": np.array(DEVICES, dtype=object)[self.device[order]]}


def draw_context(rng: np.random.Generator, order: np.ndarray, per_user: int, click_logit: np.ndarray) -> Context:
    """Slots and devices of every impression. `order` sorts the impressions by user, then time
    (each user has `per_user` of them, contiguous once sorted); `click_logit` is each impression's
    true click logit (the logging policy sees it through noise)."""
    n = len(order)
    device = rng.choice(len(DEVICES), size=n, p=DEVICE_SHARE).astype(np.int8)
    score = click_logit[order] + LOGGER_NOISE * rng.normal(size=n)  # sorted order from here
    k = np.arange(n, dtype=np.int64)
    within = k % per_user
    page_start = k - within % SLOTS  # first sorted row of each row's page
    pages_per_user = -(-per_user // SLOTS)
    page = (k // per_user) * pages_per_user + within // SLOTS  # non-decreasing: pages are contiguous
    del within
    best_first = np.lexsort((-score, page))  # pages keep their place; inside one, the best score first
    del score, page
    slot = np.empty(n, np.int8)
    slot[best_first] = (k - page_start[best_first] + 1).astype(np.int8)
    position = np.empty(n, np.int8)
    position[order] = slot
    return Context(position=position, device=device)


def truth_of_context() -> dict:
    """What `ground_truth["context"]` records: the curve and the effects, by name."""
    return {"examination": {s: float(examination(s)) for s in range(1, SLOTS + 1)},
            "examination_power": EXAMINATION_POWER, "logger_noise": LOGGER_NOISE,
            "device_share": dict(zip(DEVICES, DEVICE_SHARE)),
            "device_log_dwell": dict(zip(DEVICES, DEVICE_LOG_DWELL))}


NOTE = ("Impression context: each impression's slot (1-10; P(examined) = 1/slot, Joachims et al. 2017; "
        "the logging policy puts likelier clicks higher) multiplies the click probability, and the device "
        "(mobile, desktop, tablet) shifts dwell; the truth stays the unexamined relevance.")

__all__ = ["Context", "draw_context", "examination", "truth_of_context", "CONTEXT_FEATURES", "DEVICES", "SLOTS"]
