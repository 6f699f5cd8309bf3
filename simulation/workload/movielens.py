"""MovieLens as a trace: the 100K folder here, the other releases in movielens_latest.py and movielens_dat.py.

A folder with `ratings.csv` is a latest release or 20M/25M/32M (edges by a hash of the user id,
see movielens_latest.py); one with `ratings.dat` is 1M or 10M (zip-code regions when users.dat is
there, else the hash: movielens_dat.py); otherwise it must be the 100K folder.
Download from https://grouplens.org/datasets/movielens/ and unzip.

100K files (a folder): u.data `user<TAB>item<TAB>rating<TAB>timestamp` (required), u.user
`user|age|gender|occupation|zip` (required), u.item `id|title|release date|video release|
url|19 genre flags` (optional; latin-1; without it titles are the ids and genres unknown).

Edge rule (zip-code region): a US zip (5 digits, optionally +4) goes to edge-0d where d is
its first digit (the national ZIP region, 0 = New England ... 9 = West Coast); any other
code (Canadian postcodes, letters, empty) goes to edge-10. So there are up to 11 edges.
A rating becomes a watch event: user U<id:06d>, content C<id:05d>, device "web" (MovieLens is
a website; the real device is unknown), duration = runtime x rating / 5 with the default
runtime of 100 min (a 5-star rating = watched to the end), timestamp = the rating's Unix
time in UTC. Lines that cannot be read (ids and stamps must be ASCII digits, stamps before
2100), and ratings of unknown users or items, are quarantined with the reason.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from simulation.errors import EdgecacheError
from simulation.workload.movielens_dat import read_dat
from simulation.workload.movielens_latest import MAX_TS, read_latest, zip_edge
from simulation.workload.trace import DEFAULT_RUNTIME_MIN, MB_PER_MIN, Trace, check_epoch

ML_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
             "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
             "Romance", "Sci-Fi", "Thriller", "War", "Western")
INT = re.compile(r"\s*[0-9]{1,18}\s*", re.ASCII)  # str.isdigit() also takes digits int() refuses
DOWNLOAD = ("download ml-latest-small.zip from https://grouplens.org/datasets/movielens/latest/ (other "
            "releases: https://grouplens.org/datasets/movielens/) and unzip it there, or point "
            "workload.ingest_path at the unzipped folder")


def _lines(path: Path, encoding: str = "utf-8-sig") -> list[tuple[int, str]]:
    with path.open(encoding=encoding, errors="replace", newline="") as f:
        return [(n, line.rstrip("\r\n")) for n, line in enumerate(f, 1)]


def _read_users(path: Path, trace: Trace) -> dict[int, tuple[int, str]]:
    """user id -> (age, edge); malformed lines quarantined."""
    users: dict[int, tuple[int, str]] = {}
    for n, raw in _lines(path):
        f = raw.split("|")
        if len(f) != 5 or not INT.fullmatch(f[0]) or not INT.fullmatch(f[1]) or int(f[1]) > 150:
            trace.reject(path.name, n, raw, "malformed u.user line (want user|age|gender|occupation|zip)")
            continue
        users[int(f[0])] = (int(f[1]), zip_edge(f[4]))
        trace.count(path.name, ingested=1)
    return users


def _read_items(path: Path, trace: Trace) -> dict[int, tuple[str, str, datetime.date | None]]:
    """item id -> (title, first genre, release date); malformed lines quarantined."""
    items: dict[int, tuple[str, str, datetime.date | None]] = {}
    for n, raw in _lines(path, "latin-1"):
        f = raw.split("|")
        flags = f[5:]
        if len(f) != 24 or not INT.fullmatch(f[0]) or any(x not in ("0", "1") for x in flags):
            trace.reject(path.name, n, raw, "malformed u.item line (want id|title|release|video|url|19 flags)")
            continue
        genre = ML_GENRES[flags.index("1")] if "1" in flags else "unknown"
        try:
            released = datetime.datetime.strptime(f[2], "%d-%b-%Y").date() if f[2] else None
        except ValueError:
            released = None
        items[int(f[0])] = (f[1], genre, released)
        trace.count(path.name, ingested=1)
    return items


def _read_ratings(path: Path, users: dict[int, tuple[int, str]], items: dict | None, trace: Trace) -> None:
    for n, raw in _lines(path):
        f = raw.split("\t")
        if len(f) != 4 or not all(INT.fullmatch(x) for x in f):
            trace.reject(path.name, n, raw, "malformed u.data line (want user<TAB>item<TAB>rating<TAB>timestamp)")
            continue
        uid, iid, rating, ts = (int(x) for x in f)
        try:
            check_epoch(ts)
        except ValueError as e:
            trace.reject(path.name, n, raw, str(e))
            continue
        if not 1 <= rating <= 5:
            trace.reject(path.name, n, raw, f"rating out of range ({rating}, want 1..5)")
        elif ts >= MAX_TS:
            trace.reject(path.name, n, raw, f"timestamp out of range ({ts}, want Unix seconds before 2100)")
        elif uid not in users:
            trace.reject(path.name, n, raw, f"unknown user {uid} (not in u.user)")
        elif items is not None and iid not in items:
            trace.reject(path.name, n, raw, f"unknown item {iid} (not in u.item)")
        else:
            trace.add(path.name, f"U{uid:06d}", f"C{iid:05d}", "web", round(DEFAULT_RUNTIME_MIN * rating / 5),
                      ts, users[uid][1])


def read_movielens(folder: Path, trace: Trace, n_edges: int) -> tuple[pa.Table, pa.Table | None]:
    """Read a MovieLens folder (latest, 1M/10M or 100K) into `trace`; return (catalog, users or None)."""
    if not folder.is_dir():
        raise EdgecacheError(f"MovieLens folder {folder} not found: {DOWNLOAD}")
    if (folder / "ratings.csv").is_file():
        return ml_catalog(read_latest(folder, n_edges, trace), None), None
    if (folder / "ratings.dat").is_file():
        movies, dat_users = read_dat(folder, n_edges, trace)
        return ml_catalog(movies, None), None if dat_users is None else _users(dat_users)
    need = [name for name in ("u.data", "u.user") if not (folder / name).is_file()]
    if need:
        raise EdgecacheError(f"{folder}: no ratings.csv (a latest release, 20M, 25M, 32M), no ratings.dat (1M, "
                             f"10M) and missing {', '.join(need)} (the 100K folder has u.data, u.user and u.item); "
                             f"{DOWNLOAD}")
    users = _read_users(folder / "u.user", trace)
    items = _read_items(folder / "u.item", trace) if (folder / "u.item").is_file() else None
    _read_ratings(folder / "u.data", users, items, trace)
    if items is None:
        ids = sorted(int(c[1:]) for c in trace.content_ids())
        items = {i: (f"C{i:05d}", "unknown", None) for i in ids}
    first = trace.first_ts()
    start = None if first is None else datetime.datetime.fromtimestamp(first, datetime.UTC).date()
    return ml_catalog(items, start), _users(users)


def ml_catalog(items: dict[int, tuple[str, str, datetime.date | None]], start: datetime.date | None) -> pa.Table:
    """catalog.parquet rows for MovieLens ids, sorted by id (the catalog's item_idx order)."""
    ids = sorted(items)
    rel = [_days_between(start, items[i][2]) for i in ids]
    n = len(ids)
    return pa.table({
        "content_id": pa.array([f"C{i:05d}" for i in ids], pa.string()),
        "item_idx": pa.array(np.arange(n, dtype=np.int32)),
        "title": pa.array([items[i][0] for i in ids], pa.string()),
        "genre": pa.array([items[i][1] for i in ids], pa.string()),
        "kind": pa.array(["movie"] * n, pa.string()), "series_id": pa.nulls(n, pa.string()),
        "season": pa.nulls(n, pa.int32()), "episode": pa.nulls(n, pa.int32()),
        "runtime_min": pa.array(np.full(n, DEFAULT_RUNTIME_MIN, dtype=np.int32)),
        "size_mb": pa.array(np.full(n, DEFAULT_RUNTIME_MIN * MB_PER_MIN)),
        "release_day": pa.array(np.asarray(rel, dtype=np.int32)),
    })


def _days_between(start: datetime.date | None, day: datetime.date | None) -> int:
    """Release day as an offset from the trace's first day (0 when unknown)."""
    return (day - start).days if day is not None and start is not None else 0


def _users(users: dict[int, tuple[int, str]]) -> pa.Table:
    ids = sorted(users)
    return pa.table({
        "user_id": pa.array([f"U{i:06d}" for i in ids], pa.string()),
        "name": pa.array([f"MovieLens user {i}" for i in ids], pa.string()),
        "home_edge": pa.array([users[i][1] for i in ids], pa.string()),
        "age": pa.array([users[i][0] for i in ids], pa.int32()),
        "preferred_device": pa.array(["web"] * len(ids), pa.string()),
    })
