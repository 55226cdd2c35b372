// labpipe's CUDA kernels: the GPU halves of the fused ops in src/model/ops and the optimizer update in
// src/train/optim.rs. build.rs compiles this file to PTX (only with the `cuda` feature); src/cuda/mod.rs loads
// and launches it. Every kernel mirrors its CPU twin line by line, and the file is compiled with -fmad=false so
// `a * b + c` rounds as the CPU code does (no fused multiply-add), making CPU and GPU updates agree bit for bit
// wherever the inputs agree.
//
// Layouts: activations are contiguous [N, C, L] (L = H*W); per-channel vectors are [C].
// Determinism: no atomics; every reduction has a fixed order for a given launch shape.

#include <stdint.h>

#define BLOCK 256

// Sum of `v` over the block (result valid in thread 0). `shared` holds one double per warp.
__device__ double block_sum(double v, double *shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = (warp == 0 && lane < warps) ? shared[lane] : 0.0;
  if (warp == 0) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  __syncthreads();  // `shared` may be reused right after
  return v;
}

// Element `i` (0 <= i < N*L) of channel `ch` in [N, C, L].
__device__ __forceinline__ int64_t at(int64_t i, int ch, int c, int64_t l) {
  const int64_t b = i / l;
  return (b * c + ch) * l + (i - b * l);
}

// ---------------------------------------------------------------------------------------------------------
// Training-mode batch normalization (src/model/ops/batch_norm.rs). One block per channel.

// stats = [mean; biased var; 1/sqrt(var + eps)], each [C]. Two passes: the mean, then centred squares.
extern "C" __global__ void lp_bn_stats(const float *x, int n, int c, int64_t l, double eps, float *stats) {
  __shared__ double shared[32];
  __shared__ float mean_shared;
  const int ch = blockIdx.x;
  const int64_t count = (int64_t)n * l;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += (double)x[at(i, ch, c, l)];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) mean_shared = (float)(s / (double)count);
  __syncthreads();
  const float m = mean_shared;
  double q = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const float d = x[at(i, ch, c, l)] - m;
    q += (double)(d * d);
  }
  q = block_sum(q, shared);
  if (threadIdx.x == 0) {
    const double var = q / (double)count;
    stats[ch] = m;
    stats[c + ch] = (float)var;
    stats[2 * c + ch] = (float)(1.0 / sqrt(var + eps));
  }
}

// y = x*scale + shift per channel, then the epilogue: 0 none, 1 ReLU, 2 residual add + ReLU.
// scale = w/sigma and shift = b - mean*scale are formed in f32 as the CPU's Stats::of does.
extern "C" __global__ void lp_bn_apply(const float *x, const float *w, const float *b, const float *stats,
                                       const float *residual, float *y, int c, int64_t l, int64_t total,
                                       int epilogue) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int ch = (int)((i / l) % c);
    const float scale = w[ch] * stats[2 * c + ch];
    const float shift = b[ch] - stats[ch] * scale;
    float v = x[i] * scale + shift;
    if (epilogue == 2) v = v + residual[i];
    if (epilogue != 0) v = fmaxf(v, 0.0f);
    y[i] = v;
  }
}

// Gradient through ReLU: passed where the op's output was positive.
__device__ __forceinline__ float bn_dy(float g, float y, int epilogue) {
  return (epilogue != 0 && y <= 0.0f) ? 0.0f : g;
}

// sums = [sum dy*xhat (= dweight); sum dy (= dbias)], each [C].
extern "C" __global__ void lp_bn_bwd_reduce(const float *x, const float *g, const float *y, const float *stats,
                                            int n, int c, int64_t l, int epilogue, float *sums) {
  __shared__ double shared[32];
  const int ch = blockIdx.x;
  const int64_t count = (int64_t)n * l;
  const float m = stats[ch];
  double sd = 0.0, sdx = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t k = at(i, ch, c, l);
    const float d = bn_dy(g[k], y[k], epilogue);
    sd += (double)d;
    sdx += (double)(d * (x[k] - m));
  }
  sd = block_sum(sd, shared);
  sdx = block_sum(sdx, shared);
  if (threadIdx.x == 0) {
    sums[ch] = (float)(sdx * (double)stats[2 * c + ch]);
    sums[c + ch] = (float)sd;
  }
}

