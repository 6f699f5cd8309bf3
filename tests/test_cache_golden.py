"""Regression: the demand mode reproduces recorded per-request outcomes and end state exactly.

The expectations were recorded with the reference implementation (main at 2646d6c, before
the speed-ups of the demand function). Run `python -m tests.test_cache_golden` to print
them for the current code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edge_nodes.cache.batch import CacheBatch
from edge_nodes.cache.edge_cache import EdgeCache
from tests.fixtures_cache import content_ids, zipf_trace

pytestmark = pytest.mark.slow  # real embedded Redis

ITEMS, K, BATCH = 300, 3, 250

# Recorded at freq_half_life 2000 (the default until 2026-12-08): the cases pin it.
CASES: dict[str, dict[str, Any]] = {
    "items": {"capacity": 40, "freq_half_life": 2000.0},
    "bytes": {"capacity": 20_000, "unit": "bytes", "prefetch_budget": 0.3, "prefetch_max_share": 0.3,
              "freq_half_life": 2000.0},
    "rescale": {"capacity": 30, "freq_half_life": 2.0, "pred_half_life": 1.0, "history_entries": 120},
    "no_admission": {"capacity": 25, "admission": False, "prefetch_on_hit": False, "evict_sample": 3,
                     "freq_half_life": 2000.0},
}


def golden_trace(n: int = 3000, seed: int = 21) -> dict[str, Any]:
    """Requests, users and k predictions (some missing, some repeated) with irregular probabilities."""
    obj, size = zipf_trace(n, ITEMS, seed=seed)
    rng = np.random.default_rng(seed + 1)
    pred = np.where(rng.random((n, K)) < 0.6, (obj[:, None] + np.arange(1, K + 1)) % ITEMS,
                    rng.integers(0, ITEMS, size=(n, K)))
    pred[rng.random((n, K)) < 0.1] = -1
    prob = np.where(pred >= 0, rng.dirichlet(np.ones(K + 1), size=n)[:, :K], 0.0)
    return {"obj": obj, "size": size, "users": [f"U{u}" for u in rng.integers(0, 50, size=n)],
            "pred": pred, "prob": prob}


def run_golden(cache: EdgeCache, t: dict[str, Any]) -> dict[str, Any]:
    """Serve the trace in batches; hits, per-batch counters and a digest of the end state."""
    ids = np.append(content_ids(ITEMS), "-")
    size = np.append(t["size"], 0)
    req = pf = 0
    hits, counters = [], []
    for s in range(0, t["obj"].size, BATCH):
        o, p = t["obj"][s:s + BATCH], t["pred"][s:s + BATCH].ravel()
        batch = CacheBatch(ids[o].tolist(), size[o].tolist(), t["users"][s:s + BATCH], ids[p].tolist(),
                           size[p].tolist(), K, t["prob"][s:s + BATCH].ravel().tolist())
        res = cache.serve(batch, requested_bytes=req, prefetch_bytes=pf)
        req += int(size[o].sum())
        pf += res.prefetched_bytes
        hits.append(res.hits)
        counters.append([res.prefetched, res.prefetched_bytes, res.prefetch_used, res.prefetch_wasted])
    return {"hits": np.packbits(np.concatenate(hits)).tobytes().hex(), "counters": counters,
            "state": state_digest(cache)}


def state_digest(cache: EdgeCache) -> str:
    """sha256 of the cache's stored state: entries, keys, frequencies, demand, meta, predictions."""
    r, (dk, ent, fq, dm, meta) = cache.client, cache.keys
    state = {"ent": sorted((k.decode(), int(v)) for k, v in r.hgetall(ent).items()),
             "dk": [(k.decode(), s) for k, s in r.zrange(dk, 0, -1, withscores=True)],
             "fq": [(k.decode(), s) for k, s in r.zrange(fq, 0, -1, withscores=True)],
             "dm": sorted((k.decode(), float(v)) for k, v in r.hgetall(dm).items()),
             "meta": sorted((k.decode(), float(v)) for k, v in r.hgetall(meta).items()),
             "users": sorted(_user(r, key) for key in r.scan_iter(match=cache.ns.key("user:*")))}
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()


def _user(r: Any, key: bytes) -> tuple[str, list[str], list[float], int]:
    ids, probs, tick = r.get(key).decode().split(";")
    return key.decode(), ids.split(",") if ids else [], [float(x) for x in probs.split(",") if x], int(tick)


