"""A deliberately plain re-implementation, in pure Python integers, of the
random stream and resampling that docs/statistics.md specifies (SplitMix64
seeding, xoshiro256**, jumps, Lemire's bounded integers, sign bits), written from
that specification with no code shared with include/pe/stats.hpp. Tests compare
the library against it; it is far too slow for real sizes, which is the point:
nothing clever can hide a mistake here."""

MASK = (1 << 64) - 1

JUMP = (0x180EC6D33CFD0ABA, 0xD5A61266F0C9392C, 0xA9582618E03FC9AA, 0x39ABDC4529B1661C)
LONG_JUMP = (0x76E15D3EFEFDCBBF, 0xC5004E441C522FB3, 0x77710069854EE241, 0x39109BB02ACBE635)


def splitmix64_outputs(seed, count):
    state = seed & MASK
    out = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


class Xoshiro:
    def __init__(self, state):
        self.s = list(state)

    @classmethod
    def seeded(cls, seed):
        return cls(splitmix64_outputs(seed, 4))

    def step(self):
        """The state update alone (used for the GF(2) check of the jumps)."""
        s = self.s
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)

    def next(self):
        result = (rotl((self.s[1] * 5) & MASK, 7) * 9) & MASK
        self.step()
        return result

    def _jump(self, polynomial):
        accumulated = [0, 0, 0, 0]
        for word in polynomial:
            for bit in range(64):
                if (word >> bit) & 1:
                    accumulated = [a ^ s for a, s in zip(accumulated, self.s)]
                self.next()
        self.s = accumulated

    def jump(self):
        self._jump(JUMP)

    def long_jump(self):
        self._jump(LONG_JUMP)

    def bounded(self, n):
        """[0, n) by Lemire's multiply-shift on the upper 32 bits, rejecting the
        low products below 2^32 mod n."""
        threshold = (1 << 32) % n
        while True:
            m = (self.next() >> 32) * n
            if (m & 0xFFFFFFFF) >= threshold:
                return m >> 32


def generator(seed, stream, substream):
    g = Xoshiro.seeded(seed)
    for _ in range(stream):
        g.long_jump()
    for _ in range(substream):
        g.jump()
    return g


def generators(seed, stream, count):
    """The generators of substreams 0..count-1 of a stream, one jump apart."""
    g = generator(seed, stream, 0)
    out = []
    for _ in range(count):
        out.append(Xoshiro(g.s))
        g.jump()
    return out


def bootstrap_means(rows, resamples, seed, stream):
    """rows: list of per-query lists (one value per metric). Replicate r draws
    len(rows) indices from generator (seed, stream, r) and averages each metric."""
    n = len(rows)
    out = []
    for g in generators(seed, stream, resamples):
        picks = [g.bounded(n) for _ in range(n)]
        out.append([sum(rows[i][j] for i in picks) / n for j in range(len(rows[0]))])
    return out


def sign_flip_means(rows, permutations, seed, stream):
    """Permutation p negates row i where bit (i mod 64) of output (i // 64) of
    generator (seed, stream, p) is 1, then averages each metric."""
    n = len(rows)
    out = []
    for g in generators(seed, stream, permutations):
        signs = []
        while len(signs) < n:
            bits = g.next()
            signs += [-1 if (bits >> j) & 1 else 1 for j in range(64)]
        out.append([sum(signs[i] * rows[i][j] for i in range(n)) / n for j in range(len(rows[0]))])
    return out


def quantile(values, q):
    """Type-7 quantile (linear between order statistics, kept between them), written out."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    below = int(h)
    if below + 1 >= len(ordered):
        return ordered[-1]
    low, high = ordered[below], ordered[below + 1]
    return min(max(low + (h - below) * (high - low), low), high)


def percentile_interval(values, level=0.95):
    return quantile(values, (1 - level) / 2), quantile(values, (1 + level) / 2)


def p_value(permuted, observed, differences):
    """(1 + #{|T_p| >= |T_obs| - 1e-9 * mean |d|}) / (1 + P)."""
    threshold = abs(observed) - 1e-9 * sum(abs(d) for d in differences) / len(differences)
    return (1 + sum(1 for t in permuted if abs(t) >= threshold)) / (1 + len(permuted))
