"""perception_retrieval.stats: the random stream against a pure-Python
re-implementation of its specification (reference_stats.py) and the jump
polynomials against powers of the transition matrix over GF(2); bootstrap and
sign-flip replicates against the reference; coverage of the intervals on
synthetic data with known means; p-values for identical, clearly different and
exchangeable models."""

import numpy as np
import pytest

import reference_stats as ref
from perception_retrieval import stats

U64 = (1 << 64) - 1


# --------------------------------------------------------------------------- the generator

def test_reference_matches_published_vectors():
    assert ref.splitmix64_outputs(0, 3) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    g = ref.Xoshiro([1, 2, 3, 4])
    assert [g.next() for _ in range(4)] == [11520, 0, 1509978240, 1215971899390074240]


@pytest.mark.parametrize("seed, stream, substream", [(0, 0, 0), (1, 0, 3), (42, 2, 5), (U64, 1, 1), (12345, 3, 0)])
def test_stream_matches_the_reference(seed, stream, substream):
    got = stats.random_stream(seed, stream, substream, 70)
    assert got.dtype == np.uint64
    g = ref.generator(seed, stream, substream)
    assert got.tolist() == [g.next() for _ in range(70)]


@pytest.mark.parametrize("bound", [1, 2, 7, 1000, 60502, 2 ** 31 + 1, 2 ** 32 - 1])
def test_bounded_integers_match_the_reference(bound):
    got = stats.random_integers(9, 1, 2, bound, 300)
    g = ref.generator(9, 1, 2)
    assert got.tolist() == [g.bounded(bound) for _ in range(300)]
    assert got.max() < bound


def _bits(state):
    return np.array([(state[w] >> b) & 1 for w in range(4) for b in range(64)], dtype=np.float64)


def _state(bits):
    bits = bits.astype(np.int64)
    return [sum(int(bits[w * 64 + b]) << b for b in range(64)) for w in range(4)]


def test_jumps_are_the_transition_to_the_power_2_128_and_2_192():
    """The state update is linear over GF(2): its 256 x 256 matrix T, squared
    128 (192) times, must do what the jump (long jump) polynomial does."""
    transition = np.zeros((256, 256))
    for k in range(256):
        state = [0, 0, 0, 0]
        state[k // 64] = 1 << (k % 64)
        g = ref.Xoshiro(state)
        g.step()
        transition[:, k] = _bits(g.s)
    power = transition
    for _ in range(128):
        power = (power @ power) % 2  # exact: entries are small integers in float64
    jump = power
    for _ in range(64):
        power = (power @ power) % 2
    long_jump = power
    seed = 2024
    base = ref.Xoshiro.seeded(seed).s

    def first_output(state):
        return ref.Xoshiro(state).next()

    jumped = _state((jump @ _bits(base)) % 2)
    long_jumped = _state((long_jump @ _bits(base)) % 2)
    assert stats.random_stream(seed, 0, 1, 1)[0] == first_output(jumped)
    assert stats.random_stream(seed, 1, 0, 1)[0] == first_output(long_jumped)
    both = _state((jump @ ((long_jump @ _bits(base)) % 2)) % 2)
    assert stats.random_stream(seed, 1, 1, 1)[0] == first_output(both)
    g = ref.Xoshiro(base)
    g.jump()
    assert g.s == jumped  # the reference's own polynomial, too


# --------------------------------------------------------------------------- replicates

def test_bootstrap_matches_the_reference_exactly():
    values = np.random.default_rng(0).random((9, 5))
    got = stats.bootstrap_means(values, 30, seed=17, stream=3)
    want = ref.bootstrap_means(values.tolist(), 30, 17, 3)
    assert got.shape == (30, 5) and got.dtype == np.float64
    assert got.tolist() == want
    three = stats.bootstrap_means(values[:, :3], 30, seed=17, stream=3)  # the general-width path
    assert three.tolist() == ref.bootstrap_means(values[:, :3].tolist(), 30, 17, 3)


def test_bootstrap_is_reproducible_and_independent_of_threads_and_dtype():
    values = (np.arange(5 * 257).reshape(257, 5) * 37 % 16) / 16.0  # exact in float32 too
    one = stats.bootstrap_means(values, 40, seed=5, threads=1)
    assert np.array_equal(stats.bootstrap_means(values, 40, seed=5, threads=3), one)
    assert np.array_equal(stats.bootstrap_means(values.astype(np.float32), 40, seed=5, threads=2), one)
    assert np.array_equal(stats.bootstrap_means(np.asfortranarray(values), 40, seed=5), one)
    assert not np.array_equal(stats.bootstrap_means(values, 40, seed=6), one)
    # 1-D input is one metric; integers are converted.
    assert stats.bootstrap_means(np.array([1, 0, 1, 1]), 7).shape == (7, 1)
    # No scored query: NaN, not an error.
    assert np.isnan(stats.bootstrap_means(np.zeros((0, 5)), 4)).all()


def test_sign_flips_match_the_reference():
    differences = np.random.default_rng(1).random((150, 5)) - 0.5
    got = stats.sign_flip_means(differences, 25, seed=3, stream=4)
    want = np.array(ref.sign_flip_means(differences.tolist(), 25, 3, 4))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)  # even/odd partial sums: rounding order differs
    three = stats.sign_flip_means(differences[:, :3], 25, seed=3, stream=4)
    assert three.tolist() == ref.sign_flip_means(differences[:, :3].tolist(), 25, 3, 4)


