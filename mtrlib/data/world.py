"""The built-in synthetic recommendation world: known ground truth, for teaching.

The story. Users and items sit near G genre centroids in a latent space (an item also
carries one of M *moods*, a second direction in that space whose words appear in its title
and description); exposure mixes Zipf-skewed popularity with the user's favourite genre.
Two binary tasks, `click` and `like`, and a regression `dwell` (observed on clicks). Their
preference directions follow the synthetic construction of Ma et al., "Modeling Task
Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018: with the
user-item interaction vector x = t_u * q_i and orthogonal unit vectors u1, u2,

    click score = c * u1 . x
    like score  = c * (rho * u1 + sqrt(1 - rho^2) * u2) . x

so `correlation` (rho) dials how much the two tasks agree: at 0.9 a click usually means a
like; at -0.5 the items users click are the ones they tend to dislike ("clickbait").

The teaching dimensions each have their own knob:

- `like_observed`: "all" (default) asks every impression for a like (a thumbs up or down on
  each card shown), so both binary tasks have the same sample and moving rho changes only how
  much they agree: the correlation lesson (Ma et al.'s figure). "clicks" observes a like only
  after a click, the click -> like funnel of e-commerce (a purchase follows a click): the
  ESMM lesson (Ma et al., SIGIR 2018), whose like sample depends on the click task.
- `moods`: the number of moods (sub-topics). An item's latent vector is its genre centroid
  plus its mood's direction plus noise, and its text names the mood, so text carries what the
  categorical genre does not: the language-model lesson (cold items placed by their text).
  0 keeps the text to the genre's words (the text then only repeats the genre feature).
- size (`n_users`, `n_items`, `impressions_per_user`): the world is generated in chunks,
  vectorised, so a world of MovieLens-25M's shape (162k users, 59k items, 25M impressions)
  is built from the CLI; the app keeps a sane limit (`APP_MAX_IMPRESSIONS`).
- `context` (off by default; off, the world is unchanged): each impression's slot 1-10 and
  device, context columns of the interactions. P(click) = P(examined | slot) x P(relevant),
  with more relevant items shown higher (position bias, confounded); the device shifts dwell.
  The truth stays the unexamined relevance. Curve, effect sizes and citations: `world_context`.

Everything is deterministic by seed. `ground_truth` holds the latent vectors, genres, moods
and what `true_logits` needs to give the noiseless click / like logits of *any* pair (the
truth a recommendation is compared with: `mtrlib.eval.truth`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .dataset import Dataset
from .world_context import CONTEXT_FEATURES, NOTE as CONTEXT_NOTE, draw_context, truth_of_context
from ..errors import DataError
from ..registry import knob

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
# moods: words a description uses for the item's sub-topic (its second latent direction)
MOODS = [
    ("dark", ["dark", "grim", "bleak", "brooding", "sinister", "stormy", "bitter", "haunting"]),
    ("uplifting", ["joyful", "bright", "hopeful", "sunny", "cheerful", "radiant", "warm-hearted", "triumphant"]),
    ("quirky", ["quirky", "whimsical", "zany", "offbeat", "peculiar", "wacky", "eccentric", "absurd"]),
    ("epic", ["epic", "grand", "mighty", "legendary", "vast", "heroic", "sweeping", "monumental"]),
    ("gentle", ["gentle", "quiet", "tender", "calm", "soft", "peaceful", "serene", "soothing"]),
    ("tense", ["tense", "frantic", "urgent", "gripping", "breathless", "nervy", "relentless", "pulse-pounding"]),
    ("nostalgic", ["nostalgic", "faded", "vintage", "bygone", "wistful", "old-fashioned", "sepia", "remembered"]),
    ("cerebral", ["cerebral", "clever", "intricate", "puzzling", "thoughtful", "philosophical", "layered", "subtle"]),
]
FILLER = ["story", "tale", "journey", "portrait", "chronicle", "saga", "study", "fable", "drama", "account"]
AGE_BANDS = ["18-24", "25-34", "35-49", "50+"]
REGIONS = ["north", "south", "east", "west", "central"]
PRICE_BANDS = ["budget", "standard", "premium"]
MAX_GENRES = len(GENRES)
MAX_MOODS = len(MOODS)
LIKE_OBSERVED = ("all", "clicks")
APP_MAX_IMPRESSIONS = 20_000_000  # the app's limit (Data page, URL); the CLI passes its own

# the world's constants (documented in README's "The built-in world")
USER_SPREAD = 0.3  # a user's taste around their genre's centroid (per latent dimension)
ITEM_SPREAD = 0.25  # an item's own deviation from its genre and mood
MOOD_SCALE = 1.0  # a mood's direction, per dimension (a genre centroid has 1 per dimension on average)
GENRE_OVERLAP = 0.5  # shared structure between genre centroids (0: all orthogonal)
PERSONAL_SPREAD = 0.5  # an item's own deviation on the personal part (its mood gives the rest)
CLICK_SIGNAL = 2.5  # logit per standard deviation of the click score
MOOD_APPEAL = 0.8  # how many clicks a mood draws, whatever the user (std of a per-mood logit shift)
LIKE_SIGNAL = 2.5
GENRE_EXPOSURE = 0.4  # share of exposure drawn from the user's favourite genre (the rest by popularity)
CHUNK_ROWS = 1 << 20  # impressions per chunk when scoring and labelling


@dataclass
class WorldConfig:
    """Knobs of the built-in world (the Data page, the URL and the CLI show each of them)."""
    # the CLI's --users / --items also name tables (with --data), so they are written by hand there
    n_users: int = knob(1500, "Users", noun="number of users", lo=10, hi=100_000, url="users", widget="none",
                        help="world: number of users")
    n_items: int = knob(400, "Items", noun="number of items", lo=10, hi=100_000, url="items", widget="none",
                        help="world: number of items")
    n_genres: int = knob(8, "Genres", noun="number of genres", lo=2, hi=MAX_GENRES, flag="--genres", url="genres",
                         widget="none", help="world: number of genres")
    correlation: float = knob(0.5, "Task correlation ρ", noun="task correlation", lo=-1.0, hi=1.0, step=0.1,
                              flag="--correlation", url="rho", aliases=("rho",), widget="none",
                              help="world: task correlation rho in [-1, 1]")
    seed: int = knob(0, "World seed", noun="world seed", flag="--world-seed", url="wseed", widget="none",
                     help="world: seed of the generated data (default 0)")
    impressions_per_user: int = knob(40, "Impressions per user", noun="impressions per user", flag="--impressions",
                                     url="imp", widget="none", help="world: impressions per user")
    latent_dim: int = knob(16, "Latent dimension", noun="latent dimension", lo=4, hi=256, widget="none",
                           help="world: width of the hidden tastes the labels come from")
    zipf: float = knob(1.0, "Popularity skew (zipf)", noun="popularity skew", lo=0.0, hi=5.0, widget="none",
                       help="world: how much more popular the popular items are")
    # "all": every impression (correlation lesson); "clicks": the funnel (ESMM)
    like_observed: str = knob("all", "Like observed", noun="like_observed", choices=LIKE_OBSERVED, widget="none",
                              flag="--like-observed", url="likeobs",
                              fix="use 'all' (a like asked on every impression) or 'clicks' (only after a click)",
                              help="world: a like asked on every impression (all, default) or only after a click (clicks)")
    moods: int = knob(6, "Moods", noun="number of moods", lo=0, hi=MAX_MOODS, flag="--moods", url="moods", widget="none",
                      help="world: moods named in the item text, 0-8 (default 6)")  # sub-topics named in item text
    # each impression's slot (examined less further down) and device: position bias (world_context.py)
    context: bool = knob(False, "Impression context", widget="none", flag="--world-context", flag_sets=True,
                         url="ctx", help="world: log each impression's slot 1-10 (P(examined) = 1/slot multiplies "
                                         "the click probability) and device (shifts dwell); off by default")

    def to_dict(self) -> dict:
        return asdict(self)


def _validate(cfg: WorldConfig, max_impressions: int | None) -> None:
    if not -1.0 <= cfg.correlation <= 1.0:
        raise DataError(f"Task correlation must lie between -1 and 1, got {cfg.correlation}.", fix="pick a value in [-1, 1]")
    if not 2 <= cfg.n_genres <= MAX_GENRES:
        raise DataError(f"The world has between 2 and {MAX_GENRES} genres, got {cfg.n_genres}.", fix=f"choose 2..{MAX_GENRES}")
    if not 0 <= cfg.moods <= MAX_MOODS:
        raise DataError(f"The world has between 0 and {MAX_MOODS} moods, got {cfg.moods}.", fix=f"choose 0..{MAX_MOODS}")
    if cfg.like_observed not in LIKE_OBSERVED:
        raise DataError(f"Unknown like_observed '{cfg.like_observed}'.",
                        fix="use 'all' (a like asked on every impression) or 'clicks' (only after a click)")
    if not isinstance(cfg.context, (bool, np.bool_)):
        raise DataError(f"The world's context setting is on or off (got {cfg.context!r}).", fix="true or false")
    if cfg.n_users < 10 or cfg.n_items < 10:
        raise DataError("The world needs at least 10 users and 10 items.", fix="raise the number of users or items")
    if not 4 <= cfg.latent_dim <= 256:
        raise DataError(f"The latent dimension must be 4 to 256 (got {cfg.latent_dim}).", fix="e.g. 16")
    if not 0 <= cfg.zipf <= 5:
        raise DataError(f"The popularity skew (zipf) must be 0 to 5 (got {cfg.zipf}).", fix="e.g. 1.0")
    n = cfg.n_users * cfg.impressions_per_user
    if max_impressions is not None and n > max_impressions:
        raise DataError(f"That world would hold {n:,} impressions, over the limit of {max_impressions:,} here.",
                        fix="use fewer users or impressions per user (the CLI `python -m mtrlib world` builds bigger ones)")
    if not 1 <= cfg.impressions_per_user <= cfg.n_items:
        raise DataError(
            f"Impressions per user must be between 1 and the number of items ({cfg.n_items}).",
            fix="lower impressions per user",
        )


def _directions(dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The orthogonal unit vectors u1, u2 of Ma et al.'s construction: u1 all-equal on the genre
    part of the latent space ("likes its own genre"), u2 a zero-mean random direction on the
    personal part (a taste the genre says nothing about)."""
    h = _genre_dims(dim)
    u1 = np.zeros(dim)
    u1[:h] = 1 / np.sqrt(h)
    u2 = np.zeros(dim)
    if dim > h:
        u2[h:] = rng.normal(size=dim - h)
        if dim - h > 1:
            u2[h:] -= u2[h:].mean()
        u2 /= max(np.linalg.norm(u2), 1e-12)
    return u1, u2


