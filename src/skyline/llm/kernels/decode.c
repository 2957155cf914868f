/* The decoding step's kernels, on AVX2 + FMA: matmuls with few rows of activations, and attention of one
   query token per sequence over its paged KV cache.

     skyline_f32_matmul:  y[m, n] = sum_k x[m, k] * w[n, k]
     skyline_int8_matmul: y[m, n] = scale[n] * sum_k x[m, k] * q[n, k]
     skyline_decode_attention: see below
     skyline_rope_store, skyline_silu_mul, skyline_add_rms_norm: the small steps between (at the end)

   A decoding step reads every weight once, so its time is set by how fast the weights stream in from
   memory. Both kernels read each row of the weight once (an int8 row is widened to float32 into a
   buffer that stays in L1) and dot it with every row of x, four rows at a time so that four
   accumulators hide the FMA latency; the rows of the weight are split between the threads. Measured
   here, with 2 threads at one row, this streams the weights about twice as fast as MKL's sgemm called
   through PyTorch, and PyTorch has no int8 weight-only kernel for AVX2 at all. Many rows (a prefill)
   are better served by a blocked GEMM: the caller decides. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float dot(const float *a, const float *b, long n) {
    __m256 acc = _mm256_setzero_ps();
    long j = 0;
    for (; j + 8 <= n; j += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc);
    float r = hsum(acc);
    for (; j < n; j++) r += a[j] * b[j];
    return r;
}

/* r[i] = v . b_i for four vectors b_0..b_3 of n floats: four independent FMA chains hide the latency (one
   dot alone waits on every FMA of its chain), and each load of v feeds all four. */
static inline void dot4(const float *v, const float *b0, const float *b1, const float *b2, const float *b3,
                        long n, float r[4]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    long j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 x = _mm256_loadu_ps(v + j);
        a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b0 + j), a0);
        a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b1 + j), a1);
        a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b2 + j), a2);
        a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b3 + j), a3);
    }
    r[0] = hsum(a0), r[1] = hsum(a1), r[2] = hsum(a2), r[3] = hsum(a3);
    for (; j < n; j++) {
        r[0] += v[j] * b0[j];
        r[1] += v[j] * b1[j];
        r[2] += v[j] * b2[j];
        r[3] += v[j] * b3[j];
    }
}

/* y[m, n] = s * x[m] . w for every row m of x, for one row w of the weight (n_in floats). */
static inline void dot_rows(const float *w, const float *x, float *y, long rows, long n_out, long n_in,
                            long n, float s) {
    long m = 0;
    for (; m + 4 <= rows; m += 4) {
        const float *x0 = x + m * n_in;
        float r[4];
        dot4(w, x0, x0 + n_in, x0 + 2 * n_in, x0 + 3 * n_in, n_in, r);
        for (int i = 0; i < 4; i++) y[(m + i) * n_out + n] = r[i] * s;
    }
    for (; m < rows; m++) {  /* one row: four accumulators along k instead */
        const float *x0 = x + m * n_in;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        long j = 0;
        for (; j + 32 <= n_in; j += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x0 + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 8), _mm256_loadu_ps(x0 + j + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 16), _mm256_loadu_ps(x0 + j + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 24), _mm256_loadu_ps(x0 + j + 24), a3);
        }
        for (; j + 8 <= n_in; j += 8)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x0 + j), a0);
        float r = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; j < n_in; j++) r += w[j] * x0[j];
        y[m * n_out + n] = r * s;
    }
}

void skyline_f32_matmul(const float *x, const float *w, float *y, long rows, long n_out, long n_in,
                        int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (long n = 0; n < n_out; n++) dot_rows(w + n * n_in, x, y, rows, n_out, n_in, n, 1.0f);
}

/* Row n of q, widened to float32 into w. */
static inline void widen(const int8_t *q, float *w, long n_in, long n) {
    const int8_t *qn = q + n * n_in;
    long k = 0;
    for (; k + 8 <= n_in; k += 8) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(qn + k));
        _mm256_storeu_ps(w + k, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)));
    }
    for (; k < n_in; k++) w[k] = (float)qn[k];
}

void skyline_int8_matmul(const float *x, const int8_t *q, const float *scale, float *y, long rows,
                         long n_out, long n_in, int threads) {
    #pragma omp parallel num_threads(threads)
    {
        float w[n_in];  /* the row being used, in float32: in L1 while every row of x meets it */
        #pragma omp for schedule(static)
        for (long n = 0; n < n_out; n++) {
            widen(q, w, n_in, n);
            dot_rows(w, x, y, rows, n_out, n_in, n, scale[n]);
        }
    }
}

/* e^x for x <= 0 (softmax's shifted scores): 2^n * e^r with n = round(x / ln 2) and |r| <= ln 2 / 2, e^r
   by its Taylor polynomial to r^6 (relative error below 3e-7); below -87, e^-87 (~1.6e-38: a weight of 0
   next to the maximum's weight of 1). libm's expf, one value at a time, cost more than the dots. */
