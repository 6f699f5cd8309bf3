"""MovieLens latest releases (ml-latest-small, ml-latest, ml-32m, ...) as a trace: `ratings.csv` -> events.

Files (a folder): `ratings.csv` `userId,movieId,rating,timestamp` (required: a header row, then
one rating per line, Unix seconds, ratings 0.5..5 in half stars) and `movies.csv`
`movieId,title,genres` (optional: titles may be quoted and hold commas; genres are
`|`-separated and the first one is kept, "(no genres listed)" -> unknown). Headers are not
input lines. The releases carry no demographics, so a user's edge is a hash of the user id:

    edge-%02d % (zlib.crc32(str(userId).encode()) % workload.edges)

A rating becomes a "web" watch event of user U<id:06d>, content C<id:05d>, duration = runtime x
rating / 5 (default runtime 100 min), at the rating's Unix time in UTC. Malformed lines,
ratings outside 0.5..5, timestamps outside [0, 2100-01-01) and ratings of movies missing from
movies.csv (when it is there) are quarantined with their line number and reason.
"""

from __future__ import annotations

import csv
import datetime
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from simulation.errors import EdgecacheError
from simulation.workload.trace import DEFAULT_RUNTIME_MIN, Trace, distinct_index

RATINGS_HEADER = ["userId", "movieId", "rating", "timestamp"]
MOVIES_HEADER = ["movieId", "title", "genres"]
MAX_TS = 4_102_444_800  # 2100-01-01 00:00:00 UTC: later stamps are junk, not ratings
# ids and stamps up to 18 digits fit int64; anything else is a malformed line
RATING_LINE = re.compile(r"\s*([0-9]{1,18})\s*,\s*([0-9]{1,18})\s*,\s*([0-9]{1,3}(?:\.[0-9]{0,6})?)\s*,"
                         r"\s*([0-9]{1,18})\s*", re.ASCII)
MOVIE_ID = re.compile(r"\s*[0-9]{1,18}\s*", re.ASCII)
NO_GENRE = "(no genres listed)"

Items = dict[int, tuple[str, str, datetime.date | None]]


OTHER_EDGE = "edge-10"
US_ZIP = re.compile(r"\d{5}(-\d{4})?")


def zip_edge(zip_code: str) -> str:
    """The documented rule for traces with demographics: US zip -> edge-0<first digit> (the
    national ZIP region); anything else -> edge-10."""
    z = zip_code.strip()
    return f"edge-0{z[0]}" if US_ZIP.fullmatch(z) else OTHER_EDGE


