// Minimal CUDA execution model on the CPU, enough to run voxuda/ops/kernels/bilateral3d.cu unchanged.
//
// Faithfulness matters more than speed: every thread of a block is a real std::thread, __syncthreads() is
// a std::barrier shared by the block's threads, and __shared__ memory is one buffer shared by the block.
// Blocks run one after another (CUDA gives no ordering guarantee between blocks, and the kernel must not
// rely on one), so a single shared-memory buffer suffices.  A kernel that returns before a barrier on
// some threads deadlocks here exactly as it would hang (or be undefined) on a GPU.
#pragma once

#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

// gridDim/blockDim/blockIdx are the same for all threads of the running block; threadIdx is per thread.
inline dim3 gridDim, blockDim, blockIdx;
inline thread_local dim3 threadIdx;
inline std::barrier<>* shim_block_barrier = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__

inline void __syncthreads() { shim_block_barrier->arrive_and_wait(); }

// Dynamic shared memory: the kernel declares `extern __shared__ double voxuda_smem[];`.
#ifndef SHIM_SMEM_BYTES
#define SHIM_SMEM_BYTES (1 << 20)
#endif
extern "C" {
alignas(16) double voxuda_smem[SHIM_SMEM_BYTES / sizeof(double)];
}

// Run `body` (one call = one CUDA thread) over the whole grid.  Shared memory is poisoned with NaN
// before each block so reads of unstaged data show up in the results.
template <typename Body>
int shim_launch(dim3 grid, dim3 block, std::size_t shared_bytes, Body body) {
    if (shared_bytes > sizeof(voxuda_smem)) return 1;
    const unsigned nthreads = block.x * block.y * block.z;
    gridDim = grid;
    blockDim = block;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = dim3{bx, by, bz};
                for (std::size_t i = 0; i < sizeof(voxuda_smem) / sizeof(double); ++i)
                    voxuda_smem[i] = std::numeric_limits<double>::quiet_NaN();
                std::barrier<> bar(nthreads);
                shim_block_barrier = &bar;
                std::vector<std::thread> threads;
                threads.reserve(nthreads);
                for (unsigned tz = 0; tz < block.z; ++tz)
                    for (unsigned ty = 0; ty < block.y; ++ty)
                        for (unsigned tx = 0; tx < block.x; ++tx)
                            threads.emplace_back([=] {
                                threadIdx = dim3{tx, ty, tz};
                                body();
                            });
                for (auto& t : threads) t.join();
                shim_block_barrier = nullptr;
            }
    return 0;
}
