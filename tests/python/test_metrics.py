"""perception_retrieval.metrics against hand-computed values, the naive
reference (naive_metrics.py) and the golden cases the C++ tests also read."""

import math
import os
import threading

import numpy as np
import pytest

import naive_metrics
from perception_retrieval import metrics

DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "data")


def close(a, b, tol=1e-12):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


# --- hand-computed ---------------------------------------------------------

def test_toy_catalogue_by_hand():
    # examples/cpp/metrics_example.cpp derives these by hand.
    result = metrics.evaluate([[0, 2, 3, 1, 4], [3, 4, 5, 0, 1], [3, 0, 4, 1, 5]], [10, 20, 30],
                              [10, 10, 20, 30, 30, 30], per_query=True)
    assert result["P@1"] == pytest.approx(2 / 3)
    assert result["P@5"] == pytest.approx((0.4 + 0.6) / 3)
    assert result["R@1"] == pytest.approx((0.5 + 1 / 3) / 3)
    assert result["R@5"] == pytest.approx(2 / 3)
    assert result["mAP@10"] == pytest.approx((0.75 + (1 + 2 / 3 + 3 / 5) / 3) / 3)
    assert result["num_queries"] == 3 and result["lone_queries"] == 0
    assert result["ap_normalizer"] == "min_r_k"
    np.testing.assert_allclose(result["per_query"]["AP@10"], [0.75, 0.0, (1 + 2 / 3 + 3 / 5) / 3])
    np.testing.assert_array_equal(result["per_query"]["num_relevant"], [2, 1, 3])


@pytest.mark.parametrize("normalizer,expected", [("min_r_k", 0.25), ("r", 0.2), ("hits", 0.5)])
def test_each_normalizer_when_r_exceeds_k(normalizer, expected):
    # R = 5, relevant at ranks 2 and 4 of 4: AP sum = 1/2 + 2/4 = 1.
    result = metrics.evaluate([[0, 1, 2, 3]], [7], [0, 7, 0, 7, 7, 7, 7], ks=[4], map_k=4,
                              ap_normalizer=normalizer)
    assert result["mAP@4"] == pytest.approx(expected)
    assert result["R@4"] == pytest.approx(2 / 5)
    assert result["ap_normalizer"] == normalizer


def test_several_map_cutoffs_and_hit_rate():
    # relevant at ranks 3 and 6 (R = 2): AP@5 = (1/3) / 2, AP@10 = (1/3 + 2/6) / 2.
    result = metrics.evaluate([list(range(10))], [1], [0, 0, 1, 0, 0, 1, 0, 0, 0, 0], ks=(1, 5),
                              map_k=(5, 10))
    assert result["mAP@5"] == pytest.approx(1 / 6)
    assert result["mAP@10"] == pytest.approx(1 / 3)
    assert result["HitRate@1"] == 0.0 and result["HitRate@5"] == 1.0


def test_self_exclusion_with_duplicate_tying_self():
    ids = [1, 1, 2]
    scores = np.array([[1.0, 1.0, 0.2], [1.0, 1.0, 0.3], [0.2, 0.3, 1.0]], dtype=np.float32)
    result = metrics.evaluate_scores(scores, ids, ids, ks=(1,), map_k=2, exclude_self=True, per_query=True)
    np.testing.assert_array_equal(result["per_query"]["P@1"][:2], [1.0, 1.0])
    assert math.isnan(result["per_query"]["P@1"][2])  # product 2 has no other image
    assert result["lone_queries"] == 1 and result["num_queries"] == 2


def test_string_instance_ids_are_matched_by_label():
    as_strings = metrics.evaluate([[0, 2, 3, 1, 4], [3, 4, 5, 0, 1]], ["mug", "lamp"],
                                  ["mug", "mug", "lamp", "sofa", "sofa", "sofa"])
    as_ints = metrics.evaluate([[0, 2, 3, 1, 4], [3, 4, 5, 0, 1]], [1, 2], [1, 1, 2, 3, 3, 3])
    for key in ("P@1", "P@5", "R@1", "R@5", "mAP@10"):
        assert as_strings[key] == as_ints[key]


def test_hornbach_identities_on_generated_data():
    # One gallery image per product, so R = 1 for every query.
    rng = np.random.default_rng(5)
    gallery_ids = rng.permutation(500)
    query_ids = rng.integers(0, 500, size=400)
    scores = rng.standard_normal((400, 500)).astype(np.float32)
    # Boost each query's own product, found by its position in the gallery
    # (gallery_ids is a permutation, so position != id).
    own = np.argsort(gallery_ids)[query_ids]
    assert (gallery_ids[own] == query_ids).all()
    scores[np.arange(400), own] += 2.5
    result = metrics.evaluate_scores(scores, query_ids, gallery_ids)
    # R = 1: R@k is the share of queries whose product ranks in the top k.
    rank_of_own = (scores > scores[np.arange(400), own][:, None]).sum(axis=1)  # no float ties in random normals
    assert result["R@1"] == pytest.approx(np.mean(rank_of_own < 1), abs=1e-15)
    assert result["R@5"] == pytest.approx(np.mean(rank_of_own < 5), abs=1e-15)
    assert 0.2 < result["R@1"] < result["R@5"] < 1  # the boost makes them findable, not trivial
    assert result["P@1"] == result["R@1"]
    assert result["P@5"] == pytest.approx(result["R@5"] / 5, abs=1e-15)


