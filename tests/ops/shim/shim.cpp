// CPU build of the real CUDA kernel source, exposed to Python through ctypes (tests/ops/cuda_shim.py).
#include "cuda_shim.h"

// The kernel file itself, unchanged (found through -I voxuda/ops/kernels).
#include "bilateral3d.cu"

extern "C" int shim_bilateral3d_f32(
    const float* x, const float* guide, float* out, int N, int C, int G, int D, int H, int W, int r,
    float cz, float cy, float cx, float cr, int zpt,
    unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned long shared_bytes)
{
    return shim_launch(dim3{gx, gy, gz}, dim3{bx, by, bz}, shared_bytes, [=] {
        bilateral3d_f32(x, guide, out, N, C, G, D, H, W, r, cz, cy, cx, cr, zpt);
    });
}

extern "C" int shim_bilateral3d_f64(
    const double* x, const double* guide, double* out, int N, int C, int G, int D, int H, int W, int r,
    double cz, double cy, double cx, double cr, int zpt,
    unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned long shared_bytes)
{
    return shim_launch(dim3{gx, gy, gz}, dim3{bx, by, bz}, shared_bytes, [=] {
        bilateral3d_f64(x, guide, out, N, C, G, D, H, W, r, cz, cy, cx, cr, zpt);
    });
}