def _genre_dims(dim: int) -> int:
    """The first three quarters of the latent dimensions carry genre (and mood); the rest, a
    personal taste."""
    return max(1, dim - dim // 4)


def _centroids(G: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """G genre centroids of length sqrt(h): as distinct as the space allows (orthogonal when
    h >= G) plus a little shared structure, so some genres are closer than others."""
    base = rng.normal(size=(max(G, h), h))
    qm, _ = np.linalg.qr(base.T if h >= G else base)  # orthonormal columns
    dirs = qm[:, :G].T if h >= G else base[:G] / np.linalg.norm(base[:G], axis=1, keepdims=True)
    c = dirs + GENRE_OVERLAP * rng.normal(size=(G, h)) / np.sqrt(h)
    return np.sqrt(h) * c / np.linalg.norm(c, axis=1, keepdims=True)


def suggested_tasks(like_observed: str) -> list[str]:
    like = "like=like" if like_observed == "all" else "like=like|click"
    return ["click=click", like, "dwell=dwell:reg|click"]


def make_world(*, max_impressions: int | None = APP_MAX_IMPRESSIONS, **fields) -> Dataset:
    """Build the world from WorldConfig fields (keywords); deterministic by seed. Ground truth
    lives in `dataset.ground_truth`. `max_impressions`: the size limit (None: no limit)."""
    try:
        cfg = WorldConfig(**fields)
    except TypeError as e:
        raise DataError(f"Unknown world setting ({e}).", fix=f"settings are: {', '.join(WorldConfig().to_dict())}") from None
    cfg.correlation = float(cfg.correlation)
    _validate(cfg, max_impressions)
    # independent streams per stage, so one stage's sizes never shift another's numbers
    r_lat, r_exp, r_lab, r_txt, r_ctx = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(5))
    n_users, n_items, d, G, M = cfg.n_users, cfg.n_items, cfg.latent_dim, cfg.n_genres, cfg.moods

    h = _genre_dims(d)
    centroids = _centroids(G, h, r_lat)
    mood_dirs = MOOD_SCALE * r_lat.normal(size=(max(M, 1), h))
    mood_taste = r_lat.normal(size=(max(M, 1), d - h))  # what a mood offers the personal taste
    item_genre = r_lat.integers(0, G, size=n_items)
    item_mood = r_lat.integers(0, M, size=n_items) if M else np.full(n_items, -1)
    region = r_lat.integers(0, len(REGIONS), size=n_users)
    # a user's favourite genre leans on their region: the signal that user attributes carry
    fav_bias = np.where(np.arange(G)[None, :] % len(REGIONS) == region[:, None], 2.0, 0.0)
    fav_p = np.exp(fav_bias)
    fav_p /= fav_p.sum(1, keepdims=True)
    user_genre = (fav_p.cumsum(1) > r_lat.random((n_users, 1))).argmax(1)
    age = r_lat.integers(0, len(AGE_BANDS), size=n_users)
    price = r_lat.integers(0, len(PRICE_BANDS), size=n_items)

    # latent vectors: [genre part | personal part]. An item's genre part is its genre centroid
    # plus its mood's direction plus its own spread; a user's is their favourite genre's centroid
    # plus their own spread. The personal part carries no genre: a user's own taste, and what
    # an item's mood (plus its own spread) offers that taste.
    q = np.empty((n_items, d))
    q[:, :h] = centroids[item_genre] + ITEM_SPREAD * r_lat.normal(size=(n_items, h))
    if M:
        q[:, :h] += mood_dirs[item_mood]
    q[:, h:] = PERSONAL_SPREAD * r_lat.normal(size=(n_items, d - h)) + (mood_taste[item_mood] if M else 0)
    t = np.empty((n_users, d))
    t[:, :h] = centroids[user_genre] + USER_SPREAD * r_lat.normal(size=(n_users, h))
    t[:, h:] = r_lat.normal(size=(n_users, d - h))
    u1, u2 = _directions(d, r_lat)

    pop = 1.0 / np.arange(1, n_items + 1) ** cfg.zipf
    pop = pop[r_lat.permutation(n_items)]
    pop /= pop.sum()

    u_idx, i_idx = _exposure(r_exp, user_genre, item_genre, pop, cfg.impressions_per_user)
    n = len(u_idx)

    # the noiseless preference scores. Each projection is standardised over the impressions, so
    # that rho is the correlation of the click and like scores and the coefficients in `_logits`
    # are fixed signal strengths (the truth keeps the constants: any pair can be scored)
    g_part, p_part = np.empty(n), np.empty(n)
    for a in range(0, n, CHUNK_ROWS):
        x = t[u_idx[a:a + CHUNK_ROWS]] * q[i_idx[a:a + CHUNK_ROWS]]
        g_part[a:a + CHUNK_ROWS], p_part[a:a + CHUNK_ROWS] = x @ u1, x @ u2
    norm = {"genre": (float(g_part.mean()), float(g_part.std() + 1e-9)),
            "personal": (float(p_part.mean()), float(p_part.std() + 1e-9))}
    appeal = MOOD_APPEAL * (r_lat.normal(size=max(M, 1))[item_mood] if M else np.zeros(n_items))
    truth = {"norm": norm, "rho": cfg.correlation, "log_pop": np.log(pop * n_items), "price": price, "age": age,
             "appeal": appeal}
    s_click, s_like = _scores(truth, g_part, p_part)
    del g_part, p_part

    # time: each user's impressions spread over a year, in random order
    ts = 1_700_000_000 + r_exp.integers(0, 365 * 86400, size=n)
    order = np.lexsort((ts, u_idx))  # by user, then time (ids are zero-padded: string order = row order)
    ctx = None
    if cfg.context:  # slots follow a noisy ranking of the true click logits (world_context.py)
        ctx = draw_context(r_ctx, order, cfg.impressions_per_user, np.concatenate([
            _logits(truth, s_click[a:a + CHUNK_ROWS], s_like[a:a + CHUNK_ROWS], u_idx[a:a + CHUNK_ROWS],
                    i_idx[a:a + CHUNK_ROWS])[0] for a in range(0, n, CHUNK_ROWS)]))

    click = np.empty(n)
    like = np.empty(n)
    dwell = np.empty(n)
    for a in range(0, n, CHUNK_ROWS):
        b = min(n, a + CHUNK_ROWS)
        cl, ll = _logits(truth, s_click[a:b], s_like[a:b], u_idx[a:b], i_idx[a:b])
        p_click = _sigmoid(cl) if ctx is None else ctx.examined(a, b) * _sigmoid(cl)  # examined x relevant
        click[a:b] = r_lab.random(b - a) < p_click
        like[a:b] = r_lab.random(b - a) < _sigmoid(ll)
        log_dwell = 0.8 + 0.35 * ll + 0.25 * r_lab.normal(size=b - a)
        dwell[a:b] = np.round(np.exp(log_dwell if ctx is None else log_dwell + ctx.dwell_shift(a, b)), 2)
    del s_click, s_like
    if cfg.like_observed == "clicks":
        like[click == 0] = np.nan
    dwell[click == 0] = np.nan

    width = max(5, len(str(max(n_users, n_items) - 1)))
    uid = np.array([f"u{k:0{width}d}" for k in range(n_users)], dtype=object)
    iid = np.array([f"i{k:0{width}d}" for k in range(n_items)], dtype=object)
    inter = pd.DataFrame({
        "user_id": uid[u_idx[order]], "item_id": iid[i_idx[order]], "timestamp": ts[order].astype(np.int64),
        "click": click[order], "like": like[order], "dwell": dwell[order],
        **(ctx.columns(order) if ctx is not None else {}),
    })
    del click, like, dwell, ts, order

    names = [g for g, _ in GENRES[:G]]
    mood_names = [m for m, _ in MOODS[:M]]
    titles, descs = _item_texts(item_genre, item_mood, r_txt)
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
        "item_mood": pd.Series([mood_names[m] if m >= 0 else None for m in item_mood], index=iid, dtype=object),
        "item_latent": q, "user_latent": t,
        "click_direction": u1, "like_direction": cfg.correlation * u1 + np.sqrt(1 - cfg.correlation**2) * u2,
        "personal_direction": u2,
        "truth": truth,
    }
    if ctx is not None:  # the examination curve and the device effects (the truth above ignores them)
        gt["context"] = truth_of_context()
    funnel = "a like is asked on every impression" if cfg.like_observed == "all" else "a like is observed only after a click"
    return Dataset(
        interactions=inter, items=items, users=users, layout="world",
        name=f"world(users={n_users}, items={n_items}, genres={G}, rho={cfg.correlation:g}, seed={cfg.seed}"
             f"{', context' if ctx is not None else ''})",
        item_features={"genre": "categorical", "price_band": "categorical", "title": "text", "description": "text"},
        user_features={"age_band": "categorical", "region": "categorical"},
        title_column="title", text_columns=["title", "description"],
        suggested_tasks=suggested_tasks(cfg.like_observed),
        ground_truth=gt,
        notes=[f"Synthetic world: task correlation rho = {cfg.correlation:g} (Ma et al., KDD 2018 construction); "
               f"{funnel}; {M} moods in the item text.", *([CONTEXT_NOTE] if ctx is not None else [])],
        **(_context_fields() if ctx is not None else {}),
    )


