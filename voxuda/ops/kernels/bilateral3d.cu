// Joint (cross) 3D bilateral filter, one output voxel per thread, shared-memory tile with halo.
//
// Layout: x (N, C, D, H, W), guide (N, G, D, H, W), out (N, C, D, H, W), all C-contiguous.
// Weight of tap q for output p:
//     w = exp2(-(cz*dz^2 + cy*dy^2 + cx*dx^2 + cr * |guide_q - guide_p|^2))
// where the host folds log2(e) / (2 sigma^2) and the voxel spacing into cz, cy, cx, cr, so every tap costs
// one exp2 (the SFU-bound part on a GPU) and a few FMAs.  The centre tap has weight 1, so the normaliser
// is >= 1 and never divides by zero.
//
// Border mode is replicate: halo loads clamp their global coordinates into the volume, which is exactly
// what padding x and guide with edge values and then filtering does.
//
// Tiling: a block of blockDim.x * blockDim.y * blockDim.z threads computes a tile of
// blockDim.x * blockDim.y * (blockDim.z * zpt) outputs (each thread handles zpt voxels along z), for one
// batch item and one group of up to VOXUDA_CB channels of x.  The halo'd guide tile (all G channels) and
// x tile (the channel group) are staged once in dynamic shared memory; the host sizes it as
//     (G + min(VOXUDA_CB, C)) * (bx + 2r) * (by + 2r) * (bz * zpt + 2r) * sizeof(T).
// gridDim = (ceil(W / bx), ceil(H / by), ceil(D / (bz * zpt)) * ceil(C / VOXUDA_CB) * N).
//
// This file is compiled by NVRTC (via CuPy) for the GPU and, unchanged, by g++ through the CPU shim in
// tests/ops/shim, which defines the CUDA built-ins; keep it free of CUDA headers and of early returns
// before __syncthreads.

#ifndef VOXUDA_CB
#define VOXUDA_CB 4  // channels of x accumulated per pass (registers per thread)
#endif
#ifndef VOXUDA_MAXG
#define VOXUDA_MAXG 8  // largest supported number of guide channels
#endif

