#pragma once
// The block's pending bias add + LayerNorm as a template over a vector type, included
// (inside an anonymous namespace) by each attention_kernels_<isa>.cpp after the
// attention kernel, whose V it shares (see attention_kernels.hpp for the rules).
//
// Why: on the openblas route out_proj and fc2 accumulate their products straight into
// the residual stream (addmm_ with beta 1), which leaves their bias to add; a separate
// add_ is a full read and write of the stream (7 MB per L14 micro-batch) just before
// the LayerNorm reads it again. Here one pass over each row (4 KiB: it stays in L1)
// adds the bias, writes the row back and normalises it.
//
// Per row: x += bias; a first mean m; then, over d = x - m, the corrected two-pass
// moments: mean = m + mean(d), variance = mean(d^2) - mean(d)^2 (the rows are in L1, so
// the second pass is cheap; unlike E[x^2] - mean^2 nothing cancels, and mean(d) takes
// out the first mean's rounding, which a plain float sum of a row far from zero makes
// large: the scalar kernel's normalised output was 15x further from float64 than
// ATen's on rows of 1000 +- 0.01 without it); out = (x - mean) / sqrt(variance + eps)
// * gamma + beta, the biased variance as torch.nn.functional.layer_norm takes it.

// Requires, beyond the attention kernel's V: float sum(reg) (the sum of the lanes).

void bias_layer_norm(float* x, int64_t rows, int64_t cols, const float* bias, const float* gamma, const float* beta,
                     float eps, float* out) {
  using reg = typename V::reg;
  const int64_t full = cols / V::width * V::width;
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * cols;
    float* target = out + r * cols;
    // Two accumulators: the adds are a chain of 4-cycle latency per vector otherwise.
    reg sum0 = V::zero(), sum1 = V::zero();
    int64_t c = 0;
    for (; c + 2 * V::width <= full; c += 2 * V::width) {
      reg a = V::load(row + c), b = V::load(row + c + V::width);
      if (bias) {
        a = V::add(a, V::load(bias + c));
        b = V::add(b, V::load(bias + c + V::width));
        V::store(row + c, a);
        V::store(row + c + V::width, b);
      }
      sum0 = V::add(sum0, a);
      sum1 = V::add(sum1, b);
    }
    for (; c < full; c += V::width) {
      reg a = V::load(row + c);
      if (bias) V::store(row + c, a = V::add(a, V::load(bias + c)));
      sum0 = V::add(sum0, a);
    }
    float total = V::sum(V::add(sum0, sum1));
    for (; c < cols; ++c) {
      if (bias) row[c] += bias[c];
      total += row[c];
    }
    const float first_mean = total / static_cast<float>(cols);
    const reg vfirst = V::set1(first_mean);
    reg d0 = V::zero(), d1 = V::zero(), sq0 = V::zero(), sq1 = V::zero();
    for (c = 0; c + 2 * V::width <= full; c += 2 * V::width) {
      const reg a = V::sub(V::load(row + c), vfirst), b = V::sub(V::load(row + c + V::width), vfirst);
      d0 = V::add(d0, a);
      d1 = V::add(d1, b);
      sq0 = V::fma(a, a, sq0);
      sq1 = V::fma(b, b, sq1);
    }
    for (; c < full; c += V::width) {
      const reg a = V::sub(V::load(row + c), vfirst);
      d0 = V::add(d0, a);
      sq0 = V::fma(a, a, sq0);
    }
    float deviations = V::sum(V::add(d0, d1)), squares = V::sum(V::add(sq0, sq1));
    for (; c < cols; ++c) {
      const float d = row[c] - first_mean;
      deviations += d;
      squares += d * d;
    }
    const float mean_deviation = deviations / static_cast<float>(cols);
    const float mean = first_mean + mean_deviation;
    const float variance = std::max(squares / static_cast<float>(cols) - mean_deviation * mean_deviation, 0.0f);
    const float rstd = 1.0f / std::sqrt(variance + eps);
    const reg vmean = V::set1(mean), vrstd = V::set1(rstd);
    for (c = 0; c < full; c += V::width) {
      const reg normed = V::mul(V::sub(V::load(row + c), vmean), vrstd);
      V::store(target + c, V::fma(normed, V::load(gamma + c), V::load(beta + c)));
    }
    for (; c < cols; ++c) target[c] = (row[c] - mean) * rstd * gamma[c] + beta[c];
  }
}
