"""The built-in synthetic recommendation world: known ground truth, for teaching.

Users and items sit near G genre centroids in a latent space; exposure is Zipf-skewed.
Two binary tasks, `click` and `like` (observed on clicks only), and a regression `dwell`.
Their preference directions follow the synthetic construction of Ma et al., "Modeling
Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018:
with the user-item interaction vector x = t_u * q_i and orthogonal unit vectors u1, u2,

    click score = c * u1 . x
    like score  = c * (rho * u1 + sqrt(1 - rho^2) * u2) . x

so `correlation` (rho) dials how much the two tasks agree: at 0.9 a click usually means a
like; at -0.5 the items users click are the ones they tend to dislike ("clickbait").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .dataset import Dataset
from .errors import DataError

GENRES = [
    ("space", ["star", "orbit", "galaxy", "rocket", "alien", "planet", "comet", "nebula", "astronaut", "moon"]),
    ("romance", ["love", "heart", "kiss", "wedding", "letter", "summer", "promise", "darling", "rose", "dance"]),
    ("horror", ["ghost", "blood", "shadow", "haunted", "curse", "grave", "scream", "demon", "night", "crypt"]),
    ("comedy", ["laugh", "prank", "clown", "party", "joke", "silly", "roommate", "mishap", "banana", "goof"]),
    ("nature", ["forest", "ocean", "river", "wildlife", "mountain", "bird", "whale", "desert", "jungle", "glacier"]),
    ("crime", ["detective", "heist", "murder", "gang", "police", "alibi", "suspect", "robbery", "witness", "mafia"]),
    ("sports", ["goal", "team", "coach", "champion", "race", "stadium", "match", "trophy", "league", "boxing"]),
    ("cooking", ["kitchen", "recipe", "chef", "bread", "spice", "feast", "bakery", "soup", "dessert", "grill"]),
    ("history", ["empire", "war", "king", "ancient", "revolution", "castle", "dynasty", "treaty", "pharaoh", "knight"]),
    ("music", ["song", "band", "guitar", "concert", "melody", "drum", "choir", "album", "rhythm", "opera"]),
    ("fantasy", ["dragon", "wizard", "magic", "sword", "elf", "quest", "spell", "kingdom", "potion", "giant"]),
    ("science", ["atom", "experiment", "laboratory", "gene", "physics", "robot", "theory", "microscope", "cell", "energy"]),
]
FILLER = ["story", "tale", "journey", "portrait", "chronicle", "saga", "study", "fable", "drama", "account"]
AGE_BANDS = ["18-24", "25-34", "35-49", "50+"]
REGIONS = ["north", "south", "east", "west", "central"]
PRICE_BANDS = ["budget", "standard", "premium"]
MAX_GENRES = len(GENRES)


@dataclass
class WorldConfig:
    """Knobs of the built-in world (the data page shows each of them)."""
    n_users: int = 1500
    n_items: int = 400
    n_genres: int = 8
    correlation: float = 0.5
    seed: int = 0
    impressions_per_user: int = 40
    latent_dim: int = 16
    zipf: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def _validate(cfg: WorldConfig) -> None:
    if not -1.0 <= cfg.correlation <= 1.0:
        raise DataError(f"Task correlation must lie between -1 and 1, got {cfg.correlation}.", fix="pick a value in [-1, 1]")
    if not 2 <= cfg.n_genres <= MAX_GENRES:
        raise DataError(f"The world has between 2 and {MAX_GENRES} genres, got {cfg.n_genres}.", fix=f"choose 2..{MAX_GENRES}")
    if cfg.n_users < 10 or cfg.n_items < 10:
        raise DataError("The world needs at least 10 users and 10 items.", fix="raise the number of users or items")
    if cfg.n_users * cfg.impressions_per_user > 20_000_000:
        raise DataError("That world would hold over 20 million impressions.", fix="use fewer users or impressions per user")
    if not 1 <= cfg.impressions_per_user <= cfg.n_items:
        raise DataError(
            f"Impressions per user must be between 1 and the number of items ({cfg.n_items}).",
            fix="lower impressions per user",
        )


def task_directions(dim: int, correlation: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """u1 (all-equal: 'likes its own genre') and the like direction rho*u1 + sqrt(1-rho^2)*u2."""
    u1 = np.ones(dim) / np.sqrt(dim)
    u2 = rng.normal(size=dim)
    u2 -= u2.dot(u1) * u1
    u2 /= np.linalg.norm(u2)
    return u1, correlation * u1 + np.sqrt(max(0.0, 1 - correlation**2)) * u2


def make_world(
    n_users: int = 1500,
    n_items: int = 400,
    n_genres: int = 8,
    correlation: float = 0.5,
    seed: int = 0,
    impressions_per_user: int = 40,
    latent_dim: int = 16,
    zipf: float = 1.0,
) -> Dataset:
    """Build the world; deterministic by seed. Ground truth lives in `dataset.ground_truth`."""
    cfg = WorldConfig(n_users, n_items, n_genres, float(correlation), seed, impressions_per_user, latent_dim, zipf)
    _validate(cfg)
    rng = np.random.default_rng(seed)
    d, G = latent_dim, n_genres

    centroids = rng.normal(size=(G, d))
    item_genre = rng.integers(0, G, size=n_items)
    region = rng.integers(0, len(REGIONS), size=n_users)
    # a user's favourite genre leans on their region: the signal that user attributes carry
    fav_bias = np.where(np.arange(G)[None, :] % len(REGIONS) == region[:, None], 2.0, 0.0)
    fav_p = np.exp(fav_bias)
    fav_p /= fav_p.sum(1, keepdims=True)
    user_genre = (fav_p.cumsum(1) > rng.random((n_users, 1))).argmax(1)
    age = rng.integers(0, len(AGE_BANDS), size=n_users)
    price = rng.integers(0, len(PRICE_BANDS), size=n_items)

    q = centroids[item_genre] + 0.6 * rng.normal(size=(n_items, d))
    t = centroids[user_genre] + 0.8 * rng.normal(size=(n_users, d))
    u1, w_like = task_directions(d, cfg.correlation, rng)

    pop = 1.0 / np.arange(1, n_items + 1) ** zipf
    pop = pop[rng.permutation(n_items)]
    pop /= pop.sum()

    # exposure: popularity mixed with the user's genre (what a real recommender would show)
    m = impressions_per_user
    users_rows, items_rows = [], []
    for start in range(0, n_users, 2000):
        stop = min(n_users, start + 2000)
        same = (user_genre[start:stop, None] == item_genre[None, :]).astype(float)
        p = 0.6 * pop[None, :] + 0.4 * same / np.maximum(same.sum(1, keepdims=True), 1)
        keys = np.log(p + 1e-12) + rng.gumbel(size=p.shape)
        top = np.argpartition(-keys, m - 1, axis=1)[:, :m]
        users_rows.append(np.repeat(np.arange(start, stop), m))
        items_rows.append(top.ravel())
    u_idx = np.concatenate(users_rows)
    i_idx = np.concatenate(items_rows)

    x = t[u_idx] * q[i_idx]
    s_click, s_like = x @ u1, x @ w_like
    # standardise over the impressions so `c` is a fixed signal strength
    s_click = (s_click - s_click.mean()) / (s_click.std() + 1e-9)
    s_like = (s_like - s_like.mean()) / (s_like.std() + 1e-9)
    log_pop = np.log(pop * n_items)
    click_logit = (1.6 * s_click + 0.3 * np.sin(2 * s_click) + 0.25 * log_pop[i_idx]
                   - 0.3 * (price[i_idx] == 2) + 0.15 * (age[u_idx] - 1.5) - 1.2)
    like_logit = (1.8 * s_like + 0.3 * np.sin(2 * s_like) + 0.35 * (price[i_idx] == 2)
                  + 0.25 * (age[u_idx] - 1.5) + 0.2)
    click = (rng.random(len(u_idx)) < 1 / (1 + np.exp(-click_logit))).astype(float)
    like = (rng.random(len(u_idx)) < 1 / (1 + np.exp(-like_logit))).astype(float)
    like[click == 0] = np.nan
    dwell = np.exp(0.8 + 0.35 * like_logit + 0.25 * rng.normal(size=len(u_idx)))
    dwell[click == 0] = np.nan

    # time: each user's impressions spread over a year, in random order
    t0 = 1_700_000_000
    ts = t0 + rng.integers(0, 365 * 86400, size=len(u_idx))

    uid = np.array([f"u{k:05d}" for k in range(n_users)], dtype=object)
    iid = np.array([f"i{k:05d}" for k in range(n_items)], dtype=object)
    inter = pd.DataFrame({
        "user_id": uid[u_idx], "item_id": iid[i_idx], "timestamp": ts.astype(np.int64),
        "click": click, "like": like, "dwell": np.round(dwell, 2),
    })
    inter = inter.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)

    names = [g for g, _ in GENRES[:G]]
    titles, descs = _item_texts(item_genre, rng)
    items = pd.DataFrame({
        "title": titles, "description": descs,
        "genre": [names[g] for g in item_genre],
        "price_band": [PRICE_BANDS[p] for p in price],
    }, index=pd.Index(iid, name="item_id"))
    users = pd.DataFrame({
        "age_band": [AGE_BANDS[a] for a in age], "region": [REGIONS[r] for r in region],
    }, index=pd.Index(uid, name="user_id"))

    gt = {
        "config": cfg.to_dict(),
        "item_genre": pd.Series([names[g] for g in item_genre], index=iid),
        "user_genre": pd.Series([names[g] for g in user_genre], index=uid),
        "item_latent": q, "user_latent": t,
        "click_direction": u1, "like_direction": w_like,
    }
    return Dataset(
        interactions=inter, items=items, users=users, layout="world",
        name=f"world(users={n_users}, items={n_items}, genres={G}, rho={cfg.correlation:g}, seed={seed})",
        item_features={"genre": "categorical", "price_band": "categorical", "title": "text", "description": "text"},
        user_features={"age_band": "categorical", "region": "categorical"},
        title_column="title", text_columns=["title", "description"],
        suggested_tasks=["click=click", "like=like|click", "dwell=dwell:reg|click"],
        ground_truth=gt,
        notes=[f"Synthetic world: task correlation rho = {cfg.correlation:g} (Ma et al., KDD 2018 construction)."],
    )


def world_logits(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The noiseless click and like preference scores of every impression (for teaching and tests)."""
    gt = ds.ground_truth
    if not gt or "item_latent" not in gt:
        raise DataError("This dataset is not a synthetic world; it has no ground truth.")
    u = gt["user_genre"].index.get_indexer(ds.interactions["user_id"])
    i = gt["item_genre"].index.get_indexer(ds.interactions["item_id"])
    x = gt["user_latent"][u] * gt["item_latent"][i]
    return x @ gt["click_direction"], x @ gt["like_direction"]


def _item_texts(item_genre: np.ndarray, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """A title and a one-line description per item, drawn from its genre's word pool."""
    titles, descs, seen = [], [], {}
    for g in item_genre:
        words = GENRES[g][1]
        a, b, c = rng.choice(len(words), size=3, replace=False)
        base = f"The {words[a].title()} {words[b].title()}"
        seen[base] = seen.get(base, 0) + 1
        titles.append(base if seen[base] == 1 else f"{base} {seen[base]}")
        filler = FILLER[rng.integers(0, len(FILLER))]
        descs.append(f"A {filler} of {words[a]}, {words[c]} and {words[b]}.")
    return titles, descs
