"""An industry-layout impression log with known effects: the shape of Ali-CCP, Tenrec, KuaiRand.

One row per impression: `user_id`, `item_id`, the labels `click` and `purchase` (a conversion,
possible only after a click: ESMM's setting, Ma et al., SIGIR 2018; Ali-CCP's columns), and 30
integer-coded feature fields named by number as in Ali-CCP (`121`, `206`, `301`, `508`, ...).
Each field's values are codes of one global dictionary (`field_codes`: distinct random integers
below 10^6, sorted within a field, so code order is the order of what they code, e.g. the slot),
a handful to a few hundred per field. `split` (optional): train / valid / test, by log order
(the first 80% of rows, the next 10%, the last 10%, as a log split by day).

The fields (`FIELDS`: role, meaning, how many codes):

- 9 user fields, constant per user: 121 (segment, 300: it places the user's taste), 122, 124
  (gender, 2), 125 (age band, 8), 126, 127, 128, 129, 130 (noise);
- 6 item fields, constant per item: 206 (category, 300: it places the item), 207 (shop), 210,
  216 (brand), 217 (price band, 20: conversions fall with price), 218 (noise);
- 11 context fields, varying per impression: 301 device, 302 position, 303 hour, 304 page,
  305 query category, 308 channel carry effects; 306 network, 307 weekday, 309 OS version,
  310 session depth, 311 ad format are noise;
- 4 cross fields, one code per (user field, item field) pair, hashed: 508 (121 x 206), 509
  (125 x 217), 702 (127 x 207), 853 (129 x 216); no effect of their own.

The labels (logits; P = sigmoid):

    click    = CLICK_BASE + relevance + quality_i + sum of the context effects on the click
    purchase = click * Bernoulli(sigmoid(BUY_BASE + 0.8 relevance' - 0.05 price band
                                         + sum of the context effects on the purchase))

relevance = user taste . item vector (standard deviation 1; the taste's centre is the user's
segment's, the item's its category's); relevance' agrees with it at correlation 0.7; quality_i
~ N(0, 0.5^2). The context effects, on the logit scale (`EFFECTS` holds them as arrays):

| field | values | click | purchase |
|---|---|---|---|
| 301 device | mobile, desktop, tablet, other (60/25/10/5%) | +0.2, 0, +0.1, -0.2 | -0.4, 0, -0.1, -0.3 |
| 302 position | slot 1-10, uniform | -0.15 per slot below the first (slot 10: -1.35) | none |
| 303 hour | 0-23, more in the evening | +0.3 cos(2 pi (hour - 21) / 24) | none |
| 304 page | 1-5 (50/25/12/8/5%) | -0.2 per page after the first | none |
| 305 query category | the item's category on 30% of rows, else any | +0.8 when it is the item's | +0.5 when it is |
| 308 channel | 6 channels (40/20/10/10/10/10%) | 0, +0.3, -0.3, +0.5, 0, -0.2 | 0, 0, +0.6, -0.5, 0, 0 |

Measured on the raw rates the click effects come out about 0.85 times as large (the spread of
relevance across users and items flattens the log-odds of a mixture). Among the clicks, a field
that moves the click also moves the purchase rate though it has no effect on the purchase: a
click from slot 10 needed more relevance to happen, and relevance also sells (slot 10's clicks
convert about +0.2 in log-odds above slot 1's): the sample selection bias ESMM models away.

With the intercepts, about 10% of impressions are clicked and 15% of clicks convert (1.5% of
impressions). Users are drawn by a log-normal activity, items by Zipf popularity (exponent 1).
Deterministic by seed; vectorised numpy (5M rows in seconds), `write_log` writes CSV or Parquet.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

# field -> (role, meaning, number of codes)
FIELDS: dict[str, tuple[str, str, int]] = {
    "121": ("user", "segment", 300), "122": ("user", "city", 200), "124": ("user", "gender", 2),
    "125": ("user", "age band", 8), "126": ("user", "occupation", 100), "127": ("user", "purchase level", 300),
    "128": ("user", "lifestyle", 120), "129": ("user", "membership", 150), "130": ("user", "app version", 100),
    "206": ("item", "category", 300), "207": ("item", "shop", 500), "210": ("item", "intention node", 400),
    "216": ("item", "brand", 450), "217": ("item", "price band", 20), "218": ("item", "item age", 30),
    "301": ("context", "device", 4), "302": ("context", "position", 10), "303": ("context", "hour", 24),
    "304": ("context", "page", 5), "305": ("context", "query category", 300), "306": ("context", "network", 5),
    "307": ("context", "weekday", 7), "308": ("context", "channel", 6), "309": ("context", "os version", 120),
    "310": ("context", "session depth", 100), "311": ("context", "ad format", 8),
    "508": ("cross", "segment x category", 500), "509": ("cross", "age x price", 160),
    "702": ("cross", "purchase level x shop", 500), "853": ("cross", "membership x brand", 500),
}
CROSSES = {"508": ("121", "206"), "509": ("125", "217"), "702": ("127", "207"), "853": ("129", "216")}
CONTEXT_EFFECTS = ("301", "302", "303", "304", "305", "308")  # context fields with an effect; the rest are noise
DEVICES = ("mobile", "desktop", "tablet", "other")
EFFECTS = {  # logit shifts by a field's value (its index among the field's codes)
    "click": {"301": np.array([0.2, 0.0, 0.1, -0.2]), "302": -0.15 * np.arange(10),
              "303": 0.3 * np.cos(2 * np.pi * (np.arange(24) - 21) / 24), "304": -0.2 * np.arange(5),
              "308": np.array([0.0, 0.3, -0.3, 0.5, 0.0, -0.2])},
    "purchase": {"301": np.array([-0.4, 0.0, -0.1, -0.3]), "308": np.array([0.0, 0.0, 0.6, -0.5, 0.0, 0.0])},
}
QUERY_MATCH = {"click": 0.8, "purchase": 0.5}  # 305 equal to the item's category (206)
QUERY_MATCH_SHARE = 0.3
SHARES = {"301": (0.60, 0.25, 0.10, 0.05), "304": (0.50, 0.25, 0.12, 0.08, 0.05),
          "308": (0.40, 0.20, 0.10, 0.10, 0.10, 0.10)}
HOUR_WEIGHT = 1 + 0.6 * np.cos(2 * np.pi * (np.arange(24) - 20) / 24)  # busier evenings
PRICE_ON_PURCHASE = -0.05  # per price band (217)
CLICK_BASE, BUY_BASE = -2.6, -1.85  # about 10% clicks, 15% of them converting
LATENT = 8
SPLIT_SHARES = (0.8, 0.1, 0.1)
LABELS = ("click", "purchase")


@functools.lru_cache(maxsize=1)
def _dictionary() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20_260)  # one dictionary, whatever the seed: logs of any seed share it
    sizes = [n for _, _, n in FIELDS.values()]
    codes = rng.choice(np.arange(1, 1_000_000, dtype=np.int32), size=sum(sizes), replace=False)
    out, a = {}, 0
    for f, n in zip(FIELDS, sizes):
        out[f] = np.sort(codes[a:a + n])
        a += n
    return out


def field_codes(field: str) -> np.ndarray:
    """The codes of `field`, sorted: value k of the field (slot k + 1, the k-th device) is code [k]."""
    return _dictionary()[field]


def decode(field: str, codes) -> np.ndarray:
    """The value index (0-based) of each code of `field`."""
    return np.searchsorted(field_codes(field), np.asarray(codes))


def _draw(rng: np.random.Generator, n: int, shares) -> np.ndarray:
    cdf = np.cumsum(shares, dtype=float)
    return np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(n), side="right"), len(cdf) - 1)


def make_industry(rows: int = 200_000, *, seed: int = 0, users: int | None = None, items: int | None = None,
                  split: bool = False) -> pd.DataFrame:
    """The log as a frame: user_id, item_id (int64), click, purchase (int8), the 30 fields (int32,
    codes of `field_codes`) and, with `split`, a `split` column (train / valid / test)."""
    if not isinstance(rows, (int, np.integer)) or rows < 100:
        raise DataError(f"The log needs at least 100 rows (got {rows}).", fix="e.g. --rows 200000")
    n_users = int(users or max(50, rows // 40))
    n_items = int(items or max(50, rows // 200))
    if n_users < 2 or n_items < 2:
        raise DataError("The log needs at least 2 users and 2 items.", fix="raise --users / --items")
    r_ent, r_rows, r_lab = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    card = {f: n for f, (_, _, n) in FIELDS.items()}

    # users and items: their fields, and latent vectors centred on their segment / category
    ufield = {f: r_ent.integers(0, n, n_users) for f, (role, _, n) in FIELDS.items() if role == "user"}
    ifield = {f: r_ent.integers(0, n, n_items) for f, (role, _, n) in FIELDS.items() if role == "item"}
    seg_c, cat_c = r_ent.normal(size=(card["121"], LATENT)), r_ent.normal(size=(card["206"], LATENT))
    taste = (seg_c[ufield["121"]] + 0.7 * r_ent.normal(size=(n_users, LATENT))) / np.sqrt(1.49 * LATENT)
    vec = (cat_c[ifield["206"]] + 0.7 * r_ent.normal(size=(n_items, LATENT))) / np.sqrt(1.49)
    # relevance' (the purchase's) shares 0.7 of the click's direction
    vec_buy = 0.7 * vec + np.sqrt(1 - 0.49) * r_ent.normal(size=(n_items, LATENT))
    quality = 0.5 * r_ent.normal(size=n_items)
    activity = r_ent.lognormal(0, 1, n_users)
    pop = 1 / np.arange(1, n_items + 1)
    pop = pop[r_ent.permutation(n_items)]

    u = _draw(r_rows, rows, activity)
    i = _draw(r_rows, rows, pop)
    ctx = {
        "301": _draw(r_rows, rows, SHARES["301"]), "302": r_rows.integers(0, 10, rows),
        "303": _draw(r_rows, rows, HOUR_WEIGHT), "304": _draw(r_rows, rows, SHARES["304"]),
        "306": r_rows.integers(0, card["306"], rows), "307": r_rows.integers(0, 7, rows),
        "308": _draw(r_rows, rows, SHARES["308"]), "309": _draw(r_rows, rows, 1 / np.arange(1, card["309"] + 1)),
        "310": _draw(r_rows, rows, 1 / np.arange(1, card["310"] + 1) ** 0.7),
        "311": r_rows.integers(0, card["311"], rows),
    }
    match = r_rows.random(rows) < QUERY_MATCH_SHARE
    ctx["305"] = np.where(match, ifield["206"][i], r_rows.integers(0, card["305"], rows))
    match = ctx["305"] == ifield["206"][i]  # a random query may hit the category too

    rel = np.einsum("nd,nd->n", taste[u], vec[i])
    rel_buy = np.einsum("nd,nd->n", taste[u], vec_buy[i])
    click_logit = CLICK_BASE + rel + quality[i] + QUERY_MATCH["click"] * match
    buy_logit = BUY_BASE + 0.8 * rel_buy + PRICE_ON_PURCHASE * ifield["217"][i] + QUERY_MATCH["purchase"] * match
    for f, shift in EFFECTS["click"].items():
        click_logit += shift[ctx[f]]
    for f, shift in EFFECTS["purchase"].items():
        buy_logit += shift[ctx[f]]
    click = r_lab.random(rows) < 1 / (1 + np.exp(-click_logit))
    purchase = click & (r_lab.random(rows) < 1 / (1 + np.exp(-buy_logit)))
    del rel, rel_buy, click_logit, buy_logit

    cols: dict[str, np.ndarray] = {"user_id": u.astype(np.int64), "item_id": i.astype(np.int64),
                                   "click": click.astype(np.int8), "purchase": purchase.astype(np.int8)}
    d = _dictionary()
    for f, (role, _, n) in FIELDS.items():
        if role == "user":
            v = ufield[f][u]
        elif role == "item":
            v = ifield[f][i]
        elif role == "context":
            v = ctx[f]
        else:
            a, b = CROSSES[f]
            key = ufield[a][u].astype(np.int64) * card[b] + ifield[b][i]  # the pair, exactly
            v = key if card[a] * card[b] <= n else (key * 2_654_435_761) % (1 << 32) % n  # hashed into n codes
        cols[f] = d[f][v]
    df = pd.DataFrame(cols)
    if split:
        cut = np.cumsum(np.round(np.array(SPLIT_SHARES[:2]) * rows).astype(np.int64))
        names = np.array(["train", "valid", "test"], dtype=object)
        df["split"] = names[np.searchsorted(cut, np.arange(rows), side="right")]
    return df


def columns_by_role(df: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """The field columns by role (user, item, context, cross), in the log's order."""
    out: dict[str, list[str]] = {}
    for f, (role, _, _) in FIELDS.items():
        if df is None or f in df.columns:
            out.setdefault(role, []).append(f)
    return out


