"""MovieLens 1M and 10M (`::`-separated `.dat` files) as a trace: `ratings.dat` -> events.

Files (a folder, no header rows):

- `ratings.dat` `UserID::MovieID::Rating::Timestamp` (required; 1M rates in whole stars 1..5,
  10M in half stars 0.5..5; Unix seconds).
- `users.dat` `UserID::Gender::Age::Occupation::Zip-code` (1M only, optional): when it is there
  a user's edge is the zip-code region, as for the 100K release (US zip -> edge-0<first digit>,
  anything else -> edge-10; up to 11 edges, whatever workload.edges says), ratings of users it
  does not list are quarantined, and its age (1M's age-group code: 1, 18, 25, ...) is kept.
  Without it (10M) a user's edge is the hash of the user id over workload.edges, as for the
  latest releases.
- `movies.dat` `MovieID::Title::Genres` (optional; 1M is latin-1, 10M UTF-8: a file that is not
  valid UTF-8 is read as latin-1): the first genre is kept; ratings of movies it does not list
  are quarantined.

A rating becomes a "web" watch event exactly as in the other releases (duration = runtime x
rating / 5, at the rating's Unix time in UTC). Every line is ingested or quarantined with its
line number and reason.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from simulation.workload.movielens_latest import Items, add_ratings, hash_edge, zip_edge
from simulation.workload.trace import Trace

RATING_LINE = re.compile(r"\s*([0-9]{1,18})::([0-9]{1,18})::([0-9]{1,3}(?:\.[0-9]{0,6})?)::([0-9]{1,18})\s*",
                         re.ASCII)
USER_LINE = re.compile(r"\s*([0-9]{1,18})::[^:]*::([0-9]{1,3})::[^:]*::([^:]*)", re.ASCII)
MOVIE_LINE = re.compile(r"\s*([0-9]{1,18})::(.*)::([^:]*)")
NO_GENRE = "(no genres listed)"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines, UTF-8 when the file is valid UTF-8, else latin-1 (1M's movies.dat); the
    text is decoded whole (the encoding is the file's), the lines made as they are consumed."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    del data
    for n, line in enumerate(io.StringIO(text, newline=""), 1):
        yield n, line.rstrip("\r\n")


def read_users(path: Path, trace: Trace) -> dict[int, tuple[int, str]]:
    """user id -> (age code, zip-region edge); malformed and duplicate lines quarantined."""
    users: dict[int, tuple[int, str]] = {}
    for n, raw in _lines(path):
        m = USER_LINE.fullmatch(raw)
        if m is None or int(m[2]) > 150:
            trace.reject(path.name, n, raw, "malformed users.dat line (want UserID::Gender::Age::Occupation::Zip-code)")
        elif int(m[1]) in users:
            trace.reject(path.name, n, raw, f"duplicate UserID {int(m[1])}")
        else:
            users[int(m[1])] = (int(m[2]), zip_edge(m[3]))
            trace.count(path.name, ingested=1)
    return users


def read_movies(path: Path, trace: Trace) -> Items:
    """movieId -> (title, first genre, release unknown); malformed and duplicate lines quarantined."""
    items: Items = {}
    for n, raw in _lines(path):
        m = MOVIE_LINE.fullmatch(raw)
        if m is None:
            trace.reject(path.name, n, raw, "malformed movies.dat line (want MovieID::Title::Genres)")
        elif int(m[1]) in items:
            trace.reject(path.name, n, raw, f"duplicate MovieID {int(m[1])}")
        else:
            genre = m[3].split("|")[0].strip()
            items[int(m[1])] = (m[2], "unknown" if genre in ("", NO_GENRE) else genre, None)
            trace.count(path.name, ingested=1)
    return items


def read_dat(folder: Path, n_edges: int, trace: Trace) -> tuple[Items, dict[int, tuple[int, str]] | None]:
    """Read a MovieLens 1M/10M folder into `trace`: (its items, its users when users.dat is there)."""
    users = read_users(folder / "users.dat", trace) if (folder / "users.dat").is_file() else None
    movies = read_movies(folder / "movies.dat", trace) if (folder / "movies.dat").is_file() else None

    def edges(ids: np.ndarray) -> np.ndarray:
        if users is None:
            return np.array([hash_edge(int(u), n_edges) for u in ids], dtype=object)
        return np.array([users[int(u)][1] if int(u) in users else None for u in ids], dtype=object)

    add_ratings(trace, "ratings.dat", _lines(folder / "ratings.dat"), RATING_LINE,
                "malformed ratings.dat line (want UserID::MovieID::Rating::Timestamp)", movies, "movies.dat",
                edges, "users.dat")
    if movies is None:
        movies = {i: (f"C{i:05d}", "unknown", None) for i in sorted(int(c[1:]) for c in trace.content_ids())}
    return movies, users