GOLDEN: dict[str, dict[str, Any]] = {
    "bytes": {
        "hits": (
            "050483150dc14571eb45ac48657352b1045ae772fdc0ef91d8edc98eb39f73b0911bd0eb2003f571a2d57e86"
            "6ef54d0ab10b166b38d51f47d32e7f78a412fcf5eb366b272cef4f4f4eb6dd07c898db2295e876f9c19d1138"
            "0ec9457e88f5e0ef5b4ceebdd65aa20d04e9723564e2804d7869b23a87eb71dcb75631602d2fe2bec4ff48f0"
            "341ac5ab8b56361bd3d768969c2c3838ff1a6cfa038b07fa86bdd7f2eb78bd97e0005eaf53eefbf045de49bf"
            "f674bc7caacdf4022d5f96bc98f3ccc572dfba16906bcd951c5682cc28e2df6da359453bee63c2cb1bdfdaf6"
            "69c1af52006dea4f3f0631f49fd2f48eb2efc1f60b105aa0e7b253da3419d5e274f79f8e7b78baa087fc6ae8"
            "b2f297be7241736da13383be69efe3c7ac77ff86ca17ba8d6ded45d2cbd7ae3fb48664ebefb7abe5c55f57a4"
            "51f41a79a79fdeb6d7c2c8cf87a18b8042881a2d2c6d355c2501c159d5ed4340863ed7245fe7fd6534f0f52f"
            "ee5d383edee627d3b6afa51eadebf3fcd2de9ff1d5cf85"
        ),
        "counters": [
            [89, 27233, 16, 52], [109, 37181, 8, 108], [75, 26621, 11, 60],
            [86, 28832, 15, 75], [91, 33339, 10, 77], [110, 40050, 13, 97],
            [84, 31167, 4, 84], [81, 25121, 6, 78], [96, 39669, 9, 85],
            [97, 36753, 12, 88], [82, 27206, 7, 71], [84, 27907, 9, 72],
        ],
        "state": "59b0eb202dfb4441f8286c7f17492683cec6b47245b23231c9d6085a26108a1a",
    },
    "items": {
        "hits": (
            "0524c3950dc16570cb45a448657152b14452e752fdc06fd198edc98fb39f773091bbd0eb2023f571a2d57e86"
            "6ef54d0a310b166b38d51fc5d32e7f78a432fcf5ef266b2f2cce4f6f5cb6d807cc9cdbb29fe8e4f1c19d5d38"
            "0ec9c57c88f5c0ff530ce6f9d658a20404e962356ce380cc78e9a23a86e9f1dca7d631202d27e6bec4fe49f0"
            "341ac7ab8b56361bd3d728968c2c3038fd9b4cba038b07fa86bc97f2eb78bd97f0005a8f57eefbf045de49bf"
            "6674bc7caacdf40e2c5f96bc98f3ccc576dfb216b02fcf951c5682cc28e2df6da35945137e63c6cb1bdfd8f6"
            "e5c1af520051ea473f0631f4b7d2f48cb2efc1f78b945aa0e7b253da3c09d5e274f79fde7b78ba2087dc5af8"
            "b2f293af7a47732da3338faf69efe3e7ac77f7868a17badd2ded4592cbd7a63fb48664a2eeb7abe5c50757a4"
            "51e41a79a79fdeb6d7c3c8cf87a1cb8062881a2d1c6d375c1d01c179f4ed43428636d7245fe5bf6534b0752a"
            "ea5d783edeee27d3b6aea51cadebf3fcd2de9ff1d5cc85"
        ),
        "counters": [
            [127, 66784, 20, 87], [122, 69518, 15, 107], [104, 59207, 19, 85],
            [128, 79382, 16, 112], [139, 79747, 15, 125], [138, 78707, 14, 123],
            [138, 83419, 9, 131], [164, 101538, 12, 154], [153, 91969, 21, 130],
            [158, 93714, 9, 149], [181, 102180, 21, 158], [181, 106973, 15, 167],
        ],
        "state": "e401a7d4b497939b84f07a44affcaeccef72bea30a059211b8f32a791e6f3e8a",
    },
    "no_admission": {
        "hits": (
            "0504c30d0cc14570c3458058653352a10430ce624dd12e90402841869b9f128090bad06900036530a2d56694"
            "2eb54d0a330a160330100bc593ae7f3ca412f47def242b2704ce4b5b5cb6f807c899cb32954864c9c1951138"
            "0ecbc57b00f0c0ab5b4cf2398658820c04e9e21464e3804828c9a220866971d8a75031200d25c2b7d4ee49f0"
            "240ac2ab8b563603d19728968c2830383d1a4492038807f0043897f2a978bd96e000522f136e7be0458e09bf"
            "e654a47c02cdd4022c5f96bc88f3ccc560d73216902bcf951c4682c42cc2ffed231945136e43c04b1adf7876"
            "61618f520441c8473f0031f4b1d2540cb2ef41760b105a80e69253da2c18d3e034339f1c7b78802087fc5278"
            "92f297a67241332da13183ae49efc3c68c75e7828a17b2852d2d41934b97a63eb4866462ebb3ab65454757a4"
            "50e41a79861fd6b617c1c84f8781c38040881a2d0c61355c2500c101f4ad0242822657241fe5b46134b07522"
            "ea5d7816dece05d334aead1cbdebe378d2dc9fb1d5d885"
        ),
        "counters": [
            [113, 63214, 14, 89], [92, 56035, 7, 83], [106, 59452, 14, 92],
            [110, 64773, 12, 98], [152, 86817, 12, 142], [160, 92456, 14, 145],
            [118, 69406, 5, 113], [162, 98400, 6, 156], [141, 81542, 12, 130],
            [169, 101524, 7, 161], [193, 107199, 15, 181], [163, 97554, 14, 146],
        ],
        "state": "c18cd159d0b47e11f516579ebe6b40d3e997406279fd438a7d233c3280f78aa1",
    },
    "rescale": {
        "hits": (
            "0524c3c50d416470c1c5cc004731522146508f562dd04f90c865c98fa0cf1320c133906900015533a2d54e84"
            "e4b54d0aa006024333944f06132a133a04032475e904202404ee4b4a44b2f885c099c392b208260141991530"
            "06c8c16908a5a0fb1100f118d659025c84886014600080c921489222826971d09742302021055692d4fa04f3"
            "644c00a38f422603d59128d6c82030386a5b0c90028800d804bc0512a3600597a882428c11ce6be0450809ad"
            "0660a04ca2ced405600b80bc88e3ec4562450213102bc5b50c0620c448c06fbd234944124f43c2ca3adfdae6"
            "6560af4200405000360029e0a252440c22e5412208801b80e69253da2000c6240004a6983378248606794268"
            "105112817a45622c2330928be8adc1e7bc21b3800a0092852c8050824184ac3fb4906820a7332b6545011664"
            "400408388497d8b255c24002108002004084980d0c61315c1000817814640100800414040dc53c7010811d20"
            "a25d28145ec401c014aca01ea9dbc378c29c94b0d088c0"
        ),
        "counters": [
            [273, 146928, 31, 227], [258, 144667, 24, 235], [257, 146338, 24, 232],
            [257, 153172, 19, 239], [309, 165829, 22, 286], [242, 136887, 22, 220],
            [257, 151070, 21, 236], [248, 148139, 14, 235], [328, 182840, 24, 304],
            [237, 140032, 17, 219], [313, 159971, 20, 296], [252, 148881, 12, 237],
        ],
        "state": "4a5eb3845f97f2e82d87640d168709f6676b646dd016e1299637dfda9cf10bd6",
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_demand_mode_reproduces_recorded_outcomes(edge_cache: Callable[..., EdgeCache], case: str) -> None:
    kw = dict(CASES[case])
    got = run_golden(edge_cache(kw.pop("capacity"), eviction="demand", **kw), golden_trace())
    want = GOLDEN[case]
    assert got["hits"] == want["hits"]
    assert got["counters"] == want["counters"]
    assert got["state"] == want["state"]


if __name__ == "__main__":
    from edge_nodes.cache.redis_conn import edge_namespace
    from edge_nodes.cache.redis_server import EmbeddedRedis
    from edge_nodes.cache.settings import CacheSettings
    with EmbeddedRedis() as server:
        out = {}
        for name, kw in sorted(CASES.items()):
            c = EdgeCache(edge_namespace(server.url, "edge-00", 0), CacheSettings(eviction="demand", prefetch_price=0.0, **kw))
            c.flush()
            out[name] = run_golden(c, golden_trace())
    print(json.dumps(out))