__device__ __forceinline__ int voxuda_clamp(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

__device__ __forceinline__ float voxuda_exp2(float v) { return exp2f(v); }
__device__ __forceinline__ double voxuda_exp2(double v) { return exp2(v); }

template <typename T>
__device__ __forceinline__ void voxuda_bilateral3d(
    T* smem, const T* __restrict__ x, const T* __restrict__ guide, T* __restrict__ out,
    int N, int C, int G, int D, int H, int W, int r, T cz, T cy, T cx, T cr, int zpt)
{
    const int bx = blockDim.x, by = blockDim.y;
    const int tz = blockDim.z * zpt;
    const int hx = bx + 2 * r, hy = by + 2 * r, hz = tz + 2 * r;
    const int hvol = hx * hy * hz;

    const int ztiles = (D + tz - 1) / tz;
    const int cgroups = (C + VOXUDA_CB - 1) / VOXUDA_CB;
    const int zt = blockIdx.z % ztiles;
    const int rest = blockIdx.z / ztiles;
    const int cg = rest % cgroups;
    const int n = rest / cgroups;
    const int c0 = cg * VOXUDA_CB;
    const int nc = (C - c0) < VOXUDA_CB ? (C - c0) : VOXUDA_CB;

    const int ox0 = blockIdx.x * bx, oy0 = blockIdx.y * by, oz0 = zt * tz;
    const long long plane = (long long)D * H * W;
    const T* gbase = guide + (long long)n * G * plane;
    const T* xbase = x + ((long long)n * C + c0) * plane;
    T* obase = out + ((long long)n * C + c0) * plane;

    T* sg = smem;                       // G planes of hvol
    T* sx = smem + (long long)G * hvol;  // nc planes of hvol

    const int tid = threadIdx.x + bx * (threadIdx.y + by * threadIdx.z);
    const int nthreads = bx * by * blockDim.z;
    for (int i = tid; i < hvol; i += nthreads) {
        const int lx = i % hx;
        const int t = i / hx;
        const int ly = t % hy;
        const int lz = t / hy;
        const int gz = voxuda_clamp(oz0 - r + lz, 0, D - 1);
        const int gy = voxuda_clamp(oy0 - r + ly, 0, H - 1);
        const int gx = voxuda_clamp(ox0 - r + lx, 0, W - 1);
        const long long off = ((long long)gz * H + gy) * W + gx;
        for (int g = 0; g < G; ++g) sg[g * hvol + i] = gbase[g * plane + off];
        for (int c = 0; c < nc; ++c) sx[c * hvol + i] = xbase[c * plane + off];
    }
    __syncthreads();

    const int ox = ox0 + threadIdx.x, oy = oy0 + threadIdx.y;
    for (int k = 0; k < zpt; ++k) {
        const int lz = threadIdx.z + k * blockDim.z;
        const int oz = oz0 + lz;
        if (ox < W && oy < H && oz < D) {
            const int ci = ((lz + r) * hy + (threadIdx.y + r)) * hx + (threadIdx.x + r);
            T gp[VOXUDA_MAXG];
#pragma unroll
            for (int g = 0; g < VOXUDA_MAXG; ++g) gp[g] = g < G ? sg[g * hvol + ci] : T(0);
            T acc[VOXUDA_CB];
#pragma unroll
            for (int c = 0; c < VOXUDA_CB; ++c) acc[c] = T(0);
            T wsum = T(0);
            for (int dz = -r; dz <= r; ++dz) {
                const T ez = cz * T(dz * dz);
                for (int dy = -r; dy <= r; ++dy) {
                    const T ezy = ez + cy * T(dy * dy);
                    const int rowi = ci + (dz * hy + dy) * hx;
                    for (int dx = -r; dx <= r; ++dx) {
                        const int qi = rowi + dx;
                        T e = ezy + cx * T(dx * dx);
                        T d2 = T(0);
#pragma unroll
                        for (int g = 0; g < VOXUDA_MAXG; ++g) {
                            if (g < G) {
                                const T d = sg[g * hvol + qi] - gp[g];
                                d2 += d * d;
                            }
                        }
                        e += cr * d2;
                        const T w = voxuda_exp2(-e);
                        wsum += w;
#pragma unroll
                        for (int c = 0; c < VOXUDA_CB; ++c) {
                            if (c < nc) acc[c] += w * sx[c * hvol + qi];
                        }
                    }
                }
            }
            const long long off = ((long long)oz * H + oy) * W + ox;
            const T inv = T(1) / wsum;
#pragma unroll
            for (int c = 0; c < VOXUDA_CB; ++c) {
                if (c < nc) obase[c * plane + off] = acc[c] * inv;
            }
        }
    }
}

extern "C" __global__ void bilateral3d_f32(
    const float* __restrict__ x, const float* __restrict__ guide, float* __restrict__ out,
    int N, int C, int G, int D, int H, int W, int r,
    float cz, float cy, float cx, float cr, int zpt)
{
    extern __shared__ double voxuda_smem[];
    voxuda_bilateral3d<float>(reinterpret_cast<float*>(voxuda_smem), x, guide, out,
                              N, C, G, D, H, W, r, cz, cy, cx, cr, zpt);
}

extern "C" __global__ void bilateral3d_f64(
    const double* __restrict__ x, const double* __restrict__ guide, double* __restrict__ out,
    int N, int C, int G, int D, int H, int W, int r,
    double cz, double cy, double cx, double cr, int zpt)
{
    extern __shared__ double voxuda_smem[];
    voxuda_bilateral3d<double>(voxuda_smem, x, guide, out, N, C, G, D, H, W, r, cz, cy, cx, cr, zpt);
}
