"""The catalog: movies and series with episodes, Zipf popularity, genres, sizes, release days.

The rows of one series are contiguous and ordered by (season, episode), so the next episode
of row i is row i + 1 whenever `last_row[i] > i`; the event generator relies on this. Titles
(a movie, or a whole series) carry a Zipf weight `1 / rank**zipf_s`; within a series, fresh
viewers mostly start at the first episodes (binge-watching then walks the rest).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from faker import Faker

GENRES = ("Drama", "Comedy", "Action", "Thriller", "Documentary", "Animation", "Romance",
          "Sci-Fi", "Horror", "Crime", "Family", "Reality")
EPISODE_DECAY = 0.6       # fresh starts at episode k+1 are 0.6x as likely as at episode k
BURST, BURST_DAYS = 6.0, 4.0  # a new release is 1 + 6*exp(-age/4 days) times as popular


@dataclass(frozen=True)
class Catalog:
    """Per-row arrays (row number = item_idx) plus what the generator needs."""

    content_id: np.ndarray
    title: np.ndarray
    genre: np.ndarray        # genre index into GENRES
    series: np.ndarray       # series number, -1 for movies
    season: np.ndarray       # 0 for movies
    episode: np.ndarray      # 0 for movies
    runtime: np.ndarray
    size_mb: np.ndarray
    release_day: np.ndarray
    title_of_row: np.ndarray  # title number of each row
    weight: np.ndarray       # base popularity of a fresh pick (Zipf title x episode share)
    last_row: np.ndarray     # last row of the row's series (= the row itself for a movie)

    def __len__(self) -> int:
        return len(self.content_id)

    def drift(self, day: int) -> np.ndarray:
        """Popularity multiplier on `day`: 0 before release, a burst that decays after."""
        age = day - self.release_day.astype(np.float64)
        fresh = self.release_day > 0
        boost = np.where(fresh, BURST * np.exp(-np.maximum(age, 0.0) / BURST_DAYS), 0.0)
        return np.where(age < 0, 0.0, 1.0 + boost)

    def to_table(self) -> pa.Table:
        """The catalog.parquet table of docs/internals.md."""
        is_ep = self.series >= 0
        return pa.table({
            "content_id": pa.array(self.content_id, pa.string()),
            "item_idx": pa.array(np.arange(len(self), dtype=np.int32)),
            "title": pa.array(self.title, pa.string()),
            "genre": pa.array(np.asarray(GENRES)[self.genre], pa.string()),
            "kind": pa.array(np.where(is_ep, "episode", "movie"), pa.string()),
            "series_id": pa.array(np.char.add("S", _zpad(self.series + 1, 4)), pa.string(), mask=~is_ep),
            "season": pa.array(self.season, pa.int32(), mask=~is_ep),
            "episode": pa.array(self.episode, pa.int32(), mask=~is_ep),
            "runtime_min": pa.array(self.runtime.astype(np.int32)),
            "size_mb": pa.array(self.size_mb.astype(np.float64)),
            "release_day": pa.array(self.release_day.astype(np.int32)),
        })


def content_ids(n: int) -> np.ndarray:
    """`C00001`-style ids for rows 0..n-1."""
    return np.char.add("C", _zpad(np.arange(1, n + 1), 5))


def _zpad(values: np.ndarray, width: int) -> np.ndarray:
    return np.char.zfill(np.asarray(values).astype(str), width)


def _episode_counts(n_items: int, series_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Episodes per series (seasons of 5-10 episodes) so that movies + episodes = n_items."""
    upper = n_items // 5 + 1
    seasons = 1 + rng.binomial(2, 0.35, size=(upper,))
    per_season = rng.integers(5, 11, size=(upper,))
    sizes = seasons * per_season
    f = series_fraction
    n_series = 0 if f <= 0 else int(n_items / (sizes.mean() + (1 - f) / max(f, 1e-9)))
    n_series = min(n_series, upper)
    while n_series > 0 and sizes[:n_series].sum() > n_items:
        n_series -= 1
    return np.stack([seasons[:n_series], per_season[:n_series]], axis=1)