def hash_edge(user_id: int, n_edges: int) -> str:
    """The documented edge rule for traces without demographics: crc32 of the decimal user id."""
    return f"edge-{zlib.crc32(str(user_id).encode()) % n_edges:02d}"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines, read as they are consumed (a 25M-rating file is never held as strings)."""
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        for n, line in enumerate(f, 1):
            yield n, line.rstrip("\r\n")


def _body(path: Path, header: list[str]) -> Iterator[tuple[int, str]]:
    """The data lines of a CSV file after checking its header row (checked before this returns)."""
    lines = _lines(path)
    first = next(lines, (0, ""))[1].lstrip("\ufeff")
    if [h.strip() for h in next(csv.reader([first]), [])] != header:
        raise EdgecacheError(f"{path}: the first line must be the header {','.join(header)} (got {first[:80]!r}); "
                             "pass the unzipped MovieLens latest folder")
    return lines


def read_movies(path: Path, trace: Trace) -> Items:
    """movieId -> (title, first genre, release unknown); malformed and duplicate lines quarantined."""
    items: Items = {}
    for n, raw in _body(path, MOVIES_HEADER):
        f = next(csv.reader([raw]), [])
        if len(f) != 3 or not MOVIE_ID.fullmatch(f[0]):
            trace.reject(path.name, n, raw, "malformed movies.csv line (want movieId,title,genres)")
        elif int(f[0]) in items:
            trace.reject(path.name, n, raw, f"duplicate movieId {int(f[0])}")
        else:
            genre = f[2].split("|")[0].strip()
            items[int(f[0])] = (f[1], "unknown" if genre in ("", NO_GENRE) else genre, None)
            trace.count(path.name, ingested=1)
    return items


def read_ratings(path: Path, movies: Items | None, n_edges: int, trace: Trace) -> None:
    """Add every rating of ratings.csv to the trace (file order) or to its quarantine."""
    add_ratings(trace, path.name, _body(path, RATINGS_HEADER), RATING_LINE,
                "malformed ratings.csv line (want userId,movieId,rating,timestamp)", movies, "movies.csv",
                lambda users: np.array([hash_edge(int(u), n_edges) for u in users], dtype=object))


# Rating lines parsed at once: bounds what a chunk holds as strings and tuples (~0.3 GB per
# million lines) whatever the file's size.
CHUNK_LINES = 1 << 18


def add_ratings(trace: Trace, file: str, lines: Iterable[tuple[int, str]], line: re.Pattern[str], malformed: str,
                movies: Items | None, movies_file: str, edges: Callable[[np.ndarray], np.ndarray],
                users_file: str = "") -> None:
    """Add the rating lines (`line` captures user, movie, rating, Unix seconds) to the trace in
    file order, or quarantine each with its reason. `edges(user ids)` gives each user's edge, or
    None for a user `users_file` does not know. Read in chunks of CHUNK_LINES lines, each added
    (quarantine by line number, then events) before the next is read."""
    known = np.fromiter(movies, np.int64, len(movies)) if movies is not None else None
    it = iter(lines)
    while chunk := list(islice(it, CHUNK_LINES)):
        _add_chunk(trace, file, chunk, line, malformed, known, movies_file, edges, users_file)


def _add_chunk(trace: Trace, file: str, lines: list[tuple[int, str]], line: re.Pattern[str], malformed: str,
               known: np.ndarray | None, movies_file: str, edges: Callable[[np.ndarray], np.ndarray],
               users_file: str) -> None:
    rejects: list[tuple[int, str, str]] = []
    kept: list[tuple[int, str]] = []
    groups: list[tuple[str, ...]] = []
    for n, raw in lines:
        m = line.fullmatch(raw)
        if m is None:
            rejects.append((n, raw, malformed))
        else:
            kept.append((n, raw))
            groups.append(m.groups())
    cols = np.array(groups, dtype=str).reshape(-1, 4).T
    uid, iid, ts = (c.astype(np.int64) for c in cols[[0, 1, 3]])
    rating = cols[2].astype(np.float64)
    users, inverse = np.unique(uid, return_inverse=True)
    user_edge = edges(users) if users.size else np.zeros(0, dtype=object)
    stranger = np.array([e is None for e in user_edge], dtype=bool)[inverse]  # per user, then per rating
    bad_rating = ~((rating >= 0.5) & (rating <= 5.0))
    bad_ts = ts >= MAX_TS
    unknown = ~np.isin(iid, known) if known is not None else np.zeros(ts.size, dtype=bool)
    for j in np.flatnonzero(bad_rating | bad_ts | unknown | stranger):
        why = (f"rating out of range ({cols[2][j]}, want 0.5..5)" if bad_rating[j] else
               f"timestamp out of range ({ts[j]}, want Unix seconds before 2100)" if bad_ts[j] else
               f"unknown user {uid[j]} (not in {users_file})" if stranger[j] else
               f"unknown movie {iid[j]} (not in {movies_file})")
        rejects.append((*kept[j], why))
    for n, raw, why in sorted(rejects):
        trace.reject(file, n, raw, why)
    ok = ~(bad_rating | bad_ts | unknown | stranger)
    # each distinct user, movie and edge once: the trace keeps codes into them, not a string per event
    movies_u, movie_of = np.unique(iid[ok], return_inverse=True)
    edge_names, user_edge_idx = distinct_index(user_edge.tolist())  # None (strangers): no kept rating
    trace.extend(file, ([f"U{u:06d}" for u in users.tolist()], inverse[ok]),
                 ([f"C{i:05d}" for i in movies_u.tolist()], movie_of),
                 "web", np.rint(DEFAULT_RUNTIME_MIN * rating[ok] / 5).astype(np.int64), ts[ok],
                 (edge_names, user_edge_idx[inverse[ok]]))


def read_latest(folder: Path, n_edges: int, trace: Trace) -> Items:
    """Read a MovieLens latest folder into `trace`; return its items (movies.csv, else the rated ids)."""
    movies = read_movies(folder / "movies.csv", trace) if (folder / "movies.csv").is_file() else None
    read_ratings(folder / "ratings.csv", movies, n_edges, trace)
    if movies is not None:
        return movies
    return {i: (f"C{i:05d}", "unknown", None) for i in sorted(int(c[1:]) for c in trace.content_ids())}
