"""MovieLens 1M and 10M (`::`-separated .dat files): every line ingested or quarantined."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pyarrow.parquet as pq

from simulation.workload.ingest import ingest
from tests.fixtures_workload import ingest_in_chunks_and_whole, read_events

USERS = (
    "1::F::1::10::48067\n"        # 1: zip region 4
    "2::M::56::16::70072\n"       # 2: region 7
    "3::M::25::15::T8H1N\n"       # 3: not a US zip -> edge-10
    "4::M\n"                      # 4: malformed
    "2::F::18::3::02139\n"        # 5: duplicate user
)
MOVIES_1M = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "2::Cit\u00e9 des enfants perdus, La (1995)::Adventure|Sci-Fi\n"  # latin-1 in the 1M file
    "3::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure\n"  # a colon in the title
    "broken line\n"
)
RATINGS_1M = (
    "1::1::5::978300760\n"        # 1: edge-04
    "2::2::3::978302109\n"        # 2: edge-07
    "3::3::1::978301968\n"        # 3: edge-10, 1 star = 20 min
    "1::3::4::978300275\n"        # 4: before line 1
    "9::1::5::978300760\n"        # 5: user not in users.dat
    "1::7::5::978300760\n"        # 6: movie not in movies.dat
    "1::2::6::978300760\n"        # 7: rating out of range
    "1,2,5,978300760\n"           # 8: malformed (the latest releases' commas)
)


def _quarantine(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "quarantine" / "ingest" / "part-00000.jsonl").read_text().splitlines()]


def _one_m(folder: Path) -> Path:
    folder.mkdir()
    (folder / "users.dat").write_text(USERS)
    (folder / "movies.dat").write_bytes(MOVIES_1M.encode("latin-1"))
    (folder / "ratings.dat").write_text(RATINGS_1M)
    return folder


def test_movielens_1m_on_zip_region_edges_with_every_line_accounted(tmp_path: Path) -> None:
    s = ingest(_one_m(tmp_path / "ml-1m"), "movielens", tmp_path / "out", n_edges=4)
    files = s["input_files"]
    assert files["ratings.dat"] == {"lines": 8, "ingested": 4, "quarantined": 4}
    assert files["users.dat"] == {"lines": 5, "ingested": 3, "quarantined": 2}
    assert files["movies.dat"] == {"lines": 4, "ingested": 3, "quarantined": 1}
    reasons = {(r["file"], r["line"]): r["reason"] for r in _quarantine(tmp_path / "out")}
    assert reasons[("users.dat", 5)] == "duplicate UserID 2"
    assert reasons[("ratings.dat", 5)] == "unknown user 9 (not in users.dat)"
    assert reasons[("ratings.dat", 6)] == "unknown movie 7 (not in movies.dat)"
    assert reasons[("ratings.dat", 7)] == "rating out of range (6, want 0.5..5)"
    assert reasons[("ratings.dat", 8)].startswith("malformed ratings.dat line")
    assert s["events_per_edge"] == {"edge-04": 2, "edge-07": 1, "edge-10": 1}  # workload.edges has no say
    edge4 = [(e["user_id"], e["content_id"], e["timestamp"], e["duration"]) for e in read_events(tmp_path / "out", "edge-04")]
    assert edge4 == [("U000001", "C00003", "2000-12-31 22:04:35", 80), ("U000001", "C00001", "2000-12-31 22:12:40", 100)]
    assert read_events(tmp_path / "out", "edge-10")[0]["duration"] == 20
    cat = pq.read_table(tmp_path / "out" / "catalog.parquet").to_pylist()
    assert [(c["title"], c["genre"]) for c in cat] == [
        ("Toy Story (1995)", "Animation"), ("Cit\u00e9 des enfants perdus, La (1995)", "Adventure"),
        ("Star Wars: Episode IV - A New Hope (1977)", "Action")]
    users = pq.read_table(tmp_path / "out" / "users.parquet").to_pylist()
    assert [(u["user_id"], u["home_edge"], u["age"]) for u in users] == [
        ("U000001", "edge-04", 1), ("U000002", "edge-07", 56), ("U000003", "edge-10", 25)]


def test_movielens_10m_without_users_hashes_user_ids_over_the_edges(tmp_path: Path) -> None:
    folder = tmp_path / "ml-10M100K"
    folder.mkdir()
    (folder / "movies.dat").write_text("1::Toy Story (1995)::Adventure|Animation\n5::Heat (1995)::(no genres listed)\n",
                                       encoding="utf-8")
    (folder / "ratings.dat").write_text("1::1::4.5::838985046\r\n7::5::0.5::838983525\r\n1::5::5::838983421\r\n")
    s = ingest(folder, "movielens", tmp_path / "out", n_edges=4)
    assert s["input_files"]["ratings.dat"] == {"lines": 3, "ingested": 3, "quarantined": 0}
    edges = {u: f"edge-{zlib.crc32(str(u).encode()) % 4:02d}" for u in (1, 7)}
    want: dict[str, int] = {}
    for e in (edges[1], edges[1], edges[7]):
        want[e] = want.get(e, 0) + 1
    assert s["events_per_edge"] == want
    assert [e["duration"] for e in read_events(tmp_path / "out", edges[7])] == [10]  # half a star
    cat = pq.read_table(tmp_path / "out" / "catalog.parquet").to_pylist()
    assert [(c["content_id"], c["genre"]) for c in cat] == [("C00001", "Adventure"), ("C00005", "unknown")]


def test_ratings_read_in_chunks_ingest_as_read_whole(tmp_path: Path, monkeypatch) -> None:
    """add_ratings parses CHUNK_LINES lines at a time (memory bounded whatever the file's size):
    chunks of 3 lines, with rejects and strangers in several, give the same events, quarantine
    (in line order) and counts as one chunk."""
    whole, chunked = ingest_in_chunks_and_whole(tmp_path, _one_m, 3, monkeypatch)
    assert chunked == whole and whole[0]["input_files"]["ratings.dat"]["quarantined"] == 4
