/* The int8 peak of one core's Intel AMX unit, measured: the dense-conv roofline where the core has AMX.

   A loop of `tdpbssd` (16 x 16 int32 accumulators += 16 x 64 int8 times 64 x 16 int8: 16,384 MACs each) on 6
   independent accumulator tiles, the operands kept in 2 tile registers, so that only the instruction's
   throughput counts (no tile loads: a compute peak, as benchmarks/peak_probe.c's for VNNI). Linux grants the
   tile data per process (arch_prctl ARCH_REQ_XCOMP_PERM), as the compiled kernels ask (compiler/passes/schedule.py
   load_amx_config).

   Build: cc -O2 -mamx-tile -mamx-int8 amx_peak_probe.c (benchmarks/peak_probe.py does it when the CPU has AMX).
   Usage: amx_peak_probe SECONDS. Prints one JSON line; exits 2 when the kernel refuses the tile data. */

#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define MACS_PER_INSTR (16 * 16 * 64)
#define INNER 1000

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) {
        printf("{\"error\": \"arch_prctl(ARCH_REQ_XCOMP_PERM) refused: no AMX tile data in this kernel\"}\n");
        return 2;
    }
    unsigned char cfg[64];
    memset(cfg, 0, sizeof cfg);
    cfg[0] = 1;
    for (int t = 0; t < 8; t++) {
        cfg[16 + 2 * t] = 64;
        cfg[48 + t] = 16;
    }
    _tile_loadconfig(cfg);
    static int8_t a[16 * 64], b[16 * 64];
    static int32_t c[16 * 16];
    for (int i = 0; i < 16 * 64; i++) {
        a[i] = (int8_t)(i * 7);
        b[i] = (int8_t)(i * 13);
    }
    _tile_loadd(6, a, 64);
    _tile_loadd(7, b, 64);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3); _tile_zero(4); _tile_zero(5);
    long blocks = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < INNER; i++) {
            _tile_dpbssd(0, 6, 7); _tile_dpbssd(1, 6, 7); _tile_dpbssd(2, 6, 7);
            _tile_dpbssd(3, 6, 7); _tile_dpbssd(4, 6, 7); _tile_dpbssd(5, 6, 7);
        }
        blocks++;
        t = now();
    } while (t - t0 < seconds);
    _tile_stored(0, c, 64);
    _tile_release();
    double macs = (double)blocks * INNER * 6 * MACS_PER_INSTR;
    printf("{\"isa\": \"amx-int8 tdpbssd\", \"seconds\": %.4f, \"gmacs_per_core\": %.2f, \"check\": %d}\n", t - t0,
           macs / (t - t0) / 1e9, c[0]);
    return 0;
}