static inline __m256 exp_nonpositive(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);  /* ln 2 in two parts */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(two_n));
}

/* p[0 .. len) = softmax(p[0 .. len)), in place. */
static void softmax(float *p, long len) {
    float top = -INFINITY, total = 0.0f;
    for (long t = 0; t < len; t++) top = p[t] > top ? p[t] : top;
    const __m256 shift = _mm256_set1_ps(top);
    __m256 sum = _mm256_setzero_ps();
    long t = 0;
    for (; t + 8 <= len; t += 8) {
        const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(p + t), shift));
        _mm256_storeu_ps(p + t, e);
        sum = _mm256_add_ps(sum, e);
    }
    for (; t < len; t++) total += (p[t] = expf(p[t] - top));
    total += hsum(sum);
    const __m256 inv = _mm256_set1_ps(1.0f / total);
    for (t = 0; t + 8 <= len; t += 8) _mm256_storeu_ps(p + t, _mm256_mul_ps(_mm256_loadu_ps(p + t), inv));
    for (; t < len; t++) p[t] /= total;
}

/* pg[t] = scale * qg . k_t for t < len, k_t at cache + s[t] * row, four positions at a time. */
static void scores(const float *qg, const float *cache, const int64_t *s, long len, long row, long hd,
                   float scale, float *pg) {
    long t = 0;
    for (; t + 4 <= len; t += 4) {
        float r[4];
        dot4(qg, cache + s[t] * row, cache + s[t + 1] * row, cache + s[t + 2] * row, cache + s[t + 3] * row,
             hd, r);
        for (int i = 0; i < 4; i++) pg[t + i] = scale * r[i];
    }
    for (; t < len; t++) pg[t] = scale * dot(qg, cache + s[t] * row, hd);
}

/* og = sum_t pg[t] * v_t for t < len, v_t at cache + s[t] * row: 64 outputs at a time held in eight
   registers across every position (a sum kept in memory would wait on its own store at each step). */
static void weighted_values(const float *pg, const float *cache, const int64_t *s, long len, long row,
                            long hd, float *og) {
    long j = 0;
    for (; j + 64 <= hd; j += 64) {
        __m256 a[8];
        for (int i = 0; i < 8; i++) a[i] = _mm256_setzero_ps();
        for (long t = 0; t < len; t++) {
            const float *v = cache + s[t] * row + j;
            const __m256 w = _mm256_set1_ps(pg[t]);
            for (int i = 0; i < 8; i++) a[i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8 * i), a[i]);
        }
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(og + j + 8 * i, a[i]);
    }
    for (; j + 8 <= hd; j += 8) {
        __m256 a = _mm256_setzero_ps();
        for (long t = 0; t < len; t++)
            a = _mm256_fmadd_ps(_mm256_set1_ps(pg[t]), _mm256_loadu_ps(cache + s[t] * row + j), a);
        _mm256_storeu_ps(og + j, a);
    }
    for (; j < hd; j++) {
        float r = 0.0f;
        for (long t = 0; t < len; t++) r += pg[t] * cache[s[t] * row + j];
        og[j] = r;
    }
}

/* out[d, i, :] = softmax(scale * q[d, i] . K[d, h]) @ V[d, h] for every sequence d and query head i, where
   h = i / groups is the KV head that query head shares (grouped-query attention). The keys and values of
   sequence d's position t are read where they lie, in cache row slots[d * max_len + t] (laid out
   [2 * kv_heads, head_dim]: keys, then values), for t < lengths[d]: no gather copy, no padding. The
   (sequence, KV head) pairs are split between the threads. Returns 0, or -1 (nothing computed) when a
   length is not in 1 .. max_len or a slot is not a row of the cache's cache_rows. */
int skyline_decode_attention(const float *q, const float *cache, long cache_rows, const int64_t *slots,
                             const int64_t *lengths, float *out, long num_seqs, long max_len,
                             long kv_heads, long groups, long head_dim, float scale, int threads) {
    const long row = 2 * kv_heads * head_dim, heads = kv_heads * groups;
    for (long d = 0; d < num_seqs; d++) {
        if (lengths[d] < 1 || lengths[d] > max_len) return -1;
        for (long t = 0; t < lengths[d]; t++)
            if (slots[d * max_len + t] < 0 || slots[d * max_len + t] >= cache_rows) return -1;
    }
    #pragma omp parallel num_threads(threads)
    {
        float *p = malloc(sizeof(float) * groups * max_len);  /* each query head's probabilities */
        #pragma omp for schedule(dynamic)
        for (long task = 0; task < num_seqs * kv_heads; task++) {
            const long d = task / kv_heads, h = task % kv_heads, len = lengths[d];
            const int64_t *s = slots + d * max_len;
            const float *qd = q + (d * heads + h * groups) * head_dim;
            float *od = out + (d * heads + h * groups) * head_dim;
            for (long g = 0; g < groups; g++) {  /* each query head of the group, over the same rows */
                float *pg = p + g * len;
                scores(qd + g * head_dim, cache + h * head_dim, s, len, row, head_dim, scale, pg);
                softmax(pg, len);
                weighted_values(pg, cache + (kv_heads + h) * head_dim, s, len, row, head_dim,
                                od + g * head_dim);
            }
        }
        free(p);
    }
    return 0;
}