def test_percentile_intervals_follow_numpys_linear_quantile():
    replicates = np.random.default_rng(2).random((1000, 4))
    got = stats.percentile_interval(replicates)
    np.testing.assert_allclose(got, np.quantile(replicates, [0.025, 0.975], axis=0).T, rtol=0, atol=1e-12)
    for column in range(4):
        low, high = ref.percentile_interval(replicates[:, column].tolist())
        assert got[column].tolist() == pytest.approx([low, high], abs=1e-15)
    assert np.isnan(stats.percentile_interval(np.zeros((0, 3)))).all()


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"values\[1, 2\].*lone queries"):
        stats.bootstrap_means(np.array([[0.0, 0, 0], [0, 0, np.nan]]), 3)
    with pytest.raises(TypeError, match="must hold numbers"):
        stats.bootstrap_means(np.array(["a", "b"]), 3)
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        stats.bootstrap_means(np.zeros((2, 2, 2)), 3)
    with pytest.raises(ValueError, match="resamples must be an integer >= 0"):
        stats.bootstrap_means(np.zeros((2, 2)), -1)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\^64\)"):
        stats.bootstrap_means(np.zeros((2, 2)), 3, seed=-1)
    with pytest.raises(ValueError, match="threads"):
        stats.sign_flip_means(np.zeros((2, 2)), 3, threads=-2)
    with pytest.raises(ValueError, match="bound"):
        stats.random_integers(0, 0, 0, 0, 3)
    with pytest.raises(TypeError, match="must have dtype float64 or float32, got int64"):  # the binding is strict
        from perception_retrieval import _core
        _core.stats.bootstrap_means(np.zeros((2, 2), dtype=np.int64), 3, 0, 0, 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.stats.bootstrap_means(np.zeros((4, 4))[:, ::2], 3, 0, 0, 0)


# --------------------------------------------------------------------------- coverage

def synthetic_queries(rng, n):
    """n queries of three metric-like columns with known means: a 0/1 hit
    (P@1-like, mean 0.3), fifths (P@5-like, Binomial(5, 0.4) / 5, mean 0.4) and a
    skewed fraction (AP-like, Beta(0.5, 2), mean 0.2)."""
    return np.column_stack([rng.random(n) < 0.3, rng.binomial(5, 0.4, n) / 5, rng.beta(0.5, 2.0, n)])


TRUE_MEANS = np.array([0.3, 0.4, 0.2])


def test_intervals_cover_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    trials = 400
    covered = np.zeros(3)
    for trial in range(trials):
        values = synthetic_queries(rng, 200)
        interval = stats.percentile_interval(stats.bootstrap_means(values, 1000, seed=trial))
        covered += (interval[:, 0] <= TRUE_MEANS) & (TRUE_MEANS <= interval[:, 1])
    coverage = covered / trials
    # Binomial sd over 400 trials is 1.1 points; the percentile bootstrap of a
    # mean runs a little under 95% at n = 200.
    assert np.all(np.abs(coverage - 0.95) < 0.035), coverage


def test_average_row_intervals_cover_the_mean_of_the_true_means():
    """Two datasets of unequal size, each resampled independently: the interval
    of the mean over datasets covers the mean of their true means."""
    rng = np.random.default_rng(8)
    trials, covered = 300, np.zeros(3)
    second_means = np.array([0.5, 0.4, 0.2])  # the second dataset: P@1-like column at 0.5
    for trial in range(trials):
        first = synthetic_queries(rng, 120)
        second = synthetic_queries(rng, 300)
        second[:, 0] = rng.random(300) < 0.5
        found = stats.dataset_intervals([first, second], 1000, seed=trial)
        truth = (TRUE_MEANS + second_means) / 2
        covered += (found["average"][:, 0] <= truth) & (truth <= found["average"][:, 1])
    coverage = covered / trials
    assert np.all(np.abs(coverage - 0.95) < 0.04), coverage


def test_paired_difference_intervals_cover_the_true_difference():
    """B = A's queries with a per-query shift of mean +0.05 and noise: the
    paired interval of the mean difference covers 0.05 about 95% of the time."""
    rng = np.random.default_rng(9)
    trials, covered = 300, 0
    for trial in range(trials):
        a = rng.random((150, 1))
        b = a + 0.05 + rng.normal(0, 0.2, (150, 1))
        found = stats.paired_comparison([a], [b], resamples=1000, permutations=0, seed=trial)
        low, high = found["datasets"][0]["ci95"][0]
        covered += low <= 0.05 <= high
    assert abs(covered / trials - 0.95) < 0.04, covered / trials


# --------------------------------------------------------------------------- comparisons

def test_a_model_against_itself_differs_by_zero_with_p_one():
    a = synthetic_queries(np.random.default_rng(10), 80)
    found = stats.paired_comparison([a, a[:30]], [a.copy(), a[:30].copy()], resamples=500, permutations=999)
    for result in found["datasets"] + [found["average"]]:
        assert np.array_equal(result["diff"], np.zeros(3))
        assert np.array_equal(result["ci95"], np.zeros((3, 2)))
        assert np.array_equal(result["p"], np.ones(3))
        assert np.array_equal(result["a"], result["b"])


def test_same_values_on_other_queries_give_difference_zero():
    """B has A's values shuffled over the queries: the means are equal (summed
    exactly), so diff is exactly 0 and p = 1, whatever the rounding of b - a."""
    a = np.array([[1 / 3], [0.1], [0.7], [0.2], [1 / 7]])
    b = a[[1, 2, 0, 4, 3]]
    found = stats.paired_comparison([a], [b], resamples=100, permutations=999)["datasets"][0]
    assert found["diff"][0] == 0.0 and found["p"][0] == 1.0


def test_a_clearly_better_model_gets_a_small_p():
    rng = np.random.default_rng(11)
    a = synthetic_queries(rng, 300)
    b = np.clip(a + 0.15 + rng.normal(0, 0.05, a.shape), 0, 1)  # better on nearly every query
    found = stats.paired_comparison([a], [b], resamples=1000, permutations=9999)["datasets"][0]
    assert np.all(found["p"] == 1 / 10000)  # no sign assignment reaches the observed mean
    assert np.all(found["ci95"][:, 0] > 0.05)  # (P@1 = 1 cannot improve: clipped)
    worse = stats.paired_comparison([b], [a], resamples=1000, permutations=9999)["datasets"][0]
    assert np.all(worse["p"] == 1 / 10000) and np.all(worse["ci95"][:, 1] < -0.05)  # two-sided


def test_p_values_are_calibrated_for_exchangeable_models():
    """Differences symmetric about 0 (the null): p <= 0.05 in about 5% of trials."""
    rng = np.random.default_rng(12)
    trials, small = 300, 0
    for trial in range(trials):
        a = rng.random((100, 1))
        b = a + rng.normal(0, 0.1, (100, 1))
        small += stats.paired_comparison([a], [b], resamples=0, permutations=999, seed=trial)["datasets"][0]["p"][0] \
            <= 0.05
    assert 0.015 <= small / trials <= 0.09, small / trials


def test_p_value_against_the_reference_formula():
    rng = np.random.default_rng(13)
    a, b = rng.random((40, 5)), rng.random((40, 5))
    found = stats.paired_comparison([a], [b], resamples=0, permutations=499, seed=21)["datasets"][0]
    differences = (b - a)
    permuted = ref.sign_flip_means(differences.tolist(), 499, 21, 1)  # dataset 0's sign flips: stream 1
    for j in range(5):
        observed = found["b"][j] - found["a"][j]
        assert found["p"][j] == ref.p_value([row[j] for row in permuted], observed, differences[:, j].tolist())
    assert np.isnan(found["ci95"]).all()  # resamples = 0: no interval
    assert np.isnan(stats.paired_comparison([a], [b], resamples=10, permutations=0)["datasets"][0]["p"]).all()