def _context_fields() -> dict:
    """A context world's Dataset fields: the slot and the device are categorical context features."""
    return {"context_features": dict(CONTEXT_FEATURES), "position_column": "position",
            "reasons": {"position": "the world's slot (1-10) the item was shown in: position bias",
                        "device": "the world's device of the impression (mobile, desktop, tablet): shifts dwell"}}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _scores(truth: dict, g_part: np.ndarray, p_part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardised click and like scores from the raw projections u1 . x and u2 . x."""
    (mg, sg), (mp, sp) = truth["norm"]["genre"], truth["norm"]["personal"]
    rho = truth["rho"]
    z_g, z_p = (g_part - mg) / sg, (p_part - mp) / sp
    return z_g, rho * z_g + np.sqrt(max(0.0, 1 - rho**2)) * z_p


def _logits(truth: dict, s_click: np.ndarray, s_like: np.ndarray, u: np.ndarray, i: np.ndarray):
    """Click and like logits from the standardised scores and the pair's attributes."""
    premium = truth["price"][i] == 2
    age = truth["age"][u] - 1.5
    click = (CLICK_SIGNAL * s_click + 0.3 * np.sin(2 * s_click) + 0.25 * truth["log_pop"][i] - 0.3 * premium
             + 0.15 * age - 1.2 + truth["appeal"][i])
    like = LIKE_SIGNAL * s_like + 0.3 * np.sin(2 * s_like) + 0.35 * premium + 0.25 * age + 0.2
    return click, like


def _pair_scores(gt: dict, user_rows, item_rows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    u, i = np.broadcast_arrays(np.asarray(user_rows), np.asarray(item_rows))
    x = gt["user_latent"][u] * gt["item_latent"][i]
    s_click, s_like = _scores(gt["truth"], x @ gt["click_direction"], x @ gt["personal_direction"])
    return s_click, s_like, u, i


def true_logits(gt: dict, user_rows, item_rows) -> tuple[np.ndarray, np.ndarray]:
    """The noiseless click and like logits of (user row, item row) pairs, rows in the world's
    own order (ground_truth['user_genre'].index / ['item_genre'].index); arrays broadcast, so
    users[:, None] against items[None, :] gives a users x items matrix."""
    if not gt or "truth" not in gt:
        raise DataError("This dataset is not a synthetic world (or was made before the world kept its truth).")
    s_click, s_like, u, i = _pair_scores(gt, user_rows, item_rows)
    return _logits(gt["truth"], s_click, s_like, u, i)


def world_logits(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The noiseless (standardised) click and like preference scores of every impression."""
    gt = ds.ground_truth
    if not gt or "truth" not in gt:
        raise DataError("This dataset is not a synthetic world; it has no ground truth.")
    u = gt["user_genre"].index.get_indexer(ds.interactions["user_id"])
    i = gt["item_genre"].index.get_indexer(ds.interactions["item_id"])
    s_click, s_like, _, _ = _pair_scores(gt, u, i)
    return s_click, s_like


# -- exposure ------------------------------------------------------------------------------------------

def _exposure(rng: np.random.Generator, user_genre: np.ndarray, item_genre: np.ndarray, pop: np.ndarray,
              m: int) -> tuple[np.ndarray, np.ndarray]:
    """m distinct items per user, drawn without replacement from the mixture
    (1 - GENRE_EXPOSURE) * popularity + GENRE_EXPOSURE * uniform over the user's genre (what a
    real recommender would show). Returns (user rows, item rows), user-major.

    Both paths sample the same distribution (successive sampling, i.e. Plackett-Luce by the
    mixture weights): a dense Gumbel top-m when m is a large share of the catalogue (cheap
    then), else draws with replacement keeping each user's first m distinct items (exactly
    successive sampling), which costs O(impressions), not O(users x items)."""
    n_users, n_items = len(user_genre), len(item_genre)
    G = int(max(user_genre.max(initial=0), item_genre.max(initial=0))) + 1
    counts = np.bincount(item_genre, minlength=G)
    by_genre = np.argsort(item_genre, kind="stable")
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    cdf = np.cumsum(pop)
    cdf /= cdf[-1]
    items_out = np.empty((n_users, m), np.int64)
    if 4 * m >= n_items:
        step = max(1, (1 << 22) // n_items)
        for a in range(0, n_users, step):
            g = user_genre[a:a + step]
            same = (g[:, None] == item_genre[None, :]).astype(float)
            p = (1 - GENRE_EXPOSURE) * pop[None, :] + GENRE_EXPOSURE * same / np.maximum(counts[g][:, None], 1)
            keys = np.log(p + 1e-300) + rng.gumbel(size=p.shape)
            items_out[a:a + step] = np.argpartition(-keys, m - 1, axis=1)[:, :m]
    else:
        k = m + max(8, m // 2)  # draws per user per round; users still short draw more
        step = max(1, (1 << 22) // k)
        for a in range(0, n_users, step):
            rows = np.arange(a, min(n_users, a + step))
            draws = np.zeros((len(rows), 0), np.int64)
            todo = np.arange(len(rows))
            chosen = np.empty((len(rows), m), np.int64)
            kk = k
            while len(todo):
                g = user_genre[rows[todo]]
                r = rng.random((len(todo), kk))
                from_genre = (rng.random((len(todo), kk)) < GENRE_EXPOSURE) & (counts[g][:, None] > 0)
                gi = by_genre[np.minimum(start[g][:, None] + (r * counts[g][:, None]).astype(np.int64),
                                         n_items - 1)]
                pi = np.minimum(np.searchsorted(cdf, r, side="right"), n_items - 1)
                new = np.where(from_genre, gi, pi)
                draws = np.concatenate([draws, new], 1)
                first = _first_distinct(draws, n_items)
                enough = first.sum(1) >= m
                take = first[enough] & (np.cumsum(first[enough], 1) <= m)  # each row's first m distinct
                chosen[todo[enough]] = draws[enough][take].reshape(-1, m)
                keep = ~enough
                todo, draws = todo[keep], draws[keep]
                kk *= 2
            items_out[rows] = chosen
    return np.repeat(np.arange(n_users), m), items_out.ravel()


def _first_distinct(draws: np.ndarray, n_items: int) -> np.ndarray:
    """bool [rows, k]: whether each draw is the first occurrence of its item in its row."""
    rows, k = draws.shape
    keys = (np.arange(rows, dtype=np.int64)[:, None] * n_items + draws).ravel()
    _, first = np.unique(keys, return_index=True)
    out = np.zeros(rows * k, bool)
    out[first] = True
    return out.reshape(rows, k)


# -- text ----------------------------------------------------------------------------------------------

def _item_texts(item_genre: np.ndarray, item_mood: np.ndarray, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """A title and a one-line description per item: its genre's words, and its mood's words
    (the sub-topic its latent vector carries beyond the genre) when the world has moods."""
    titles, descs, seen = [], [], {}
    for g, mo in zip(item_genre, item_mood):
        words = GENRES[g][1]
        a, b, c = rng.choice(len(words), size=3, replace=False)
        filler = FILLER[rng.integers(0, len(FILLER))]
        if mo >= 0:
            mw = MOODS[mo][1]
            x, y = rng.choice(len(mw), size=2, replace=False)
            base = f"The {mw[x].title()} {words[a].title()}"
            desc = f"A {mw[x]}, {mw[y]} {filler} of {words[a]}, {words[c]} and {words[b]}."
        else:
            base = f"The {words[a].title()} {words[b].title()}"
            desc = f"A {filler} of {words[a]}, {words[c]} and {words[b]}."
        seen[base] = seen.get(base, 0) + 1
        titles.append(base if seen[base] == 1 else f"{base} {seen[base]}")
        descs.append(desc)
    return titles, descs
