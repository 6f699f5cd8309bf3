"""The predictor behind each predictive policy, built from one edge's own files: one registry.

`PREDICTORS` maps a policy name to a builder `(run, edge, items, history, live) -> Predictor`; the
config's predictive policy names are pinned to its keys by a fast test. `history` is the edge's
users' histories (train period + the test stream, streams.with_history), shared by every
predictor of the edge that reads them; None = read the train period's from the run. `live` is the
federated counts refreshed during the test period (cooc_live.py), read by itemcf and by models
that take the summed table as side information; None = the table at the cut. A builder raises `EdgeError`
when the files it needs are missing (the policy is then skipped and reported, never faked).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from edge_nodes.errors import EdgeError
from edge_nodes.learning.cooc_live import LiveCounts
from edge_nodes.learning.cooc_predictor import CoocPredictor
from edge_nodes.learning.cooc_table import ITEMCF_FILE, CoocTable, local_table_path
from edge_nodes.learning.history import UserHistory
from edge_nodes.learning.predictors import MarkovPredictor, ModelPredictor, PopularityPredictor
from edge_nodes.learning.side import SideInfo
from edge_nodes.predictor import Predictor
from simulation.rundir import RunDir

Builder = Callable[[RunDir, str, int, UserHistory | None, LiveCounts | None], Predictor]


def latest_round(models: Path) -> Path | None:
    """The newest models/round-<n>.npz, or None."""
    rounds = [(int(m.group(1)), p) for p in models.glob("round-*.npz")
              if (m := re.fullmatch(r"round-(\d+)\.npz", p.name))]
    return max(rounds)[1] if rounds else None


def _popularity(run: RunDir, edge: str, items: int, history: UserHistory | None = None,
                live: LiveCounts | None = None) -> PopularityPredictor:
    return PopularityPredictor.from_table(run.features / "popularity" / f"edge_id={edge}", items)


def _markov(run: RunDir, edge: str, items: int, history: UserHistory | None = None,
            live: LiveCounts | None = None) -> Predictor:
    """The Spark table, with the counts it was ranked from (calibration's held-out view) when written."""
    part = f"edge_id={edge}"
    markov = MarkovPredictor.from_table(run.features / "markov" / part, items, _popularity(run, edge, items))
    transitions = run.features / "transitions" / part
    return markov.with_counts(transitions, run.features / "popularity" / part) if transitions.exists() else markov


def _history(run: RunDir, edge: str, items: int, history: UserHistory | None) -> UserHistory:
    return history if history is not None else UserHistory.from_table(run.features / "history" / f"edge_id={edge}",
                                                                       items)


def _itemcf(run: RunDir, edge: str, items: int, history: UserHistory | None = None,
            live: LiveCounts | None = None) -> Predictor:
    share = _popularity(run, edge, items).share
    table = live if live is not None else CoocTable.load(run.models / ITEMCF_FILE, items)
    return CoocPredictor.with_history(table, share, _history(run, edge, items, history))


def _model(policy: str, path_of: Callable[[RunDir, str], Path | None], own_table: bool = False) -> Builder:
    """A model policy: its file, and the side information it was trained with (the edge's user
    histories; the summed co-occurrence table, or with `own_table` the edge's own counts that
    local_only trained on, saved beside its model)."""
    def build(run: RunDir, edge: str, items: int, history: UserHistory | None = None,
              live: LiveCounts | None = None) -> Predictor:
        path = path_of(run, edge)
        if path is None:
            raise EdgeError(f"no model for {policy}: {run.models} has no round-<n>.npz; run `edgecache train`")
        predictor = ModelPredictor.from_npz(path, policy)
        if predictor.trained_with_side:
            table = local_table_path(path) if own_table else run.models / ITEMCF_FILE
            if history is None:
                predictor.side = SideInfo.from_files(run.features / "history" / f"edge_id={edge}", table, items)
            elif live is not None and not own_table:  # local_only's own counts are not re-summed
                predictor.side = SideInfo(history, live)
            else:
                predictor.side = SideInfo(history, CoocTable.load(table, items) if table.is_file() else None)
        return predictor
    return build


def _federated_path(run: RunDir, edge: str) -> Path | None:
    composed = run.models / "federated" / f"{edge}.npz"  # global + this edge's local layers (FedPer)
    return composed if composed.is_file() else latest_round(run.models)


PREDICTORS: dict[str, Builder] = {
    "popularity": _popularity,
    "markov_sql": _markov,
    "itemcf": _itemcf,
    "local_only": _model("local_only", lambda run, edge: run.models / "local_only" / f"{edge}.npz", own_table=True),
    "federated": _model("federated", _federated_path),
    "federated_personalized": _model("federated_personalized",
                                     lambda run, edge: run.models / "personalized" / f"{edge}.npz"),
    "centralized": _model("centralized", lambda run, edge: run.models / "centralized.npz"),
}


def build_predictor(policy: str, run: RunDir, edge: str, items: int, history: UserHistory | None = None,
                    live: LiveCounts | None = None) -> Predictor:
    """The predictor behind a predictive policy, from this edge's own files (and `history`, `live`)."""
    if policy not in PREDICTORS:
        raise EdgeError(f"no predictor is registered for policy {policy!r} (known: {', '.join(PREDICTORS)})")
    return PREDICTORS[policy](run, edge, items, history, live)
