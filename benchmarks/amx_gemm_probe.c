/* Where the time of an AMX 1x1 conv goes on this CPU: the head's 256 -> 256 conv at 64 x 112 (7168 positions,
 * 64 reduction words), written the way the compiled kernel runs it (2 x 2 accumulator tiles of 16 channels x 16
 * positions, tdpbsud per 16-word chunk, tile stores to a 4 KiB accumulator, then the float32 requantisation of
 * docs/int8.md 2.5 in AVX-512), each part alone and together; and the im2col interleave of its activations
 * against a plain copy of the same bytes. PERFORMANCE.md "What does not overlap" quotes its output.
 *
 *   gcc -O2 -march=sapphirerapids -o build/amx_gemm_probe benchmarks/amx_gemm_probe.c && build/amx_gemm_probe
 *
 * Linux only (arch_prctl for the tile data); needs a CPU with amx-int8 and avx512vbmi. Best of 40 runs each. */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define P 7168     /* positions */
#define PITCH 7184 /* kernels.DenseConvSpec.cols_pitch of 7168 positions */
#define OC 256
#define W 64 /* reduction words (256 input channels / 4) */
#define NB ((P / 32) * (OC / 32))

static int8_t A[OC * W * 4] __attribute__((aligned(64)));
static int32_t B[W * PITCH] __attribute__((aligned(64)));
static int8_t O[OC * P] __attribute__((aligned(64)));
static int8_t X[OC * P] __attribute__((aligned(64)));
static int32_t ACC[2][32 * 32] __attribute__((aligned(64)));
static float scale[OC];
static int32_t bias[OC];

typedef struct {
    uint8_t palette, start, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static inline void tiles(int po, int oo) { /* the products of one 32 x 32 block, accumulators zeroed first */
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int v = 0; v < 4; v++) {
        _tile_loadd(4, A + (oo * 32) * W * 4 + v * 64, W * 4);
        _tile_loadd(5, A + (oo * 32 + 16) * W * 4 + v * 64, W * 4);
        _tile_loadd(6, B + (v * 16) * PITCH + po * 32, PITCH * 4);
        _tile_dpbsud(0, 4, 6);
        _tile_dpbsud(2, 5, 6);
        _tile_loadd(7, B + (v * 16) * PITCH + po * 32 + 16, PITCH * 4);
        _tile_dpbsud(1, 4, 7);
        _tile_dpbsud(3, 5, 7);
    }
}

static inline void store(int32_t *acc) {
    _tile_stored(0, acc, 128);
    _tile_stored(1, acc + 16, 128);
    _tile_stored(2, acc + 512, 128);
    _tile_stored(3, acc + 528, 128);
}