def mapping_of(df: pd.DataFrame) -> dict:
    """A column mapping for the log (mtrlib.data.mapping's keys): ids, labels, the fields by role
    (crosses vary with the pair, so they are context), position 302, the split if there is one."""
    roles = columns_by_role(df)
    m = {"user": "user_id", "item": "item_id", "timestamp": None, "labels": list(LABELS),
         "user_features": {f: "categorical" for f in roles.get("user", [])},
         "item_features": {f: "categorical" for f in roles.get("item", [])},
         "context_features": {f: "categorical" for f in roles.get("context", []) + roles.get("cross", [])},
         "position": "302" if "302" in df.columns else None}
    if "split" in df.columns:
        m["split"] = "split"
    return m


def write_log(df: pd.DataFrame, path) -> Path:
    """Write the log as CSV or Parquet (by the suffix), through pyarrow's multi-threaded writers."""
    import pyarrow as pa  # deferred: heavy, only the writers need it
    import pyarrow.csv as pacsv  # deferred: heavy
    import pyarrow.parquet as pq  # deferred: heavy

    path = Path(path)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if path.suffix == ".parquet":
        pq.write_table(table, str(path))
    else:
        pacsv.write_csv(table, str(path))
    return path


__all__ = ["make_industry", "write_log", "field_codes", "decode", "mapping_of", "columns_by_role", "FIELDS",
           "EFFECTS", "CONTEXT_EFFECTS", "CROSSES", "LABELS"]