/* y[m] = x[m] / sqrt(mean(x[m]^2) + eps) * weight, each of the rows (RMSNorm as Llama computes it, in
   float32). One call instead of PyTorch's seven operations, each a pass over memory and a thread wake-up. */
void skyline_rms_norm(const float *x, const float *weight, float *y, long rows, long n, float eps) {
    for (long m = 0; m < rows; m++) {
        const float *xm = x + m * n;
        float *ym = y + m * n;
        const float inv = 1.0f / sqrtf(dot(xm, xm, n) / n + eps);
        const __m256 vinv = _mm256_set1_ps(inv);
        long j = 0;
        for (; j + 8 <= n; j += 8)
            _mm256_storeu_ps(ym + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xm + j), vinv),
                                                   _mm256_loadu_ps(weight + j)));
        for (; j < n; j++) ym[j] = xm[j] * inv * weight[j];
    }
}

/* The per-token work between the matmuls, one call each instead of PyTorch's chains of small operations
   (each of which allocates, walks memory and wakes the threads). */

/* y = x * cos + rotate_half(x) * sin_signed over one head of hd floats (sin_signed's first half negated,
   so rotate_half is a swap of the halves). */
static inline void rotate(const float *x, const float *c, const float *s, float *y, long hd) {
    const long half = hd / 2;
    for (long j = 0; j < hd; j++) y[j] = x[j] * c[j] + x[j < half ? j + half : j - half] * s[j];
}

/* For each of the tokens: RoPE at its position on its query heads (into q_out [tokens, heads, hd]) and on
   its key heads, and its keys and values written into cache row slots[t] ([2 * kv_heads, hd]: keys, then
   values). qkv is [tokens, heads + 2 * kv_heads, hd]; cos and sin_signed are [max_pos, hd]. Returns 0, or
   -1 (nothing written) when a position or a slot is out of range. */
int skyline_rope_store(const float *qkv, const int64_t *positions, const float *cos, const float *sin_signed,
                       long max_pos, float *cache, long cache_rows, const int64_t *slots, float *q_out,
                       long tokens, long heads, long kv_heads, long hd) {
    for (long t = 0; t < tokens; t++)
        if (positions[t] < 0 || positions[t] >= max_pos || slots[t] < 0 || slots[t] >= cache_rows) return -1;
    const long row = (heads + 2 * kv_heads) * hd;
    for (long t = 0; t < tokens; t++) {
        const float *in = qkv + t * row, *c = cos + positions[t] * hd, *s = sin_signed + positions[t] * hd;
        float *kv = cache + slots[t] * 2 * kv_heads * hd;
        for (long h = 0; h < heads; h++) rotate(in + h * hd, c, s, q_out + (t * heads + h) * hd, hd);
        for (long h = 0; h < kv_heads; h++) rotate(in + (heads + h) * hd, c, s, kv + h * hd, hd);
        memcpy(kv + kv_heads * hd, in + (heads + kv_heads) * hd, sizeof(float) * kv_heads * hd);
    }
    return 0;
}

/* out[m] = silu(gate[m]) * up[m], with gate_up[m] = [gate | up] (inter floats each): SwiGLU's middle.
   silu(g) = g * sigmoid(g), the exponential taken of -|g| so that it never overflows. */
void skyline_silu_mul(const float *gate_up, float *out, long rows, long inter) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (long m = 0; m < rows; m++) {
        const float *g = gate_up + m * 2 * inter, *u = g + inter;
        float *o = out + m * inter;
        long j = 0;
        for (; j + 8 <= inter; j += 8) {
            const __m256 x = _mm256_loadu_ps(g + j);
            const __m256 e = exp_nonpositive(_mm256_or_ps(x, sign));  /* e^-|x| */
            const __m256 positive = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
            const __m256 sigmoid = _mm256_div_ps(_mm256_blendv_ps(e, one, positive), _mm256_add_ps(one, e));
            _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_mul_ps(x, sigmoid), _mm256_loadu_ps(u + j)));
        }
        for (; j < inter; j++) o[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
    }
}

/* x += delta, then y = RMSNorm(x) (the residual stream and the next sublayer's input in one pass). */
void skyline_add_rms_norm(float *x, const float *delta, const float *weight, float *y, long rows, long n,
                          float eps) {
    for (long i = 0; i < rows * n; i++) x[i] += delta[i];
    skyline_rms_norm(x, weight, y, rows, n, eps);
}
