// kappa-sim's GPU kernel: many paths of a landscape, compiled by NVRTC at run time.
//
// One thread owns K consecutive coordinates of one path and keeps their state (x, and the
// optimizer's moments) in registers for a whole segment of steps. On the diagonal quadratic and
// the double well coordinates are independent, so threads talk only to sum losses; on a full
// Hessian (d ≤ 128) a path's lanes also share their coordinates by warp shuffles for H x. Threads
// of a path are `tpp` consecutive lanes (tpp a power of two), so a path's partial sums reduce with
// warp shuffles and one atomicAdd per warp (or per group of tpp lanes). The gradient at x (gx) is
// computed once per substep, after its update: it serves the step's loss, a record point and the
// next substep.
//
// Random numbers: Philox-4x32-10, keyed by (trial id, seed), counter (coordinate chunk, substep,
// path, draw). One Philox call gives the four normals of a thread's K = 4 coordinates.
//
// State is float32; losses are summed in float32 per thread and in float64 across threads and
// steps. The update rules mirror optim/ and sde.rs line by line; keep them in step. The KIND_*
// case numbers are defined by the host before this file, from kappa-core's optimizer table.

typedef unsigned int u32;
typedef unsigned long long u64;

#define K 4

struct Params {
    u64 key;
    u64 step_begin;  // this launch runs steps step_begin+1 ..= step_end
    u64 step_end;
    u64 burn_in;     // steps <= burn_in are not averaged
    u64 paths;
    u32 d;
    u32 tpp;         // threads per path, a power of two
    u32 refine;      // SDE substeps per step
    u32 method;      // 0 discrete optimizer, 1 SDE
    u32 kind;        // KIND_*: the optimizer table's row (defined before this file)
    u32 model;       // 0 compagnoni, 1 malladi
    u32 noise;       // 0 gaussian, 1 student-t
    u32 phases;      // count SignSGD phases at record points (sign-like optimizers)
    u32 records;
    u32 rec_start;   // first record index this launch may write
    u32 bias_correction;
    u32 scheduled;   // lr_scale holds each step's learning-rate multiplier (else every step's is 1)
    u32 landscape;   // 0 diagonal quadratic (lam = λ), 1 double well (lam = a), 2 full Hessian (hess)
    u32 pad;
    float eta, beta1, beta2, eps, decay, dt, nu, x0, div_threshold, lbeta;
    float r1, r2, sigma_unit, eps_eff, b1pow0, b2pow0;
};

// The landscape (landscape.rs): the gradient of a thread's K coordinates, and twice their part of
// the loss (the ½ is applied to the sums). Diagonal quadratic (0): λx and λx²; double well (1):
// a x (x² − 1) and a (x² − 1)²/2; full Hessian (2): (Hx)_i, every x_j of the path broadcast from
// the lane that holds it (a path's tpp ≤ 32 lanes), and x_i (Hx)_i. Every lane must call `grads`
// (the shuffles need the whole warp).
__device__ __forceinline__ void grads(const Params& p, const float* __restrict__ hess, const float lam[K],
                                      const float x[K], const bool valid[K], u32 chunk, float g[K]) {
    if (p.landscape != 2) {
#pragma unroll
        for (int j = 0; j < K; j++) g[j] = p.landscape == 0 ? lam[j] * x[j] : lam[j] * x[j] * (x[j] * x[j] - 1.0f);
        return;
    }
#pragma unroll
    for (int j = 0; j < K; j++) g[j] = 0.0f;
    for (u32 src = 0; src < p.tpp; src++) {
#pragma unroll
        for (int c = 0; c < K; c++) {
            const float xc = __shfl_sync(0xffffffffu, x[c], (int)src, (int)p.tpp);
            const u32 col = src * K + c;
            if (col >= p.d) continue;
#pragma unroll
            for (int j = 0; j < K; j++) {
                if (valid[j]) g[j] += hess[(u64)(chunk * K + j) * p.d + col] * xc;
            }
        }
    }
}

__device__ __forceinline__ float loss2_of(const Params& p, float l, float x, float g) {
    if (p.landscape == 0) return l * x * x;
    if (p.landscape == 2) return x * g;
    float u = x * x - 1.0f;
    return 0.5f * l * u * u;
}