def build_catalog(n_items: int, days: int, *, zipf_s: float, series_fraction: float,
                  new_release_fraction: float, rng: np.random.Generator, faker_seed: int) -> Catalog:
    """Draw a catalog of exactly `n_items` rows (movies and episodes)."""
    shape = _episode_counts(n_items, series_fraction, rng)
    n_series = len(shape)
    sizes = np.concatenate([shape[:, 0] * shape[:, 1], np.ones(n_items - int(shape.prod(1).sum()), int)])
    order = rng.permutation(len(sizes))  # interleave movies and series in catalog order
    sizes, is_series = sizes[order], order < n_series
    per_season = np.where(is_series, np.concatenate([shape[:, 1], np.ones(len(sizes) - n_series, int)])[order], 1)
    n_titles = len(sizes)
    title_of_row = np.repeat(np.arange(n_titles), sizes)
    first_row = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    pos = np.arange(n_items) - first_row[title_of_row]
    series_no = np.cumsum(is_series) - 1
    row_series = np.where(is_series[title_of_row], series_no[title_of_row], -1)
    season = np.where(row_series >= 0, 1 + pos // per_season[title_of_row], 0)
    episode = np.where(row_series >= 0, 1 + pos % per_season[title_of_row], 0)

    genre_share = rng.dirichlet(np.full(len(GENRES), 3.0))
    t_genre = rng.choice(len(GENRES), size=n_titles, p=genre_share)
    t_weight = 1.0 / rng.permutation(np.arange(1, n_titles + 1)).astype(np.float64) ** zipf_s
    ep_w = EPISODE_DECAY ** pos.astype(np.float64)
    ep_share = ep_w / np.bincount(title_of_row, weights=ep_w)[title_of_row]
    t_runtime = np.where(is_series, rng.choice([22, 30, 45, 55], size=n_titles),
                         np.clip(rng.normal(105, 20, n_titles), 75, 180).round())
    runtime = np.maximum(t_runtime[title_of_row] + np.where(row_series >= 0, rng.integers(-3, 4, n_items), 0), 5)
    mb_per_min = rng.uniform(20.0, 50.0, n_titles)[title_of_row]
    t_release = _release_days(t_genre, t_weight, days, new_release_fraction, rng)
    return Catalog(
        content_id=content_ids(n_items), title=_titles(n_titles, title_of_row, season, episode, faker_seed),
        genre=t_genre[title_of_row], series=row_series, season=season, episode=episode,
        runtime=runtime.astype(np.int32), size_mb=(runtime * mb_per_min).round(1),
        release_day=t_release[title_of_row].astype(np.int32), title_of_row=title_of_row,
        weight=t_weight[title_of_row] * ep_share,
        last_row=(first_row + sizes - 1)[title_of_row],
    )


def _release_days(t_genre: np.ndarray, t_weight: np.ndarray, days: int, fraction: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Back-catalog titles get a day <= 0; new releases a day in 1..days-1 (never a genre's top title)."""
    n = len(t_genre)
    release = -rng.integers(0, 3650, size=n)
    top = np.zeros(n, bool)
    for g in np.unique(t_genre):  # a loop over ~12 genres, so each genre has content on day 0
        members = np.flatnonzero(t_genre == g)
        top[members[np.argmax(t_weight[members])]] = True
    candidates = np.flatnonzero(~top)
    k = min(len(candidates), int(round(fraction * n))) if days > 1 else 0
    new = rng.choice(candidates, size=k, replace=False)
    release[new] = rng.integers(1, max(days, 2), size=k)
    return release


def _titles(n_titles: int, title_of_row: np.ndarray, season: np.ndarray, episode: np.ndarray,
            faker_seed: int) -> np.ndarray:
    """Faker words combined into titles (a fixed pool, so Faker cost does not grow with the catalog)."""
    fake = Faker("en_US")
    fake.seed_instance(faker_seed)
    pool = np.array(sorted({w.title() for w in fake.words(nb=800, unique=True)}))
    rng = np.random.default_rng(faker_seed)
    words = pool[rng.integers(0, len(pool), size=(n_titles, 3))]
    two = rng.random(n_titles) < 0.5
    names = np.where(two, np.char.add(np.char.add(words[:, 0], " "), words[:, 1]),
                     np.char.add(np.char.add(np.char.add("The ", words[:, 0]), " "), words[:, 2]))
    rows = names[title_of_row]
    tag = np.char.add(np.char.add(" S", season.astype(str)), np.char.add("E", _zpad(episode, 2)))
    return np.where(season > 0, np.char.add(rows, tag), rows)
