#!/usr/bin/env python3
"""Embed a folder of product photos (one sub-folder per product), search it
all-vs-all and print the leaderboard metrics: the library's stages by hand,
each one plain arrays in and out.

    python evaluate_folder.py MODEL.pt FOLDER
"""

import sys

import numpy as np

import perception_retrieval as pr
from perception_retrieval import datasets, metrics


def main(model_path: str, folder: str) -> None:
    dataset = datasets.load_folders(folder)                     # checks the files first
    print(dataset.summary())

    encoder = pr.Encoder(model_path, batch_size=8)
    embeddings = encoder.encode([image.path for image in dataset.images])   # N x D float32, L2-normalised

    gallery = pr.Retriever(encoder.embedding_dim)
    gallery.add(embeddings, np.arange(len(embeddings), dtype=np.int64))
    scores, ranking = gallery.search(embeddings, k=10, exclude_self=True)   # every image queries the others

    labels = dataset.instance_ids
    result = metrics.evaluate(ranking, labels, labels, ks=(1, 5), map_k=10, exclude_self=True)
    report = metrics.Report()
    report.add(dataset.name, result)
    print(report.to_markdown())

    best = ranking[0, 0]
    print(f"the closest match of {dataset.images[0].path} is {dataset.images[best].path} (score {scores[0, 0]:.3f})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