// sign(g) with sign(0) = 0.
__device__ __forceinline__ float sgnf(float g) { return g > 0.0f ? 1.0f : (g < 0.0f ? -1.0f : 0.0f); }

// ---------------------------------------------------------------- Philox-4x32-10 (Random123)

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

__device__ __forceinline__ uint4 philox_round(uint4 c, uint2 k) {
    u32 hi0 = __umulhi(PHILOX_M0, c.x), lo0 = PHILOX_M0 * c.x;
    u32 hi1 = __umulhi(PHILOX_M1, c.z), lo1 = PHILOX_M1 * c.z;
    return make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

__device__ __forceinline__ uint4 philox(uint4 c, uint2 k) {
#pragma unroll
    for (int i = 0; i < 10; i++) {
        if (i > 0) {
            k.x += PHILOX_W0;
            k.y += PHILOX_W1;
        }
        c = philox_round(c, k);
    }
    return c;
}

// Uniform in (0, 1) from 24 bits: never 0, never 1.
__device__ __forceinline__ float u01(u32 a) { return ((float)(a >> 8) + 0.5f) * 5.9604644775390625e-8f; }

// Two standard normals from two words (Box–Muller).
__device__ __forceinline__ float2 box_muller(u32 a, u32 b) {
    float r = sqrtf(fmaxf(-2.0f * __logf(u01(a)), 0.0f));
    float s, c;
    sincospif(2.0f * u01(b), &s, &c);
    return make_float2(r * c, r * s);
}

// A small stream for the draws whose count is not fixed (Student-t's gamma variates).
struct Gen {
    uint4 ctr;
    uint2 key;
    uint4 buf;
    int used;
    int has_spare;
    float spare;
};

__device__ __forceinline__ u32 gen_u32(Gen& g) {
    if (g.used == 4) {
        g.ctr.w += 1u << 16;  // the next draw of this (chunk, substep, path)
        g.buf = philox(g.ctr, g.key);
        g.used = 0;
    }
    u32 v;
    switch (g.used) {
        case 0: v = g.buf.x; break;
        case 1: v = g.buf.y; break;
        case 2: v = g.buf.z; break;
        default: v = g.buf.w; break;
    }
    g.used++;
    return v;
}

__device__ __forceinline__ float gen_uniform(Gen& g) { return u01(gen_u32(g)); }

__device__ __forceinline__ float gen_normal(Gen& g) {
    if (g.has_spare) {
        g.has_spare = 0;
        return g.spare;
    }
    u32 a = gen_u32(g), b = gen_u32(g);
    float2 z = box_muller(a, b);
    g.spare = z.y;
    g.has_spare = 1;
    return z.x;
}

// Gamma(a, 1) by Marsaglia–Tsang; a < 1 through Gamma(a + 1) · U^(1/a).
__device__ float gen_gamma(Gen& g, float a) {
    float boost = 1.0f;
    if (a < 1.0f) {
        boost = powf(gen_uniform(g), 1.0f / a);
        a += 1.0f;
    }
    float d = a - 1.0f / 3.0f, c = rsqrtf(9.0f * d);
    for (int tries = 0; tries < 1000; tries++) {
        float x, v;
        do {
            x = gen_normal(g);
            v = 1.0f + c * x;
        } while (v <= 0.0f);
        v = v * v * v;
        float u = gen_uniform(g);
        float x2 = x * x;
        if (u < 1.0f - 0.0331f * x2 * x2) return d * v * boost;
        if (logf(u) < 0.5f * x2 + d * (1.0f - v + logf(v))) return d * v * boost;
    }
    return d * boost;  // unreachable in practice (acceptance is > 95% per try)
}

// Student-t(ν): Z / sqrt(χ²_ν / ν), χ²_ν = 2 Gamma(ν/2).
__device__ __forceinline__ float gen_student_t(Gen& g, float nu) {
    float z = gen_normal(g);
    float chi2 = 2.0f * gen_gamma(g, 0.5f * nu);
    return z * rsqrtf(fmaxf(chi2 / nu, 1e-37f));
}

// ---------------------------------------------------------------- Student-t CDF (SignSGD SDE)

// Continued fraction of the incomplete beta function (Numerical Recipes' betacf).
__device__ float betacf(float a, float b, float x) {
    const float FPMIN = 1e-30f, EPS = 3e-7f;
    float qab = a + b, qap = a + 1.0f, qam = a - 1.0f;
    float c = 1.0f, d = 1.0f - qab * x / qap;
    if (fabsf(d) < FPMIN) d = FPMIN;
    d = 1.0f / d;
    float h = d;
    for (int m = 1; m <= 200; m++) {
        float m2 = 2.0f * m;
        float aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0f + aa * d;
        if (fabsf(d) < FPMIN) d = FPMIN;
        c = 1.0f + aa / c;
        if (fabsf(c) < FPMIN) c = FPMIN;
        d = 1.0f / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0f + aa * d;
        if (fabsf(d) < FPMIN) d = FPMIN;
        c = 1.0f + aa / c;
        if (fabsf(c) < FPMIN) c = FPMIN;
        d = 1.0f / d;
        float del = d * c;
        h *= del;
        if (fabsf(del - 1.0f) < EPS) break;
    }
    return h;
}

// 2 F_ν(t) − 1 (odd in t); lbeta = lnΓ((ν+1)/2) − lnΓ(ν/2) − lnΓ(1/2), from the host.
__device__ float t_signed_mass(float t, float nu, float lbeta) {
    if (nu == 1.0f) return 0.63661977236758134f * atanf(t);
    if (nu == 2.0f) return t * rsqrtf(2.0f + t * t);
    if (isinf(t)) return t > 0.0f ? 1.0f : -1.0f;
    float a = 0.5f * nu, b = 0.5f;
    float x = nu / (nu + t * t);
    float mass;
    if (x <= 0.0f) {
        mass = 1.0f;
    } else if (x >= 1.0f) {
        mass = 0.0f;
    } else {
        float bt = expf(lbeta + a * logf(x) + b * log1pf(-x));
        // mass = 1 − I_x(a, b), taken from the side where the continued fraction converges.
        if (x < (a + 1.0f) / (a + b + 2.0f)) {
            mass = 1.0f - bt * betacf(a, b, x) / a;
        } else {
            mass = bt * betacf(b, a, 1.0f - x) / b;
        }
    }
    return copysignf(mass, t);
}

// 1 − 2 P(g < 0) for gradient `grad` and noise scale `sigma` (noise.rs::sign_drift).
__device__ __forceinline__ float sign_drift(const Params& p, float grad, float sigma) {
    if (sigma == 0.0f) return grad > 0.0f ? 1.0f : (grad < 0.0f ? -1.0f : 0.0f);
    if (p.noise == 0) return erff(grad / (1.41421356237309505f * sigma));
    return t_signed_mass(grad / sigma, p.nu, p.lbeta);
}

// ---------------------------------------------------------------- reductions

// Sum over the lanes of one path (groups of min(tpp, 32) aligned lanes). Every lane must call.
__device__ __forceinline__ double group_sum(double v, u32 width) {
    for (u32 off = width >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ u32 warp_sum_u32(u32 v) {
    for (u32 off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// ---------------------------------------------------------------- the simulation

extern "C" __global__ void __launch_bounds__(256) kappa_sim(
    const Params p,
    const float* __restrict__ lambda_g,
    const float* __restrict__ sigma_g,   // noise scale σ_B,i
    const float* __restrict__ std_g,     // noise standard deviation (σ where infinite)
    float* __restrict__ state,           // x, m, v: 3 arrays of paths·tpp·K
    const u64* __restrict__ record_steps,
    const float* __restrict__ lr_scale,  // [steps] when p.scheduled: step k's multiplier m_k
    const float* __restrict__ hess,      // [d × d] row-major when p.landscape == 2
    double* __restrict__ losses,         // [paths × records], path-major
    double* __restrict__ stationary,     // [paths]: sum of post-burn-in losses
    unsigned long long* __restrict__ phase_counts,  // [records × 3]
    unsigned long long* __restrict__ diverged)      // [1]: first step at which a path diverged
{
    const u64 gid = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 path = gid / p.tpp;
    const u32 chunk = (u32)(gid % p.tpp);
    const bool active = path < p.paths;
    const u32 lane = threadIdx.x & 31u;
    const u32 width = p.tpp < 32u ? p.tpp : 32u;
    const bool leader = (lane & (width - 1u)) == 0u;
    const u64 n = p.paths * (u64)p.tpp * K;

    float lam[K], sig[K], sd[K], x[K], m[K], v[K];
    bool valid[K];
#pragma unroll
    for (int j = 0; j < K; j++) {
        u32 i = chunk * K + j;
        valid[j] = active && i < p.d;
        lam[j] = valid[j] ? lambda_g[i] : 0.0f;
        sig[j] = valid[j] ? sigma_g[i] : 0.0f;
        sd[j] = valid[j] ? std_g[i] : 0.0f;
        x[j] = m[j] = v[j] = 0.0f;
    }
    const u64 base = gid * K;
    float gx[K];  // the gradient at x, where a step or a record needs it
    if (p.step_begin == 0) {
#pragma unroll
        for (int j = 0; j < K; j++) x[j] = valid[j] ? p.x0 : 0.0f;
        grads(p, hess, lam, x, valid, chunk, gx);
#pragma unroll
        for (int j = 0; j < K; j++) {
            if (!valid[j]) continue;
            if (p.method == 1 && (p.kind == KIND_RMSPROP || p.kind == KIND_RMSPROPW)) {
                v[j] = p.model == 0 ? gx[j] * gx[j] + sd[j] * sd[j] : 1.0f;
            }
        }
    } else if (active) {
#pragma unroll
        for (int j = 0; j < K; j++) {
            x[j] = state[base + j];
            m[j] = state[n + base + j];
            v[j] = state[2 * n + base + j];
        }
    }
    // The gradient at the segment's start (every lane: the shuffles need the whole warp).
    grads(p, hess, lam, x, valid, chunk, gx);

    const uint2 key = make_uint2((u32)p.key, (u32)(p.key >> 32));
    u32 rec = p.rec_start;
    u64 next_rec = rec < p.records ? record_steps[rec] : ~0ull;
    double acc = 0.0;
    bool dead = false;
    float b1pow = p.b1pow0, b2pow = p.b2pow0;

    // Records the loss (and phases) of the current x at record index `rec`. Every lane calls it
    // at the same steps (the shuffles need the whole warp).
    auto record = [&]() {
        float part = 0.0f;
        u32 c0 = 0, c1 = 0, c2 = 0;
        const float* gr_all = gx;  // the gradient at the current x
#pragma unroll
        for (int j = 0; j < K; j++) {
            if (!valid[j]) continue;
            part += loss2_of(p, lam[j], x[j], gr_all[j]);
            if (p.phases) {
                float gr = fabsf(gr_all[j]);
                if (gr == 0.0f) {
                    c2++;
                } else {
                    float y = gr / (1.41421356237309505f * sig[j]);
                    if (y > 1.5f) {
                        c0++;
                    } else if (y >= 1.0f) {
                        c1++;
                    } else {
                        c2++;
                    }
                }
            }
        }
        double tot = group_sum(0.5 * (double)part, width);
        if (active && leader) atomicAdd(&losses[path * p.records + rec], tot);
        if (p.phases) {
            c0 = warp_sum_u32(c0);
            c1 = warp_sum_u32(c1);
            c2 = warp_sum_u32(c2);
            if (lane == 0) {
                atomicAdd(&phase_counts[3 * rec + 0], (unsigned long long)c0);
                atomicAdd(&phase_counts[3 * rec + 1], (unsigned long long)c1);
                atomicAdd(&phase_counts[3 * rec + 2], (unsigned long long)c2);
            }
        }
        rec++;
        next_rec = rec < p.records ? record_steps[rec] : ~0ull;
    };

    if (p.step_begin == 0 && next_rec == 0) record();

    const float sqrt_dt = sqrtf(p.dt);
    for (u64 step = p.step_begin + 1; step <= p.step_end; step++) {
        const u32 subs = p.method == 1 ? p.refine : 1u;
        // This step's rate and decoupled decay (run.rs: η_k = η m_k; SGD's SDE: Δ_k = m_k Δ).
        const float scale = p.scheduled ? lr_scale[step - 1] : 1.0f;
        const float eta = p.eta * scale, decay = p.decay * scale;
        for (u32 sub = 0; sub < subs; sub++) {
            const u64 q = (step - 1) * subs + sub;  // global substep index
            float z[K];
            if (p.noise == 0 || p.method == 1) {
                // Gaussian: one Philox call, four normals. (The SDEs' diffusion is Gaussian for
                // every noise family.)
                uint4 r = philox(make_uint4(chunk, (u32)q, (u32)path, (u32)(q >> 32) & 0xffffu), key);
                float2 a = box_muller(r.x, r.y), b = box_muller(r.z, r.w);
                z[0] = a.x;
                z[1] = a.y;
                z[2] = b.x;
                z[3] = b.y;
            } else {
                Gen g;
                // Student-t draws of the discrete optimizers: draws 1, 2, ... of this counter
                // (draw 0 is the Gaussian path's).
                g.ctr = make_uint4(chunk, (u32)q, (u32)path, (u32)(q >> 32) & 0xffffu);
                g.key = key;
                g.buf = make_uint4(0, 0, 0, 0);
                g.used = 4;
                g.has_spare = 0;
                g.spare = 0.0f;
#pragma unroll
                for (int j = 0; j < K; j++) z[j] = gen_student_t(g, p.nu);
            }
            if (p.method == 0) {
                // ------------------------------------------------ discrete optimizers (optim/)
                const u32 kd = p.kind;
                const bool second = kd == KIND_RMSPROP || kd == KIND_RMSPROPW || kd == KIND_ADAM || kd == KIND_ADAMW;
                float corr1 = 1.0f, corr2 = 1.0f;
                if (second) {
                    b2pow *= p.beta2;
                    if (kd == KIND_ADAM || kd == KIND_ADAMW) b1pow *= p.beta1;
                    if (p.bias_correction) {
                        corr2 = 1.0f / (1.0f - b2pow);
                        corr1 = 1.0f / (1.0f - b1pow);
                    }
                }
#pragma unroll
                for (int j = 0; j < K; j++) {
                    float xi = x[j];
                    float g = gx[j] + sig[j] * z[j];
                    switch (kd) {
                        case KIND_SGD: x[j] = xi - eta * g; break;
                        case KIND_SIGNSGD: x[j] = xi - eta * sgnf(g); break;
                        case KIND_RMSPROP:
                        case KIND_RMSPROPW: {
                            v[j] = p.beta2 * v[j] + (1.0f - p.beta2) * g * g;
                            float denom = sqrtf(v[j] * corr2) + p.eps;
                            x[j] = xi - (eta * g / denom + decay * xi);
                            break;
                        }
                        case KIND_ADAM:
                        case KIND_ADAMW: {
                            m[j] = p.beta1 * m[j] + (1.0f - p.beta1) * g;
                            v[j] = p.beta2 * v[j] + (1.0f - p.beta2) * g * g;
                            float denom = sqrtf(v[j] * corr2) + p.eps;
                            x[j] = xi - (eta * (m[j] * corr1) / denom + decay * xi);
                            break;
                        }
                        case KIND_MOMENTUM: {
                            m[j] = p.beta1 * m[j] + g;
                            x[j] = xi - (eta * m[j] + decay * xi);
                            break;
                        }
                        case KIND_NESTEROV: {
                            m[j] = p.beta1 * m[j] + g;
                            x[j] = xi - (eta * (g + p.beta1 * m[j]) + decay * xi);
                            break;
                        }
                        case KIND_SIGNUM: {
                            m[j] = p.beta1 * m[j] + (1.0f - p.beta1) * g;
                            x[j] = xi - (eta * sgnf(m[j]) + decay * xi);
                            break;
                        }
                        default: {  // KIND_LION
                            float c = p.beta1 * m[j] + (1.0f - p.beta1) * g;
                            x[j] = xi - (eta * sgnf(c) + decay * xi);
                            m[j] = p.beta2 * m[j] + (1.0f - p.beta2) * g;
                            break;
                        }
                    }
                }
            } else {
                // ------------------------------------------------ SDEs by Euler–Maruyama (sde.rs)
                const float dt = p.dt;
                switch (p.kind) {
                    case KIND_SGD: {
                        // THEORY.md §8's time change: the substep and the diffusion scale with m_k.
                        const float dts = dt * scale;
                        float c = sqrtf(eta * dts);
#pragma unroll
                        for (int j = 0; j < K; j++) x[j] = x[j] - gx[j] * dts + c * sd[j] * z[j];
                        break;
                    }
                    case KIND_SIGNSGD: {
                        float c = sqrtf(p.eta) * sqrt_dt;
#pragma unroll
                        for (int j = 0; j < K; j++) {
                            float md = sign_drift(p, gx[j], sig[j]);
                            x[j] += -md * dt + c * sqrtf(fmaxf(1.0f - md * md, 0.0f)) * z[j];
                        }
                        break;
                    }
                    case KIND_RMSPROP:
                    case KIND_RMSPROPW: {
                        if (p.model == 0) {
                            float rho = (1.0f - p.beta2) / p.eta;
                            float c = sqrtf(p.eta) * sqrt_dt;
#pragma unroll
                            for (int j = 0; j < K; j++) {
                                float g = gx[j];
                                float pp = sqrtf(v[j]) + p.eps;
                                float xi = x[j];
                                x[j] += -(g * dt + c * sd[j] * z[j]) / pp - p.decay * xi * dt;
                                v[j] += rho * (g * g + sd[j] * sd[j] - v[j]) * dt;
                            }
                        } else {
                            float c2 = (1.0f - p.beta2) / (p.eta * p.eta);
#pragma unroll
                            for (int j = 0; j < K; j++) {
                                float g = gx[j];
                                float sigma0 = p.eta * sd[j];
                                float pp = sigma0 * sqrtf(fmaxf(v[j], 0.0f)) + p.eps * p.eta;
                                float xi = x[j];
                                x[j] += -(g * dt + sigma0 * sqrt_dt * z[j]) / pp - p.decay * xi * dt;
                                v[j] += c2 * (1.0f - v[j]) * dt;
                            }
                        }
                        break;
                    }
                    default: {  // KIND_ADAM, KIND_ADAMW (the host refuses optimizers without an SDE)
                        float t_end = (float)(q + 1) * dt;
                        float iota1 = -expm1f(-p.r1 * t_end);
                        float iota2 = -expm1f(-p.r2 * t_end);
                        float scale = sqrtf(iota2) / iota1;
                        float epsi = p.eps_eff * sqrtf(iota2);
#pragma unroll
                        for (int j = 0; j < K; j++) {
                            float g = gx[j];
                            float xi = x[j];
                            m[j] += p.r1 * (g - m[j]) * dt + p.sigma_unit * p.r1 * sd[j] * sqrt_dt * z[j];
                            float target = p.model == 0 ? g * g + sd[j] * sd[j] : 1.0f;
                            v[j] += p.r2 * (target - v[j]) * dt;
                            float sv = sqrtf(fmaxf(v[j], 0.0f));
                            float pp = p.model == 0 ? sv + epsi : p.eta * sd[j] * sv + epsi;
                            x[j] += -scale * m[j] / pp * dt - p.decay * xi * dt;
                        }
                        break;
                    }
                }
            }
            // The gradient at the new x: this step's loss, a record, the next substep's drift.
            grads(p, hess, lam, x, valid, chunk, gx);
        }
        float part = 0.0f;
#pragma unroll
        for (int j = 0; j < K; j++) part += valid[j] ? loss2_of(p, lam[j], x[j], gx[j]) : 0.0f;
        part *= 0.5f;
        if (active && !dead && !(isfinite(part) && part <= p.div_threshold)) {
            dead = true;
            atomicMin(diverged, (unsigned long long)step);
        }
        if (step > p.burn_in) acc += (double)part;
        if (step == next_rec) record();
    }

    double tot = group_sum(acc, width);
    if (active && leader && p.step_end > p.burn_in) atomicAdd(&stationary[path], tot);
    if (active) {
#pragma unroll
        for (int j = 0; j < K; j++) {
            state[base + j] = x[j];
            state[n + base + j] = m[j];
            state[2 * n + base + j] = v[j];
        }
    }
}

// Philox-4x32-10 known answers (Random123's kat_vectors), checked on the device by the tests.
extern "C" __global__ void kappa_philox_kat(const u32* in, u32* out, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint4 c = make_uint4(in[6 * i], in[6 * i + 1], in[6 * i + 2], in[6 * i + 3]);
    uint2 k = make_uint2(in[6 * i + 4], in[6 * i + 5]);
    uint4 r = philox(c, k);
    out[4 * i] = r.x;
    out[4 * i + 1] = r.y;
    out[4 * i + 2] = r.z;
    out[4 * i + 3] = r.w;
}
