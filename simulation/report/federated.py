"""Federated sections of a report: training curves per round, and failures / degraded spans.

Reads `results["federated"]`: `strategy`, `rounds` (`[{"round", "train_loss", "eval_hit_at_k",
...}]`; a round may carry `failures`: a count or a list of edge ids), optional `failures` (a list
of `{"round", "edge", "error"}`), and the reference baselines as `federated.centralized` /
`federated.local_only` (or under `federated.baselines`), each a dict with the final
`train_loss` and/or `eval_hit_at_k`. `results["degraded"]` is a list of spans (any keys, e.g.
`edge`, `start`, `end`, `reason`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulation.report import plots
from simulation.report.model import Block, Figure, Note, Section, Table, fmt_value, is_number, not_in_run
from simulation.report.sections import records_table

REFERENCES = ("centralized", "local_only")


def references(fed: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Baselines to draw beside the federated curves: name -> {metric: value}."""
    out: dict[str, dict[str, float]] = {}
    nested: Mapping[str, Any] = fed["baselines"] if isinstance(fed.get("baselines"), Mapping) else {}
    for name in REFERENCES:
        values = fed.get(name) if isinstance(fed.get(name), Mapping) else nested.get(name)
        if isinstance(values, Mapping):
            nums = {k: float(v) for k, v in values.items() if is_number(v)}
            if nums:
                out[name] = nums
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return fmt_value(v)


def rounds_table(rounds: list[Mapping[str, Any]]) -> Table:
    """One row per round, columns in order of first appearance."""
    cols = list(dict.fromkeys(k for r in rounds for k in r))
    return Table(tuple(cols), tuple(tuple(_fmt(r.get(c, "")) for c in cols) for r in rounds),
                 "Federated rounds as recorded.")


def federated_section(results: Mapping[str, Any]) -> Section:
    """Loss and hit@K per round with centralized and local-only as reference lines."""
    fed = results.get("federated")
    if not isinstance(fed, Mapping) or not fed.get("rounds"):
        return Section("federated", "Federated training", (not_in_run(
            "Federated training", "The train stage writes federated.rounds (`edgecache train`)."),))
    rounds = [r for r in fed["rounds"] if isinstance(r, Mapping)]
    k = ((results.get("config") or {}).get("model") or {}).get("top_k")
    k_label = f"hit@{k}" if k else "hit@K"
    refs = references(fed)
    png = plots.training_curves([int(r.get("round", i + 1)) for i, r in enumerate(rounds)],
                                [r.get("train_loss") for r in rounds],
                                [r.get("eval_hit_at_k") for r in rounds], refs, k_label)
    blocks: list[Block] = [
        f"Strategy {fmt_value(fed.get('strategy'))}, {len(rounds)} rounds.{privacy_line(fed.get('dp'))}",
        Figure("federated_training", png, f"Training loss and {k_label} per federated round"),
        rounds_table(rounds),
    ]
    if refs:
        blocks.append(Table(("reference", *sorted({m for v in refs.values() for m in v})),
                            tuple((n, *(_fmt(v.get(m)) if m in v else "—"
                                        for m in sorted({m for v in refs.values() for m in v})))
                                  for n, v in refs.items()),
                            "Reference baselines (dashed lines in the plots)."))
    else:
        blocks.append(Note("Centralized and local-only reference values: not in this run."))
    return Section("federated", "Federated training", tuple(blocks))


def privacy_line(dp: Any) -> str:
    """' Edge-level DP: (epsilon, delta) = ...' when the run states an epsilon, else ''."""
    if not isinstance(dp, Mapping) or not dp.get("enabled"):
        return " No differential privacy (federated.dp_noise = 0)."
    if "epsilon" not in dp:
        return " Differential privacy on, epsilon not computed for this run."
    if not dp.get("epsilon_holds", True):
        return f" Differential privacy noise on, but no epsilon holds: {dp.get('why_not', '')}."
    return (f" Edge-level differential privacy on the shared arrays: (epsilon, delta) = "
            f"({_fmt(dp['epsilon'])}, {dp['delta']:.3g}) after {dp['rounds']} rounds "
            f"(noise multiplier {_fmt(dp['noise_multiplier'])}, sampling rate {_fmt(dp['sampling_rate'])}, "
            f"{dp['accountant']}); users and local layers are not covered (docs/federated.md).")


def round_failures(fed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Failures as records, from federated.failures or from per-round `failures` fields."""
    listed = fed.get("failures")
    if isinstance(listed, list) and listed:
        return [dict(f) if isinstance(f, Mapping) else {"failure": f} for f in listed]
    out = []
    for r in fed.get("rounds") or []:
        f = r.get("failures") if isinstance(r, Mapping) else None
        if isinstance(f, list) and f:
            out.append({"round": r.get("round"), "failed edges": ", ".join(map(str, f))})
        elif isinstance(f, (int, float)) and is_number(f) and f > 0:
            out.append({"round": r.get("round"), "failed edges": f})
    return out


def failures_section(results: Mapping[str, Any]) -> Section:
    """Federated round failures and degraded spans, or an explicit 'none'."""
    blocks: list[Block] = []
    fed = results.get("federated")
    if isinstance(fed, Mapping) and fed.get("rounds"):
        fails = round_failures(fed)
        blocks.append(records_table(fails, "Federated round failures (the round went on without them).")
                      if fails else Note("No federated round failures."))
    else:
        blocks.append(not_in_run("Federated round failures"))
    degraded = results.get("degraded")
    if degraded is None:
        blocks.append(not_in_run("Degraded spans"))
    elif isinstance(degraded, list) and degraded:
        recs = [dict(d) if isinstance(d, Mapping) else {"span": d} for d in degraded]
        blocks.append(records_table(recs, "Degraded spans (e.g. Redis unavailable, served from origin)."))
    else:
        blocks.append(Note("No degraded spans."))
    return Section("failures", "Failures and degraded spans", tuple(blocks))