static inline void epilogue(const int32_t *acc, int oo, int po) { /* + bias, fma round-down, clamp, narrow */
    const __m512 half = _mm512_set1_ps(0.5f);
    for (int r = 0; r < 32; r++) {
        int o = oo * 32 + r;
        __m512 s = _mm512_set1_ps(scale[o]);
        __m512i b = _mm512_set1_epi32(bias[o]);
        for (int c = 0; c < 32; c += 16) {
            __m512i v = _mm512_add_epi32(_mm512_load_si512(acc + r * 32 + c), b);
            __m512 f = _mm512_fmadd_round_ps(_mm512_cvtepi32_ps(v), s, half, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
            __m512i q = _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
            q = _mm512_max_epi32(_mm512_min_epi32(q, _mm512_set1_epi32(127)), _mm512_setzero_si512());
            _mm_storeu_si128((__m128i *)(O + (size_t)o * P + po * 32 + c), _mm512_cvtepi32_epi8(q));
        }
    }
}

static double best_of(int mode) {
    double best = 1e9;
    for (int rep = 0; rep < 40; rep++) {
        double t0 = now();
        if (mode == 0) {
            for (int i = 0; i < NB; i++) tiles(i / 8, i % 8);
        } else if (mode == 1) {
            for (int i = 0; i < NB; i++) {
                tiles(i / 8, i % 8);
                store(ACC[0]);
            }
        } else if (mode == 2) {
            for (int i = 0; i < NB; i++) epilogue(ACC[0], i % 8, i / 8);
        } else if (mode == 3) {
            for (int i = 0; i < NB; i++) {
                tiles(i / 8, i % 8);
                store(ACC[0]);
                epilogue(ACC[0], i % 8, i / 8);
            }
        } else { /* software-pipelined: the next block's products before this block's epilogue */
            tiles(0, 0);
            store(ACC[0]);
            for (int i = 0; i < NB - 1; i++) {
                int j = i + 1;
                tiles(j / 8, j % 8);
                epilogue(ACC[i & 1], i % 8, i / 8);
                store(ACC[j & 1]);
            }
            epilogue(ACC[(NB - 1) & 1], (NB - 1) % 8, (NB - 1) / 8);
        }
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best * 1e3;
}

static double interleave(int copy) { /* im2col of a pointwise conv: 4 channel rows -> words (+ 128), or a copy */
    uint8_t lo[64], hi[64];
    uint16_t w0[32], w1[32];
    for (int i = 0; i < 32; i++) lo[2 * i] = i, lo[2 * i + 1] = 64 + i, hi[2 * i] = 32 + i, hi[2 * i + 1] = 96 + i;
    for (int i = 0; i < 16; i++) w0[2 * i] = i, w0[2 * i + 1] = 32 + i, w1[2 * i] = 16 + i, w1[2 * i + 1] = 48 + i;
    __m512i blo = _mm512_loadu_si512(lo), bhi = _mm512_loadu_si512(hi);
    __m512i iw0 = _mm512_loadu_si512(w0), iw1 = _mm512_loadu_si512(w1), off = _mm512_set1_epi8((char)0x80);
    double best = 1e9;
    for (int rep = 0; rep < 40; rep++) {
        double t0 = now();
        for (int w = 0; w < W; w++) {
            const int8_t *c0 = X + (4 * w) * P, *c1 = c0 + P, *c2 = c1 + P, *c3 = c2 + P;
            int32_t *out = B + w * PITCH;
            for (int p = 0; p < P; p += 64) {
                __m512i a = _mm512_load_si512(c0 + p), b = _mm512_load_si512(c1 + p);
                __m512i c = _mm512_load_si512(c2 + p), d = _mm512_load_si512(c3 + p);
                if (copy) {
                    _mm512_storeu_si512(out + p, a), _mm512_storeu_si512(out + p + 16, b);
                    _mm512_storeu_si512(out + p + 32, c), _mm512_storeu_si512(out + p + 48, d);
                    continue;
                }
                a = _mm512_xor_si512(a, off), b = _mm512_xor_si512(b, off);
                c = _mm512_xor_si512(c, off), d = _mm512_xor_si512(d, off);
                __m512i ab0 = _mm512_permutex2var_epi8(a, blo, b), ab1 = _mm512_permutex2var_epi8(a, bhi, b);
                __m512i cd0 = _mm512_permutex2var_epi8(c, blo, d), cd1 = _mm512_permutex2var_epi8(c, bhi, d);
                _mm512_storeu_si512(out + p, _mm512_permutex2var_epi16(ab0, iw0, cd0));
                _mm512_storeu_si512(out + p + 16, _mm512_permutex2var_epi16(ab0, iw1, cd0));
                _mm512_storeu_si512(out + p + 32, _mm512_permutex2var_epi16(ab1, iw0, cd1));
                _mm512_storeu_si512(out + p + 48, _mm512_permutex2var_epi16(ab1, iw1, cd1));
            }
        }
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best * 1e3;
}

int main(void) {
    if (syscall(SYS_arch_prctl, 0x1023, 18)) { /* ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA */
        fprintf(stderr, "amx_gemm_probe: this OS does not grant the AMX tile data\n");
        return 1;
    }
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    _tile_loadconfig(&cfg);
    srand(7);
    for (int i = 0; i < OC; i++) scale[i] = 1e-4f * (1 + i % 7), bias[i] = i * 3 - 300;
    for (int i = 0; i < OC * P; i++) X[i] = (int8_t)rand();
    for (int data = 0; data < 2; data++) { /* random activation words, then all zero */
        for (int i = 0; i < OC * W * 4; i++) A[i] = (int8_t)rand();
        for (int i = 0; i < W * PITCH; i++) B[i] = data ? 0 : (int32_t)(rand() * 2u + rand());
        const char *names[] = {"tile products", "+ tile stores", "epilogue alone", "all, in order",
                               "all, pipelined"};
        for (int mode = 0; mode < 5; mode++) {
            double ms = best_of(mode);
            printf("%-6s %-16s %.4f ms  %5.0f GMAC/s\n", data ? "zero" : "random", names[mode], ms,
                   (double)OC * P * W * 4 / ms / 1e6);
        }
    }
    printf("im2col interleave (VBMI permutes) %.4f ms, plain copy of the same bytes %.4f ms\n", interleave(0),
           interleave(1));
    return 0;
}