// dx = w*sigma^-1*(dy - mean(dy) - xhat*mean(dy*xhat)); with a residual (epilogue 2), dres = dy.
extern "C" __global__ void lp_bn_bwd_apply(const float *x, const float *g, const float *y, const float *stats,
                                           const float *w, const float *sums, float *dx, float *dres, int n,
                                           int c, int64_t l, int64_t total, int epilogue) {
  const double count = (double)n * (double)l;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int ch = (int)((i / l) % c);
    const float m = stats[ch], s = stats[2 * c + ch];
    const float k = w[ch] * s;
    const float mean_dy = (float)((double)sums[c + ch] / count);
    const float mean_dy_xhat = (float)((double)sums[ch] / count);
    const float d = bn_dy(g[i], y[i], epilogue);
    dx[i] = k * (d - mean_dy - (x[i] - m) * s * mean_dy_xhat);
    if (epilogue == 2) dres[i] = d;
  }
}

// The running statistics after a training batch (src/model/ops/running_stats.rs): running = [mean; var], 2·C
// values; factors = keep (1 − momentum), take (momentum), unbias (count / (count − 1)), each product rounded
// as the CPU op's affine steps (`+ 0.0f` included, and -fmad=false).
extern "C" __global__ void lp_bn_running(const float *running, const float *mean, const float *var, float *out,
                                         int c, float keep, float take, float unbias) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < c; i += gridDim.x * blockDim.x) {
    out[i] = (running[i] * keep + 0.0f) + (mean[i] * take + 0.0f);
    out[c + i] = (running[c + i] * keep + 0.0f) + ((var[i] * unbias + 0.0f) * take + 0.0f);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Max-pooling with a recorded argmax (src/model/ops/max_pool.rs). Padding acts as -inf; the first maximum in
// row-major window order wins and a NaN wins, as in PyTorch's and the CPU op's scan.

extern "C" __global__ void lp_max_pool_fwd(const float *x, float *y, uint32_t *argmax, int64_t planes, int h,
                                           int w, int oh, int ow, int k, int s, int p) {
  const int64_t total = planes * oh * ow;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t plane = i / ((int64_t)oh * ow);
    const int r = (int)(i - plane * oh * ow);
    const int oy = r / ow, ox = r % ow;
    const float *xp = x + plane * h * w;
    const int y0 = oy * s - p, x0 = ox * s - p;
    // An all -inf window reports its first in-image element (as PyTorch and the CPU op).
    float best = -INFINITY;
    int best_at = max(y0, 0) * w + max(x0, 0);
    for (int ky = 0; ky < k; ++ky) {
      const int iy = y0 + ky;
      if (iy < 0 || iy >= h) continue;
      for (int kx = 0; kx < k; ++kx) {
        const int ix = x0 + kx;
        if (ix < 0 || ix >= w) continue;
        const float v = xp[iy * w + ix];
        if (v > best || isnan(v)) {
          best = v;
          best_at = iy * w + ix;
        }
      }
    }
    y[i] = best;
    argmax[i] = (uint32_t)best_at;
  }
}

