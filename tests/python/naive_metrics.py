"""A deliberately plain re-implementation of the retrieval metrics, written from
docs/metrics.md with Python loops and no shared code with the C++
core. Tests compare the library against it; tests/data/make_metrics_cases.py
uses it to write the golden cases that the C++ tests read."""

import math


def rank_scores(scores_row, exclude_index=None):
    """Gallery indices by score descending, ties by index ascending."""
    order = [g for g in range(len(scores_row)) if g != exclude_index]
    order.sort(key=lambda g: (-scores_row[g], g))
    return order


def evaluate_query(ranked, query_id, gallery_ids, ks, map_ks, normalizer, self_index=None):
    """Metrics of one query. ranked: gallery indices best first (-1 = padding).
    Returns None for a lone query (R = 0), else a dict."""
    relevant = sum(1 for g, gid in enumerate(gallery_ids) if gid == query_id and g != self_index)
    if relevant == 0:
        return None
    rels = [1 if gallery_ids[g] == query_id else 0 for g in ranked if g != -1 and g != self_index]
    depth = max(list(ks) + list(map_ks))
    rels = (rels + [0] * depth)[:depth]
    out = {}
    for k in ks:
        hits = sum(rels[:k])
        out[f"P@{k}"] = hits / k
        out[f"R@{k}"] = hits / relevant
        out[f"HitRate@{k}"] = 1.0 if hits > 0 else 0.0
    for k in map_ks:
        total = 0.0
        for i in range(1, k + 1):
            if rels[i - 1]:
                total += sum(rels[:i]) / i
        hits = sum(rels[:k])
        divisor = {"min_r_k": min(relevant, k), "r": relevant, "hits": hits}[normalizer]
        out[f"AP@{k}"] = total / divisor if divisor > 0 else 0.0
    out["R"] = relevant
    return out


def evaluate(ranking, query_ids, gallery_ids, ks=(1, 5), map_ks=(10,), normalizer="min_r_k",
             exclude_self=False):
    """Means over non-lone queries, plus per-query results (None = lone)."""
    per_query = []
    for q, row in enumerate(ranking):
        per_query.append(evaluate_query(list(row), query_ids[q], list(gallery_ids), ks, map_ks,
                                        normalizer, self_index=q if exclude_self else None))
    scored = [r for r in per_query if r is not None]
    means = {}
    names = [f"{p}@{k}" for p in ("P", "R", "HitRate") for k in ks] + [f"AP@{k}" for k in map_ks]
    for name in names:
        total = 0.0
        for result in scored:
            total += result[name]
        means[name.replace("AP@", "mAP@")] = total / len(scored) if scored else math.nan
    means["num_queries"] = len(scored)
    means["lone_queries"] = len(per_query) - len(scored)
    return means, per_query
