"""Viewing events, vectorized: sessions in time, items by taste and binge, durations by device.

Time: hour bins weighted by a diurnal and a weekly profile; the requested number of events
is split over the bins once (multinomial), then generated chunk by chunk in time order.
Items: each user's events form one chain across sessions. An event either continues the
previous one (next episode of the same series, with probability `binge_prob` when there is
a next episode) or is a fresh pick: a genre from the user's taste, then a title from the
user's edge popularity within that genre, scaled by the release burst of that day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_nodes.devices import DEVICES
from simulation.workload.catalog import Catalog
from simulation.workload.population import Population
from simulation.workload.sampling import GroupedSampler, row_choice

HOURLY = np.array([0.35, 0.2, 0.12, 0.08, 0.07, 0.08, 0.15, 0.3, 0.4, 0.45, 0.5, 0.55,
                   0.65, 0.65, 0.6, 0.6, 0.7, 0.85, 1.0, 1.25, 1.5, 1.6, 1.35, 0.8])
WEEKLY = np.array([0.9, 0.9, 0.92, 0.95, 1.1, 1.3, 1.25])  # Monday .. Sunday
SESSION_P = 0.4           # session length ~ Geometric(0.4): 2.5 events on average
KEEP_DEVICE = 0.75        # share of sessions on the user's preferred device
SLOT_MIN = np.array([70.0, 30.0, 45.0, 45.0, 60.0])  # typical minutes per title, by device
COMPLETION = np.array([[6.0, 1.5], [2.0, 2.0], [3.0, 2.0], [2.5, 2.0], [5.0, 1.5]])  # Beta(a, b) per device
EXACT_CHAIN_PASSES = 32   # see _chain


@dataclass
class Events:
    """One chunk of clean events, in generation order (user, then time)."""

    user: np.ndarray
    edge: np.ndarray
    item: np.ndarray
    device: np.ndarray
    duration: np.ndarray
    ts: np.ndarray        # seconds since the start of day 0
    cont: np.ndarray      # True where the event continues the previous episode

    def take(self, idx: np.ndarray) -> Events:
        return Events(**{k: v[idx] for k, v in vars(self).items()})

    @staticmethod
    def concat(parts: list[Events]) -> Events:
        return Events(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in vars(parts[0])})


def hour_weights(days: int, first_weekday: int) -> np.ndarray:
    """Relative activity of each hour of the run (diurnal x weekly)."""
    hours = np.arange(days * 24)
    dow = (first_weekday + hours // 24) % 7
    return HOURLY[hours % 24] * WEEKLY[dow]


def plan_chunks(n_events: int, weights: np.ndarray, chunk_events: int,
                rng: np.random.Generator) -> list[tuple[int, int, np.ndarray]]:
    """Split events over hour bins, then group consecutive bins into chunks of <= chunk_events."""
    counts = rng.multinomial(n_events, weights / weights.sum())
    chunks, lo, acc = [], 0, 0
    for b, c in enumerate(counts):  # a loop over hour bins (days*24), not over events
        if acc and acc + c > chunk_events:
            chunks.append((lo, b, counts[lo:b]))
            lo, acc = b, 0
        acc += int(c)
    chunks.append((lo, len(counts), counts[lo:]))
    return [ch for ch in chunks if ch[2].sum() > 0]


class EventGenerator:
    """Generates chunks in time order, carrying each user's last item across chunks."""

    def __init__(self, catalog: Catalog, population: Population, *, binge_prob: float,
                 days: int, rng: np.random.Generator) -> None:
        self.cat, self.pop, self.rng = catalog, population, rng
        self.binge_prob, self.end_s = binge_prob, days * 86400
        self.last_item = np.full(len(population.user_id), -1, dtype=np.int64)
        self.genre_order = np.argsort(catalog.genre, kind="stable")
        self.n_genres = int(population.genre_cum.shape[1])
        counts = np.bincount(catalog.genre, minlength=self.n_genres)
        self.genre_start = np.concatenate(([0], np.cumsum(counts)[:-1]))

    def chunk(self, bin_lo: int, counts: np.ndarray) -> Events:
        """All events whose session starts in hour bins bin_lo .. bin_lo+len(counts)-1."""
        rng, pop = self.rng, self.pop
        n = int(counts.sum())
        lengths = self._session_lengths(n)
        m = len(lengths)
        start = (bin_lo + rng.choice(len(counts), size=m, p=counts / n)) * 3600 + rng.integers(0, 3600, m)
        user = np.minimum(np.searchsorted(pop.activity_cum, rng.random(m), side="right"), len(pop.user_id) - 1)
        other = row_choice(pop.edge_device_cum, pop.home_edge[user], rng.random(m))
        device = np.where(rng.random(m) < KEEP_DEVICE, pop.preferred_device[user], other)
        sess = np.repeat(np.arange(m), lengths)
        # Each event gets a viewing slot (longer on a TV than on a phone); the next event of the
        # session starts after it, so timestamps exist before items and the chain follows time.
        slot = np.clip(rng.lognormal(np.log(SLOT_MIN[device[sess]]), 0.5), 5, 240).round().astype(np.int64)
        ts = self._timestamps(start, lengths, slot)
        order = np.lexsort((ts, user[sess]))
        sess, ts, slot = sess[order], ts[order], slot[order]
        e_user, e_edge, e_dev = user[sess], pop.home_edge[user[sess]], device[sess]
        fresh_item = self._fresh_picks(e_user, e_edge, ts // 86400)
        item, cont = self._chain(e_user, fresh_item)
        dur = np.minimum(self._durations(item, e_dev), slot).astype(np.int32)
        return Events(user=e_user.astype(np.int32), edge=e_edge.astype(np.int16), item=item.astype(np.int32),
                      device=e_dev.astype(np.int8), duration=dur, ts=ts, cont=cont)

    def _session_lengths(self, n: int) -> np.ndarray:
        parts, total = [], 0
        while total < n:
            draw = self.rng.geometric(SESSION_P, size=n // 2 + 16)
            parts.append(draw)
            total += int(draw.sum())
        lengths = np.concatenate(parts)
        cut = int(np.searchsorted(np.cumsum(lengths), n))
        lengths = lengths[: cut + 1].copy()
        lengths[-1] -= int(lengths.sum()) - n
        return lengths

    def _fresh_picks(self, user: np.ndarray, edge: np.ndarray, day: np.ndarray) -> np.ndarray:
        """A genre from the user's taste, then a title from the edge's popularity that day."""
        rng, n_items = self.rng, len(self.cat)
        genre = row_choice(self.pop.genre_cum, user, rng.random(len(user)))
        group = edge.astype(np.int64) * self.n_genres + genre
        u = rng.random(len(user))
        out = np.empty(len(user), dtype=np.int64)
        n_edges = self.pop.edge_item_weight.shape[0]
        starts = (np.arange(n_edges)[:, None] * n_items + self.genre_start[None, :]).ravel()
        for d in np.unique(day):  # a loop over the days of the chunk, vectorized inside
            w = (self.pop.edge_item_weight * self.cat.drift(int(d))[None, :])[:, self.genre_order]
            sel = np.flatnonzero(day == d)
            flat = GroupedSampler(w.ravel(), starts).draw(group[sel], u[sel])
            out[sel] = self.genre_order[flat % n_items]
        return out

    def _chain(self, user: np.ndarray, fresh_item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Walk each user's chain: continue the series (binge) or take the fresh pick."""
        n = len(user)
        run_start = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
        carried = self.last_item[user[run_start]]
        has = carried >= 0
        # A user's previous item (from an earlier chunk) becomes a virtual fresh row before the run.
        ins = run_start[has]
        items = np.insert(fresh_item, ins, carried[has])
        fresh = np.insert(self.rng.random(n) >= self.binge_prob, ins, True)
        real = np.insert(np.ones(n, bool), ins, False)
        fresh[run_start[~has] + np.searchsorted(ins, run_start[~has], side="right")] = True
        item, is_fresh = _chain(items, fresh, self.cat.last_row)
        run_end = np.r_[run_start[1:], n] - 1
        self.last_item[user[run_end]] = item[real][run_end]
        return item[real], ~is_fresh[real]

    def _durations(self, item: np.ndarray, device: np.ndarray) -> np.ndarray:
        """Minutes watched: runtime x completion, where the completion depends on the device."""
        c = self.rng.beta(COMPLETION[device, 0], COMPLETION[device, 1])
        return np.maximum(1, np.round(self.cat.runtime[item] * c)).astype(np.int32)

    def _timestamps(self, start: np.ndarray, lengths: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Events of a session follow each other: the previous slot plus a short gap."""
        step = slot * 60 + self.rng.integers(10, 600, len(slot))
        before = np.cumsum(step) - step
        first = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        ts = np.repeat(start, lengths) + before - np.repeat(before[first], lengths)
        return np.minimum(ts, self.end_s - 1)  # sessions running past the end stop at the last second


def _chain(item0: np.ndarray, fresh: np.ndarray, last_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """item[j] = anchor item + (j - anchor) while inside its series; otherwise j is a fresh pick.

    Each pass turns the first invalid continuation of every run into a fresh pick (exact);
    after EXACT_CHAIN_PASSES passes (only in pathological runs, e.g. binge_prob=1 on a
    movie-heavy catalog) every remaining invalid event becomes fresh at once.
    """
    idx = np.arange(len(item0))
    for p in range(EXACT_CHAIN_PASSES + 2):
        anchor = np.maximum.accumulate(np.where(fresh, idx, -1))
        base = item0[anchor]
        item = base + (idx - anchor)
        bad = item > last_row[base]
        if not bad.any():
            return item, fresh
        fresh = fresh | (bad & ~np.r_[False, bad[:-1]] if p < EXACT_CHAIN_PASSES else bad)
    raise AssertionError("unreachable: the final pass makes every event valid")


DEVICE_NAMES = np.asarray(DEVICES)