// Input-centred backward: each input element sums the gradients of the windows whose argmax it was, in a fixed
// order (no atomics, so the result is deterministic even with overlapping windows).
extern "C" __global__ void lp_max_pool_bwd(const float *g, const uint32_t *argmax, float *dx, int64_t planes,
                                           int h, int w, int oh, int ow, int k, int s, int p) {
  const int64_t total = planes * h * w;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t plane = i / ((int64_t)h * w);
    const int r = (int)(i - plane * h * w);
    const int iy = r / w, ix = r % w;
    // Windows oy with oy*s - p <= iy <= oy*s - p + k - 1.
    const int oy_lo = max(0, (iy + p - k + s) / s), oy_hi = min(oh - 1, (iy + p) / s);
    const int ox_lo = max(0, (ix + p - k + s) / s), ox_hi = min(ow - 1, (ix + p) / s);
    float acc = 0.0f;
    for (int oy = oy_lo; oy <= oy_hi; ++oy) {
      for (int ox = ox_lo; ox <= ox_hi; ++ox) {
        const int64_t o = plane * oh * ow + oy * ow + ox;
        if (argmax[o] == (uint32_t)r) acc += g[o];
      }
    }
    dx[i] = acc;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Optimizer updates in place (src/train/optim.rs: adam_kernel, sgd_kernel). Each line mirrors torch's
// _single_tensor_adam / _single_tensor_sgd as the CPU kernels do.

extern "C" __global__ void lp_adam(float *p, const float *g, float *m, float *v, float *vmax, int64_t n,
                                   int decoupled, int l2_on, int amsgrad, float decay, float l2, float w1,
                                   float beta2, float w2, float bc2_sqrt, float eps, float neg_step_size) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    float pi = p[i];
    if (decoupled) pi = pi * decay + 0.0f;
    float gi = g[i];
    if (l2_on) gi += pi * l2 + 0.0f;
    const float mi = m[i] + ((gi - m[i]) * w1 + 0.0f);
    const float vi = (v[i] * beta2 + 0.0f) + (gi * w2 + 0.0f) * gi;
    float vx = vi;
    if (amsgrad) {
      vx = vmax[i] < vi ? vi : vmax[i];
      vmax[i] = vx;
    }
    const float denom = (sqrtf(vx) / bc2_sqrt) * 1.0f + eps;
    p[i] = pi + (mi * neg_step_size + 0.0f) / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

// first: the momentum buffer does not exist yet and becomes the gradient.
extern "C" __global__ void lp_sgd(float *p, const float *g, float *buf, int64_t n, int wd_on, int momentum_on,
                                  int first, int nesterov, float weight_decay, float momentum, float keep,
                                  float neg_lr) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    float gi = g[i];
    if (wd_on) gi += p[i] * weight_decay + 0.0f;
    if (momentum_on) {
      const float b = first ? gi : (buf[i] * momentum + 0.0f) + (gi * keep + 0.0f);
      buf[i] = b;
      gi = nesterov ? gi + (b * momentum + 0.0f) : b;
    }
    p[i] += gi * neg_lr + 0.0f;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Fused cross-entropy (torch.nn.CrossEntropyLoss, mean reduction, label smoothing eps) and the count of
// correct predictions (src/train/loss/fused.rs). Logits are contiguous [n, k], labels [n] u32. Each row's
// log-sum-exp is taken in double after subtracting the row's maximum, as the CPU op does.

// The row's log-sum-exp.
__device__ double lp_row_lse(const float *row, int k) {
  double m = -INFINITY;
  for (int j = 0; j < k; ++j) m = fmax(m, (double)row[j]);
  double s = 0.0;
  for (int j = 0; j < k; ++j) s += exp((double)row[j] - m);
  return m + log(s);
}

// out[0] = mean over rows of (1 - eps)(lse - x_y) + eps (lse - mean x). One block; a label outside 0..k
// makes the loss NaN.
extern "C" __global__ void lp_ce_fwd(const float *x, const uint32_t *y, int n, int k, double eps, float *out) {
  __shared__ double shared[32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float *row = x + (int64_t)i * k;
    const uint32_t label = y[i];
    if (label >= (uint32_t)k) {
      acc += NAN;
      continue;
    }
    const double lse = lp_row_lse(row, k);
    double loss = lse - (double)row[label];
    if (eps != 0.0) {
      double sum = 0.0;
      for (int j = 0; j < k; ++j) sum += (double)row[j];
      loss = (1.0 - eps) * loss + eps * (lse - sum / (double)k);
    }
    acc += loss;
  }
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) out[0] = (float)(acc / (double)(n > 0 ? n : 1));
}

// dx = (softmax(x) - target) * g[0] / n, target = (1 - eps) one_hot(y) + eps / k. One thread per row.
extern "C" __global__ void lp_ce_bwd(const float *x, const uint32_t *y, const float *g, int n, int k, double eps,
                                     float *dx) {
  const double scale = (double)g[0] / (double)(n > 0 ? n : 1);
  const double on = 1.0 - eps + eps / (double)k, off = eps / (double)k;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    const float *row = x + (int64_t)i * k;
    float *out = dx + (int64_t)i * k;
    const uint32_t label = y[i];
    const double lse = lp_row_lse(row, k);
    for (int j = 0; j < k; ++j) {
      const double target = ((uint32_t)j == label) ? on : off;
      out[j] = (float)((exp((double)row[j] - lse) - target) * scale);
    }
  }
}

// out[0] = number of rows whose first maximum (a NaN counts as the maximum, as torch.argmax) is at the label.
extern "C" __global__ void lp_correct(const float *x, const uint32_t *y, int n, int k, float *out) {
  __shared__ double shared[32];
  double right = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float *row = x + (int64_t)i * k;
    int best = 0;
    for (int j = 1; j < k; ++j) {
      const float b = row[best], v = row[j];
      if (!isnan(b) && (v > b || isnan(v))) best = j;
    }
    if ((uint32_t)best == y[i]) right += 1.0;
  }
  right = block_sum(right, shared);
  if (threadIdx.x == 0) out[0] = (float)right;
}
