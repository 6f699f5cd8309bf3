"""Edges and users: who watches where, with which taste, device and activity.

Non-IID edges come from one knob, the Dirichlet concentration `noniid_alpha`: each edge's
genre taste is Dirichlet(alpha * G * global share) and each title gets an edge multiplier
Gamma(alpha, 1/alpha) (mean 1, variance 1/alpha: regional hits and titles nobody there
watches). Lower alpha, more different edges. Users draw their own taste around their edge's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from faker import Faker

from edge_nodes.devices import DEVICES
from simulation.workload.catalog import GENRES, Catalog, _zpad
from simulation.workload.sampling import cumulative

DEVICE_MIX = np.array([0.35, 0.25, 0.10, 0.20, 0.10])
USER_TASTE_CONCENTRATION = 8.0  # how closely a user's genre taste follows their edge's


def edge_ids(n: int) -> list[str]:
    """`edge-00`, `edge-01`, ... (edge index i -> Redis database i)."""
    return [f"edge-{i:02d}" for i in range(n)]


@dataclass(frozen=True)
class Population:
    """Per-edge and per-user arrays the event generator samples from."""

    user_id: np.ndarray
    name: np.ndarray
    home_edge: np.ndarray        # edge index per user
    age: np.ndarray
    preferred_device: np.ndarray  # device index per user
    genre_cum: np.ndarray        # (users, genres) cumulative taste
    activity_cum: np.ndarray     # cumulative share of sessions per user
    edge_item_weight: np.ndarray  # (edges, items) edge popularity before temporal drift
    edge_device_cum: np.ndarray  # (edges, devices) cumulative device mix

    def to_table(self) -> pa.Table:
        """The users.parquet table of docs/internals.md."""
        edges = np.asarray(edge_ids(self.edge_item_weight.shape[0]))
        top = np.argmax(np.diff(self.genre_cum, axis=1, prepend=0.0), axis=1)
        return pa.table({
            "user_id": pa.array(self.user_id, pa.string()),
            "name": pa.array(self.name, pa.string()),
            "home_edge": pa.array(edges[self.home_edge], pa.string()),
            "age": pa.array(self.age.astype(np.int32)),
            "preferred_device": pa.array(np.asarray(DEVICES)[self.preferred_device], pa.string()),
            "top_genre": pa.array(np.asarray(GENRES)[top], pa.string()),
        })


def user_ids(n: int) -> np.ndarray:
    """`U000001`-style ids."""
    return np.char.add("U", _zpad(np.arange(1, n + 1), 6))


def build_population(catalog: Catalog, n_users: int, n_edges: int, *, alpha: float,
                     rng: np.random.Generator, faker_seed: int) -> Population:
    """Draw edges' popularity and taste, then users around them."""
    n_genres = len(GENRES)
    present = np.bincount(catalog.genre, minlength=n_genres) > 0
    genre_share = np.where(present, np.bincount(catalog.genre, weights=catalog.weight, minlength=n_genres), 0)
    genre_share = genre_share / genre_share.sum()
    edge_taste = _dirichlet_rows(rng, alpha * n_genres * genre_share, n_edges)
    # The floor keeps every title reachable, so an edge's genre never runs empty.
    title_mult = np.maximum(rng.gamma(alpha, 1.0 / alpha, size=(n_edges, catalog.title_of_row.max() + 1)), 1e-6)
    edge_item_weight = catalog.weight[None, :] * title_mult[:, catalog.title_of_row]

    edge_share = rng.dirichlet(np.full(n_edges, 4.0))
    home = rng.choice(n_edges, size=n_users, p=edge_share)
    taste = _dirichlet_rows(rng, USER_TASTE_CONCENTRATION * edge_taste[home] + 0.02 * present, None)
    taste = np.where(present, taste, 0.0)
    edge_devices = _dirichlet_rows(rng, 20.0 * DEVICE_MIX, n_edges)
    device_cum = cumulative(edge_devices)
    preferred = np.minimum((rng.random(n_users)[:, None] >= device_cum[home]).sum(1), len(DEVICES) - 1)
    activity = rng.lognormal(0.0, 1.0, size=n_users)
    return Population(
        user_id=user_ids(n_users), name=_names(n_users, faker_seed), home_edge=home,
        age=np.clip(rng.normal(36, 13, n_users), 16, 85).round().astype(np.int32),
        preferred_device=preferred, genre_cum=cumulative(taste), activity_cum=cumulative(activity),
        edge_item_weight=edge_item_weight, edge_device_cum=device_cum,
    )


def _dirichlet_rows(rng: np.random.Generator, conc: np.ndarray, n: int | None) -> np.ndarray:
    """Dirichlet draws via normalized gammas (rows may differ; zero concentration -> zero share)."""
    shape = conc if n is None else np.broadcast_to(conc, (n, conc.shape[-1]))
    g = rng.gamma(np.maximum(shape, 1e-12))
    g = np.where(shape > 0, g, 0.0) + 1e-300
    return g / g.sum(axis=-1, keepdims=True)


def _names(n: int, faker_seed: int) -> np.ndarray:
    """Faker first and last names combined (two fixed pools, so Faker cost stays constant)."""
    fake = Faker("en_US")
    fake.seed_instance(faker_seed + 1)
    first = np.array([fake.first_name() for _ in range(500)])
    last = np.array([fake.last_name() for _ in range(500)])
    rng = np.random.default_rng(faker_seed + 1)
    return np.char.add(np.char.add(first[rng.integers(0, 500, n)], " "), last[rng.integers(0, 500, n)])
