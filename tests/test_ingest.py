"""`edgecache ingest`: JSON Lines, CSV and MovieLens traces, malformed lines quarantined."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from simulation.errors import ConfigError
from simulation.workload.ingest import ingest, parse_mapping
from simulation.workload.movielens import zip_edge
from tests.conftest import ROOT
from tests.fixtures_workload import ingest_in_chunks_and_whole, read_events


def _quarantine(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "quarantine" / "ingest" / "part-00000.jsonl").read_text().splitlines()]


def _all_events(out: Path) -> list[dict]:
    edges = sorted(p.name.split("=", 1)[1] for p in (out / "logs").glob("edge=*"))
    return [ev for e in edges for ev in read_events(out, e)]


JSONL = [
    {"uid": "alice", "item": "m1", "ts": "2024-01-02 10:00:00", "dev": "tv", "mins": 30},
    {"uid": "bob", "item": "m2", "ts": 1704189600},                       # epoch, no device/duration
    {"uid": "alice", "item": "m2", "ts": "2024-01-02T09:00:00+01:00", "dev": "Mobile", "mins": 12.4},
]
BAD_JSONL = [
    '{"uid": "carol", "item": "m1"',                                       # broken JSON
    '{"uid": "carol", "ts": "2024-01-02 10:00:00"}',                       # missing item
    '{"uid": "carol", "item": "m1", "ts": "yesterday"}',                   # bad timestamp
    '{"uid": "carol", "item": "m1", "ts": "2024-01-02 10:00:00", "mins": -5}',
    '{"uid": "carol", "item": "m1", "ts": "2024-01-02 10:00:00", "dev": "fridge"}',
    '[1, 2, 3]',
]


def test_jsonl_with_mapping_quarantines_every_malformed_line(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    lines = [json.dumps(r) for r in JSONL] + BAD_JSONL
    trace.write_text("\n".join(lines) + "\n")
    mapping = parse_mapping(["user_id=uid,content_id=item", "timestamp=ts", "device=dev", "duration=mins"])
    s = ingest(trace, "jsonl", tmp_path / "out", mapping=mapping, n_edges=4)
    assert (s["events"], s["ingest_quarantined"]) == (3, 6)
    assert s["input_files"]["trace.jsonl"] == {"lines": 9, "ingested": 3, "quarantined": 6}
    rejected = _quarantine(tmp_path / "out")
    assert [r["line"] for r in rejected] == [4, 5, 6, 7, 8, 9]
    assert [r["raw"] for r in rejected] == BAD_JSONL
    assert "broken JSON" in rejected[0]["reason"] and "item" in rejected[1]["reason"]
    assert "timestamp" in rejected[2]["reason"] and "device" in rejected[4]["reason"]
    events = _all_events(tmp_path / "out")
    by_user = {(e["user_id"], e["timestamp"]): e for e in events}
    # 09:00+01:00 is 08:00 UTC, the earliest event; epoch 1704189600 is 2024-01-02 10:00:00 UTC
    assert by_user[("alice", "2024-01-02 08:00:00")]["device"] == "mobile"
    assert by_user[("alice", "2024-01-02 08:00:00")]["duration"] == 12
    assert by_user[("bob", "2024-01-02 10:00:00")]["device"] == "web"         # documented default
    assert by_user[("bob", "2024-01-02 10:00:00")]["duration"] == 100         # default runtime
    for e in events:
        assert e["edge_id"] == f"edge-{zlib.crc32(e['user_id'].encode()) % 4:02d}"
    cat = pq.read_table(tmp_path / "out" / "catalog.parquet")
    assert cat.column("content_id").to_pylist() == ["m1", "m2"] and cat.column("item_idx").to_pylist() == [0, 1]
    assert pq.read_table(tmp_path / "out" / "users.parquet").column("user_id").to_pylist() == ["alice", "bob"]


def test_csv_with_mapping_and_edges(tmp_path: Path) -> None:
    trace = tmp_path / "views.csv"
    trace.write_text(
        "who,what,when,site,len\n"
        "u1,c1,2024-03-01 12:00:00,paris,40\n"
        "u2,c1,2024-03-01 11:00:00,berlin,\n"
        "u1,c2,2024-03-02 12:00:00,paris,55\n"
        "u3,c2,2024-03-02 12:00:00,paris\n"                 # too few fields
        "u3,c2,2024-03-02 12:00:00,paris,abc\n"             # non-numeric duration
        "u3,c2,31/12/2024,paris,5\n"                        # bad timestamp
    )
    mapping = parse_mapping(["user_id=who,content_id=what,timestamp=when,edge_id=site,duration=len"])
    s = ingest(trace, "csv", tmp_path / "out", mapping=mapping)
    assert (s["events"], s["ingest_quarantined"]) == (3, 3)
    assert s["input_files"]["views.csv"]["lines"] == 6  # data lines; the header is not an input line
    assert s["edge_map"] == {"berlin": "edge-00", "paris": "edge-01"}
    paris = read_events(tmp_path / "out", "edge-01")
    assert [(e["user_id"], e["content_id"], e["duration"]) for e in paris] == [("u1", "c1", 40), ("u1", "c2", 55)]
    assert [r["line"] for r in _quarantine(tmp_path / "out")] == [5, 6, 7]


def test_events_coded_in_small_buffers_ingest_as_in_one(tmp_path: Path, monkeypatch) -> None:
    """Events added one at a time are coded into columns every Trace.BUFFER events: buffers of 2
    (a flush between events of the same user, item and edge) write the same files as one buffer."""
    from simulation.workload.trace import Trace

    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join([json.dumps(r) for r in JSONL * 3] + BAD_JSONL) + "\n")
    mapping = parse_mapping(["user_id=uid,content_id=item", "timestamp=ts", "device=dev", "duration=mins"])

    def run(name: str) -> tuple:
        out = tmp_path / name
        s = ingest(trace, "jsonl", out, mapping=mapping, n_edges=2)
        tables = [pq.read_table(out / f).to_pylist() for f in ("catalog.parquet", "users.parquet")]
        return s, _all_events(out), _quarantine(out), tables

    whole = run("whole")
    monkeypatch.setattr(Trace, "BUFFER", 2)
    assert run("buffered") == whole and whole[0]["events"] == 9


def test_csv_without_the_mapped_columns_names_them(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ConfigError, match="user_id"):
        ingest(trace, "csv", tmp_path / "out")


def test_bad_mapping_is_named() -> None:
    with pytest.raises(ConfigError, match="usr"):
        parse_mapping(["usr=uid"])


@pytest.mark.parametrize(("code", "edge"), [("85711", "edge-08"), ("02139", "edge-00"), ("12345-6789", "edge-01"),
                                            ("T8H1N", "edge-10"), ("", "edge-10"), ("9410", "edge-10")])
def test_zip_region_rule(code: str, edge: str) -> None:
    assert zip_edge(code) == edge


def _movielens(folder: Path) -> Path:
    folder.mkdir()
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|T8H1N\nbad line\n")
    flags_toy = "|".join(["0", "0", "0", "1", "1"] + ["0"] * 14)
    flags_gold = "|".join(["0", "1", "1"] + ["0"] * 16)
    (folder / "u.item").write_bytes(
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags_toy}\n"
        f"2|GoldenEye (1995)|01-Jan-1995||http://x|{flags_gold}\n"
        "3|broken\n".encode("latin-1"))
    (folder / "u.data").write_text(
        "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881251000\n3\t2\t1\t881252000\n"
        "9\t1\t5\t881250949\n1\t7\t5\t881250949\nx\ty\n1\t1\t9\t881250949\n")
    return folder


def test_movielens_ratings_become_events_on_zip_region_edges(tmp_path: Path) -> None:
    s = ingest(_movielens(tmp_path / "ml"), "movielens", tmp_path / "out")
    files = s["input_files"]
    assert files["u.data"] == {"lines": 8, "ingested": 4, "quarantined": 4}
    assert files["u.user"] == {"lines": 4, "ingested": 3, "quarantined": 1}
    assert files["u.item"] == {"lines": 3, "ingested": 2, "quarantined": 1}
    assert s["ingest_quarantined"] == 6 == len(_quarantine(tmp_path / "out"))
    assert s["events_per_edge"] == {"edge-08": 2, "edge-09": 1, "edge-10": 1}
    first = read_events(tmp_path / "out", "edge-08")[0]
    assert first == {"user_id": "U000001", "device": "web", "content_id": "C00001", "duration": 100,
                     "timestamp": "1997-12-04 15:55:49", "edge_id": "edge-08"}
    assert read_events(tmp_path / "out", "edge-10")[0]["duration"] == 20  # 1 star = 1/5 of 100 min
    cat = pq.read_table(tmp_path / "out" / "catalog.parquet").to_pylist()
    assert [(c["title"], c["genre"]) for c in cat] == [("Toy Story (1995)", "Animation"), ("GoldenEye (1995)", "Action")]
    users = pq.read_table(tmp_path / "out" / "users.parquet").to_pylist()
    assert [(u["user_id"], u["home_edge"], u["age"]) for u in users] == [
        ("U000001", "edge-08", 24), ("U000002", "edge-09", 53), ("U000003", "edge-10", 23)]


def test_movielens_folder_without_ratings_is_a_clear_error(tmp_path: Path) -> None:
    from simulation.errors import EdgecacheError

    with pytest.raises(EdgecacheError, match="u.data"):
        ingest(tmp_path, "movielens", tmp_path / "out")


def test_cli_ingest_writes_the_run_layout(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    later = {"uid": "bob", "item": "m1", "ts": "2024-01-05 20:00:00"}
    trace.write_text("\n".join(json.dumps(r) for r in [*JSONL, later]) + "\nnot json\n")
    out = subprocess.run([sys.executable, "-m", "simulation.cli", "ingest", str(trace), "--format", "jsonl",
                          "--out", str(tmp_path / "run"), "--map", "user_id=uid,content_id=item,timestamp=ts",
                          "--set", "split.test_days=1", "--set", "workload.days=2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 events, 1 lines quarantined" in out.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["workload"]["source"] == "ingest" and results["workload"]["ingest_quarantined"] == 1
    assert (tmp_path / "run" / "catalog.parquet").exists() and (tmp_path / "run" / "users.parquet").exists()
    assert 'source = "ingest"' in (tmp_path / "run" / "config.toml").read_text()
    span = json.loads((tmp_path / "run" / "span.json").read_text())
    assert span == {"start_date": "2024-01-02", "days": 4, "trace": "t.jsonl"}  # the trace's, not workload.days


LATEST_RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,1,4.0,964982703\n"        # 2: user 1 -> edge-03 (crc32("1") % 4 = 3)
    "1,3,4.5,964981247\n"        # 3: earlier than line 2
    "3,1,4.0,964981247\n"        # 4: user 3 -> edge-03 too, same second as line 3: file order breaks the tie
    "2,50,0.5,1000000000\n"      # 5: user 2 -> edge-01; half a star = 10 min
    "7,3,5.0,964982703\n"        # 6: user 7 -> edge-02
    "1,2,0.0,964982703\n"        # 7: rating out of range
    "1,2,5.5,964982703\n"        # 8: rating out of range
    "1,2,4.0,99999999999\n"      # 9: after 2100
    "1,99,4.0,964982703\n"       # 10: not in movies.csv
    "1,\u00b2,4.0,964982703\n"  # 11: a digit str.isdigit() accepts and int() refuses
    "garbage\n"                  # 12
    "\n"                         # 13
    "1,2,3.0\n"                  # 14
)
LATEST_MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '2,"American President, The (1995)",Comedy|Drama|Romance\n'
    "3,Grumpier Old Men (1995),(no genres listed)\n"
    '50,"Usual Suspects, The (1995)",Crime|Mystery|Thriller\n'
    "x,broken,Drama\n"
    "2,Duplicate,Drama\n"
)


def _latest(folder: Path, movies: bool = True) -> Path:
    folder.mkdir()
    (folder / "ratings.csv").write_text(LATEST_RATINGS, encoding="utf-8")
    if movies:
        (folder / "movies.csv").write_text(LATEST_MOVIES, encoding="utf-8")
    return folder


def test_movielens_latest_ratings_on_hashed_edges(tmp_path: Path) -> None:
    s = ingest(_latest(tmp_path / "ml"), "movielens", tmp_path / "out", n_edges=4)
    assert s["input_files"]["ratings.csv"] == {"lines": 13, "ingested": 5, "quarantined": 8}
    assert s["input_files"]["movies.csv"] == {"lines": 6, "ingested": 4, "quarantined": 2}
    rejected = _quarantine(tmp_path / "out")
    assert [(r["file"], r["line"]) for r in rejected] == [
        ("movies.csv", 6), ("movies.csv", 7), *(("ratings.csv", n) for n in range(7, 15))]
    reasons = [r["reason"] for r in rejected]
    assert reasons[1] == "duplicate movieId 2"
    assert reasons[2:4] == ["rating out of range (0.0, want 0.5..5)", "rating out of range (5.5, want 0.5..5)"]
    assert "timestamp out of range" in reasons[4] and reasons[5] == "unknown movie 99 (not in movies.csv)"
    assert all(r.startswith("malformed ratings.csv line") for r in reasons[6:])
    assert s["events_per_edge"] == {"edge-01": 1, "edge-02": 1, "edge-03": 3}
    assert (s["start_date"], s["days"]) == ("2000-07-30", 407)
    edge3 = [(e["user_id"], e["content_id"], e["timestamp"], e["duration"]) for e in read_events(tmp_path / "out", "edge-03")]
    assert edge3 == [("U000001", "C00003", "2000-07-30 18:20:47", 90), ("U000003", "C00001", "2000-07-30 18:20:47", 80),
                     ("U000001", "C00001", "2000-07-30 18:45:03", 80)]
    assert read_events(tmp_path / "out", "edge-01")[0]["duration"] == 10
    cat = pq.read_table(tmp_path / "out" / "catalog.parquet").to_pylist()
    assert [(c["content_id"], c["title"], c["genre"]) for c in cat] == [
        ("C00001", "Toy Story (1995)", "Adventure"), ("C00002", "American President, The (1995)", "Comedy"),
        ("C00003", "Grumpier Old Men (1995)", "unknown"), ("C00050", "Usual Suspects, The (1995)", "Crime")]
    users = pq.read_table(tmp_path / "out" / "users.parquet").to_pylist()
    assert [(u["user_id"], u["home_edge"]) for u in users] == [
        ("U000001", "edge-03"), ("U000002", "edge-01"), ("U000003", "edge-03"), ("U000007", "edge-02")]


def test_movielens_latest_ratings_read_in_chunks_ingest_as_read_whole(tmp_path: Path, monkeypatch) -> None:
    """ratings.csv parsed CHUNK_LINES lines at a time: chunks of 2 lines (rejects of every kind
    spread over them) give the same summary, events and line-ordered quarantine as one chunk."""
    whole, chunked = ingest_in_chunks_and_whole(tmp_path, _latest, 2, monkeypatch)
    assert chunked == whole and whole[0]["input_files"]["ratings.csv"]["quarantined"] == 8


def test_movielens_latest_without_movies_builds_the_catalog_from_ratings(tmp_path: Path) -> None:
    s = ingest(_latest(tmp_path / "ml", movies=False), "movielens", tmp_path / "out", n_edges=2)
    assert s["input_files"]["ratings.csv"] == {"lines": 13, "ingested": 6, "quarantined": 7}  # movie 99 is in
    cat = pq.read_table(tmp_path / "out" / "catalog.parquet")
    assert cat.column("content_id").to_pylist() == ["C00001", "C00003", "C00050", "C00099"]
    assert s["events_per_edge"] == {"edge-00": 1, "edge-01": 5}  # crc32("7") % 2 = 0; "1", "2", "3" -> 1


def test_movielens_latest_header_and_missing_folder_are_clear_errors(tmp_path: Path) -> None:
    from simulation.errors import EdgecacheError

    with pytest.raises(EdgecacheError, match=r"ml-latest-small not found: download ml-latest-small.zip from https://grouplens.org/datasets/movielens/latest/"):
        ingest(tmp_path / "data" / "ml-latest-small", "movielens", tmp_path / "out")
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "ratings.csv").write_text("1,1,4.0,964982703\n")
    with pytest.raises(EdgecacheError, match="userId,movieId,rating,timestamp"):
        ingest(tmp_path / "ml", "movielens", tmp_path / "out")


def test_movielens_small_experiment_without_the_download_says_where_to_get_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from simulation.config import load_config
    from simulation.errors import EdgecacheError
    from simulation.pipeline import StageContext, run_stage
    from simulation.rundir import RunDir

    cfg = load_config(ROOT / "experiments" / "movielens_small.toml")
    assert (cfg.workload.ingest_path, cfg.workload.edges, cfg.cache.capacity) == ("data/ml-latest-small", 4, 100)
    assert cfg.split.days_in(8215) == 8215 // 5 == 1643  # the last 20% of latest-small's 8,215 days
    monkeypatch.chdir(tmp_path)  # no data/ml-latest-small here
    ctx = StageContext(cfg=cfg, run=RunDir(tmp_path / "run"), console=Console(quiet=True))
    with pytest.raises(EdgecacheError, match=r"data/ml-latest-small not found: download ml-latest-small.zip from "
                                             r"https://grouplens.org/datasets/movielens/latest/ .* unzip it there"):
        run_stage("generate", ctx)