# --- against the naive reference -------------------------------------------

def random_case(rng, exclude_self):
    n = int(rng.integers(2, 60))
    gallery_ids = rng.integers(0, max(1, n // 3), size=n)
    if exclude_self:
        query_ids = gallery_ids.copy()
    else:
        query_ids = rng.integers(0, max(1, n // 3) + 2, size=int(rng.integers(1, 40)))
    return query_ids, gallery_ids


@pytest.mark.parametrize("normalizer", metrics.AP_NORMALIZERS)
@pytest.mark.parametrize("exclude_self", [False, True])
def test_random_rankings_match_naive(normalizer, exclude_self):
    rng = np.random.default_rng(hash((normalizer, exclude_self)) % 2**32)
    for _ in range(60):
        query_ids, gallery_ids = random_case(rng, exclude_self)
        n = len(gallery_ids)
        depth = int(rng.integers(1, n + 4))
        ranking = np.full((len(query_ids), depth), -1, dtype=np.int64)
        for row in ranking:
            length = min(depth, n) if rng.random() < 0.8 else int(rng.integers(0, min(depth, n) + 1))
            row[:length] = rng.permutation(n)[:length]
        ks = sorted(rng.choice(np.arange(1, 12), size=2, replace=False).tolist())
        map_ks = sorted(rng.choice(np.arange(1, 15), size=2, replace=False).tolist())
        got = metrics.evaluate(ranking, query_ids, gallery_ids, ks=ks, map_k=map_ks,
                               ap_normalizer=normalizer, exclude_self=exclude_self, per_query=True)
        want, want_per_query = naive_metrics.evaluate(ranking.tolist(), query_ids.tolist(), gallery_ids.tolist(),
                                                      ks, map_ks, normalizer, exclude_self)
        assert got["num_queries"] == want["num_queries"]
        assert got["lone_queries"] == want["lone_queries"]
        for key, value in want.items():
            if key not in ("num_queries", "lone_queries"):
                assert close(got[key], value), (key, got[key], value)
        for q, expected in enumerate(want_per_query):
            if expected is None:
                assert math.isnan(got["per_query"][f"P@{ks[0]}"][q])
                continue
            assert got["per_query"]["num_relevant"][q] == expected["R"]
            for k in map_ks:
                assert close(got["per_query"][f"AP@{k}"][q], expected[f"AP@{k}"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_scores_match_naive(dtype):
    rng = np.random.default_rng(17)
    for trial in range(40):
        exclude_self = trial % 2 == 1
        query_ids, gallery_ids = random_case(rng, exclude_self)
        # Coarse scores create many ties, which must break by gallery index.
        scores = (rng.integers(0, 6, size=(len(query_ids), len(gallery_ids))) / 5).astype(dtype)
        got = metrics.evaluate_scores(scores, query_ids, gallery_ids, ks=(1, 3), map_k=(4, 10),
                                      ap_normalizer="min_r_k", exclude_self=exclude_self)
        ranking = [naive_metrics.rank_scores(row.tolist(), q if exclude_self else None)
                   for q, row in enumerate(scores)]
        want, _ = naive_metrics.evaluate(ranking, query_ids.tolist(), gallery_ids.tolist(), (1, 3), (4, 10),
                                         "min_r_k", exclude_self)
        for key, value in want.items():
            assert close(got[key], value), (trial, key, got[key], value)


def test_self_indices_match_naive_on_partly_overlapping_query_sets():
    """Manifests with role=both rows: some queries are gallery items, some not."""
    rng = np.random.default_rng(23)
    for trial in range(60):
        n = int(rng.integers(2, 40))
        gallery_ids = rng.integers(0, max(1, n // 3), size=n)
        num_queries = int(rng.integers(1, 30))
        self_indices = np.where(rng.random(num_queries) < 0.5, rng.integers(0, n, size=num_queries), -1)
        query_ids = np.where(self_indices >= 0, gallery_ids[np.maximum(self_indices, 0)],
                             rng.integers(0, max(1, n // 3) + 1, size=num_queries))
        scores = (rng.integers(0, 6, size=(num_queries, n)) / 5).astype(np.float32)
        rows = [naive_metrics.rank_scores(row.tolist()) for row in scores]  # self still inside
        got = metrics.evaluate(np.array(rows), query_ids, gallery_ids, ks=(1, 3), map_k=10,
                               self_indices=self_indices, per_query=True)
        got_scores = metrics.evaluate_scores(scores, query_ids, gallery_ids, ks=(1, 3), map_k=10,
                                             self_indices=self_indices)
        per_query = [naive_metrics.evaluate_query(rows[q], int(query_ids[q]), gallery_ids.tolist(), (1, 3), (10,),
                                                  "min_r_k", self_index=int(s) if s >= 0 else None)
                     for q, s in enumerate(self_indices)]
        scored = [r for r in per_query if r is not None]
        assert got["lone_queries"] == got_scores["lone_queries"] == len(per_query) - len(scored)
        for name, key in (("P@1", "P@1"), ("R@3", "R@3"), ("mAP@10", "AP@10")):
            want = sum(r[key] for r in scored) / len(scored) if scored else math.nan
            assert close(got[name], want), (trial, name)
            assert close(got_scores[name], want), (trial, name)


def test_self_indices_are_validated():
    ids = np.array([1, 1, 2])
    ranking = np.array([[0, 1, 2]])
    with pytest.raises(ValueError, match=r"self_indices\[0\] = 2 names a gallery item of instance"):
        metrics.evaluate(ranking, ids[:1], ids, self_indices=[2])
    with pytest.raises(ValueError, match="out of range"):
        metrics.evaluate(ranking, ids[:1], ids, self_indices=[3])
    with pytest.raises(ValueError, match="self_indices has 2 entries"):
        metrics.evaluate(ranking, ids[:1], ids, self_indices=[0, 1])
    with pytest.raises(TypeError, match="self_indices must hold integer"):
        metrics.evaluate(ranking, ids[:1], ids, self_indices=[0.5])


def read_golden_cases():
    cases, case = [], None
    with open(os.path.join(DATA_DIR, "metrics_cases.txt")) as lines:
        for line in lines:
            tag, *rest = line.split()
            if tag.startswith("#"):
                continue
            if tag == "case":
                case = dict(name=rest[0], q=int(rest[1]), depth=int(rest[2]), exclude_self=rest[4] == "1",
                            normalizer=rest[5], expect={})
                cases.append(case)
            elif tag in ("ks", "map_ks", "query_ids", "gallery_ids", "ranking"):
                case[tag] = [int(v) for v in rest]
            elif tag == "expect":
                case["expect"][rest[0]] = float(rest[1])
            elif tag in ("num_queries", "lone_queries"):
                case[tag] = int(rest[0])
    return cases


def test_golden_cases_shared_with_cpp():
    """The C++ test MetricsGolden reads the same file: both languages are held to
    the same numbers, and the file is held to the naive reference."""
    cases = read_golden_cases()
    assert len(cases) >= 50
    for case in cases:
        ranking = np.array(case["ranking"], dtype=np.int64).reshape(case["q"], case["depth"])
        got = metrics.evaluate(ranking, case["query_ids"], case["gallery_ids"], ks=case["ks"],
                               map_k=case["map_ks"], ap_normalizer=case["normalizer"],
                               exclude_self=case["exclude_self"])
        naive, _ = naive_metrics.evaluate(ranking.tolist(), case["query_ids"], case["gallery_ids"], case["ks"],
                                          case["map_ks"], case["normalizer"], case["exclude_self"])
        assert got["num_queries"] == case["num_queries"] == naive["num_queries"]
        assert got["lone_queries"] == case["lone_queries"]
        assert set(case["expect"]) == {k for k in got if "@" in k}
        for key, value in case["expect"].items():
            assert close(got[key], value), (case["name"], key)
            assert close(naive[key], value), (case["name"], key, "golden file is stale")


# --- boundary behaviour ----------------------------------------------------

def test_int32_rankings_and_ids_are_accepted():
    ranking = np.array([[0, 1], [0, 1]], dtype=np.int32)
    result = metrics.evaluate(ranking, np.array([1, 2], dtype=np.int32), np.array([1, 2], dtype=np.uint16),
                              ks=(1,), map_k=2)
    assert result["P@1"] == 0.5  # query 1 (id 2) ranks gallery 0 (id 1) first


def test_threads_and_gil_release_give_same_results_concurrently():
    rng = np.random.default_rng(1)
    ranking = np.argsort(rng.random((6000, 300)), axis=1)[:, :20]
    ids = rng.integers(0, 50, size=300)
    query_ids = rng.integers(0, 50, size=6000)
    expected = metrics.evaluate(ranking, query_ids, ids, threads=1)
    results = []
    workers = [threading.Thread(target=lambda: results.append(metrics.evaluate(ranking, query_ids, ids, threads=2)))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert results == [expected] * 4


@pytest.mark.parametrize("call,error,message", [
    (lambda: metrics.evaluate([[0, 1]], [1, 2], [1, 1]), ValueError, "query_ids has 2 entries but ranking has rows: 1"),
    (lambda: metrics.evaluate([[0, -2]], [1], [1, 1]), ValueError, "ranking[0, 1] = -2 is out of range"),
    (lambda: metrics.evaluate([[0, 9]], [1], [1, 1]), ValueError, "ranking[0, 1] = 9 is out of range"),
    (lambda: metrics.evaluate([[0]], [1], [1, 1], ks=(0,)), ValueError, "ks contains 0"),
    (lambda: metrics.evaluate([[0]], [1], [1, 1], map_k=-1), ValueError, "map_ks contains -1"),
    (lambda: metrics.evaluate([[0]], [1], [1, 1], ks=(1.5,)), TypeError, "ks must hold integers"),
    (lambda: metrics.evaluate(np.zeros((0, 3), dtype=np.int64), [], [1, 1]), ValueError, "query set is empty"),
    (lambda: metrics.evaluate([[0.0]], [1], [1]), TypeError, "ranking must hold integer gallery indices"),
    (lambda: metrics.evaluate([0, 1], [1], [1, 1]), ValueError, "ranking must be 2-D"),
    (lambda: metrics.evaluate([[0]], [[1]], [1]), ValueError, "query_ids must be 1-D"),
    (lambda: metrics.evaluate([[0]], [1], [1], ap_normalizer="mean"), ValueError, "ap_normalizer must be one of"),
    (lambda: metrics.evaluate([[0]], [1], [1], threads=-1), ValueError, "threads must be"),
    (lambda: metrics.evaluate([[0]], [1], [1, 2], exclude_self=True), ValueError, "exclude_self needs"),
    (lambda: metrics.evaluate_scores(np.array([[0.1, np.nan]], dtype=np.float32), [1], [1, 1]), ValueError,
     "scores[0, 1] is NaN"),
    (lambda: metrics.evaluate_scores(np.ones((2, 3), dtype=np.float32), [1, 2], [1, 1]), ValueError,
     "gallery_ids has 2 entries but scores has columns: 3"),
    (lambda: metrics.evaluate_scores(np.ones((2, 4), dtype=np.float32)[:, ::2], [1, 2], [1, 1]), ValueError,
     "must be C-contiguous; pass np.ascontiguousarray(scores)"),
    (lambda: metrics.evaluate_scores(np.ones((1, 2), dtype=np.int64), [1], [1, 1]), TypeError,
     "scores must be float32 or float64"),
])
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error) as raised:
        call()
    assert message in str(raised.value)


# --- report ----------------------------------------------------------------

def test_report_matches_the_leaderboard_layout():
    report = metrics.Report()
    toy = metrics.evaluate([[0, 2, 3, 1, 4], [3, 4, 5, 0, 1], [3, 0, 4, 1, 5]], [10, 20, 30],
                           [10, 10, 20, 30, 30, 30])
    report.add("toy", toy)
    report.add("half", {"P@1": 0.5, "P@5": 0.1, "R@1": 0.25, "R@5": 1.0, "mAP@10": 0.123456,
                        "num_queries": 10, "lone_queries": 2, "ap_normalizer": "min_r_k"})
    lines = report.to_markdown().splitlines()
    assert lines[0] == "| Dataset | P@1 | P@5 | R@1 | R@5 | mAP@10 |"
    assert lines[2] == "| toy | 66.67 | 33.33 | 27.78 | 66.67 | 50.19 |"
    assert lines[4] == "| Average | 58.33 | 21.67 | 26.39 | 83.33 | 31.27 |"
    assert "min(R, k)" in report.to_markdown()
    assert report.to_csv().splitlines()[-1] == "Average,58.33,21.67,26.39,83.33,31.27,,,min_r_k"
    import json
    parsed = json.loads(report.to_json())
    assert parsed["ap_normalizer"] == "min_r_k"
    assert parsed["datasets"][1] == {"dataset": "half", "P@1": 50.0, "P@5": 10.0, "R@1": 25.0, "R@5": 100.0,
                                     "mAP@10": 12.35, "queries": 10, "lone_queries": 2}
    assert report.average()["P@1"] == pytest.approx((2 / 3 + 0.5) / 2)


def test_report_rejects_mixed_normalizers_and_missing_columns():
    report = metrics.Report()
    report.add("a", metrics.evaluate([[0, 1]], [1], [1, 1]))
    with pytest.raises(ValueError, match="AP normaliser is r"):
        report.add("b", metrics.evaluate([[0, 1]], [1], [1, 1], ap_normalizer="r"))
    with pytest.raises(ValueError, match="lacks P@5"):
        report.add("c", metrics.evaluate([[0, 1]], [1], [1, 1], ks=(1,)))
    assert report.datasets == ["a"]
