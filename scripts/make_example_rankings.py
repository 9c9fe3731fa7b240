#!/usr/bin/env python3
"""Writes python/perception_retrieval/data/example_rankings.json, the bundled
example that `perception-retrieval demo` scores until the demo encodes real
images. Two small simulated product sets, ranked by cosine similarity of
simulated embeddings (an instance centre plus per-view noise):
  shop-all-vs-all   every image queries all others (self excluded), like SOP
  shelf-to-catalog  shelf photos query a catalogue, like VPRC; some lone queries
Deterministic (fixed seed); rerun only to change the example."""

import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "python", "perception_retrieval", "data",
                   "example_rankings.json")


def views(rng, centres, instance_ids, noise):
    vectors = centres[instance_ids] + noise * rng.standard_normal((len(instance_ids), centres.shape[1]))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def top_k(queries, gallery, k, exclude_self):
    scores = queries @ gallery.T
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    # score descending, ties by gallery index ascending (a stable sort of -score)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order


def main():
    rng = np.random.default_rng(2026)
    dim = 32
    datasets = []

    centres = rng.standard_normal((40, dim))
    ids = np.repeat(np.arange(40), rng.integers(2, 7, size=40))
    embeddings = views(rng, centres, ids, noise=1.7)
    # The raw ranking still holds each query itself (score 1.0); the evaluation
    # removes it by index (exclude_self), so 11 columns leave 10 real results.
    ranking = top_k(embeddings, embeddings, 11, exclude_self=False)
    datasets.append(dict(name="shop-all-vs-all", exclude_self=True, query_ids=ids.tolist(),
                         gallery_ids=ids.tolist(), ranking=ranking.tolist()))

    centres = rng.standard_normal((60, dim))
    gallery_ids = np.repeat(np.arange(60), 2)
    query_ids = rng.integers(0, 66, size=50)  # ids 60..65 have no catalogue image: lone queries
    all_centres = np.vstack([centres, rng.standard_normal((6, dim))])
    gallery = views(rng, all_centres, gallery_ids, noise=0.6)
    queries = views(rng, all_centres, query_ids, noise=2.2)
    ranking = top_k(queries, gallery, 10, exclude_self=False)
    datasets.append(dict(name="shelf-to-catalog", exclude_self=False, query_ids=query_ids.tolist(),
                         gallery_ids=gallery_ids.tolist(), ranking=ranking.tolist()))

    with open(OUT, "w") as out:
        json.dump({"description": "Simulated rankings bundled with perception_retrieval "
                                  "(scripts/make_example_rankings.py)", "datasets": datasets}, out)
        out.write("\n")


if __name__ == "__main__":
    main()
