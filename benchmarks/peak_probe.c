/* The int8 dot-product peak of one core, and the copy bandwidth, measured: the roofline of bench_runtimes.py.

   int8 peak: a loop of 16 independent accumulators updated by the core's int8 dot-product instruction, so that
   the instruction's latency is hidden and only its throughput counts. x86 AVX-512 VNNI `vpdpbusd zmm` does
   16 lanes x 4 u8*s8 products = 64 MACs; Arm `sdot v.4s` does 4 lanes x 4 s8*s8 products = 16 MACs.
   Bandwidth: memcpy-like streaming copy of a buffer much larger than the caches, counting read + write bytes.
   Each test runs on T threads at once (pthreads), each thread on its own data: GMAC/s per thread then shows
   whether the cores share an execution unit (hyperthreads, an oversubscribed hypervisor) and GB/s whether
   they share the memory path.

   Build: cc -O2 -mavx512f -mavx512vnni -pthread (x86), aarch64-linux-gnu-gcc -O2 -march=armv8.2-a+dotprod
   -pthread -static (Arm); benchmarks/peak_probe.py does it. Usage: peak_probe THREADS SECONDS [MiB]
   Prints one JSON line. */

#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define ISA "avx512vnni vpdpbusd zmm"
#define MACS_PER_INSTR 64
#elif defined(__aarch64__)
#include <arm_neon.h>
#define ISA "armv8.2 sdot v.4s"
#define MACS_PER_INSTR 16
#else
#error "peak_probe: x86_64 (AVX-512 VNNI) or aarch64 (dotprod) only"
#endif

#define ACCS 16
#define INNER 1000 /* instruction groups per timed block */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* CPU time of the calling thread: rate per CPU-second tells time-slicing by other processes in this machine
   apart from a shared execution unit (the guest sees neither hypervisor steal nor a busy sibling hyperthread). */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static pthread_barrier_t start_line;

struct job {
    double seconds;   /* how long to run */
    double rate;      /* result: MAC/s or bytes/s */
    size_t bytes;     /* bandwidth test: buffer size */
    double cpu_share; /* result: thread CPU time / wall time (1.0: the thread never waited for a core) */
    int64_t checksum; /* keeps the compiler from removing the loop */
};

/* ACCS independent dot-product chains, INNER times per block, until `seconds` have passed. x86: inline assembly
   on zmm0..15 (accumulators) and zmm16/17 (operands), so that no compiler moves or spills enter the loop. */
static void *dot_loop(void *arg) {
    struct job *j = arg;
    uint64_t blocks = 0;
    int64_t sum = 0;
    pthread_barrier_wait(&start_line);
    double t0 = now(), c0 = cpu_now(), t1 = t0;
#if defined(__x86_64__)
    int32_t out[16] __attribute__((aligned(64)));
    __asm__ volatile(
        "vpternlogd $0xff, %%zmm16, %%zmm16, %%zmm16\n\t" /* all ones: u8 255 x s8 -1 */
        "vmovdqa64 %%zmm16, %%zmm17\n\t"
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t" "vpxord %%zmm1, %%zmm1, %%zmm1\n\t" "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
        "vpxord %%zmm3, %%zmm3, %%zmm3\n\t" "vpxord %%zmm4, %%zmm4, %%zmm4\n\t" "vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
        "vpxord %%zmm6, %%zmm6, %%zmm6\n\t" "vpxord %%zmm7, %%zmm7, %%zmm7\n\t" "vpxord %%zmm8, %%zmm8, %%zmm8\n\t"
        "vpxord %%zmm9, %%zmm9, %%zmm9\n\t" "vpxord %%zmm10, %%zmm10, %%zmm10\n\t" "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
        "vpxord %%zmm12, %%zmm12, %%zmm12\n\t" "vpxord %%zmm13, %%zmm13, %%zmm13\n\t"
        "vpxord %%zmm14, %%zmm14, %%zmm14\n\t" "vpxord %%zmm15, %%zmm15, %%zmm15\n\t" ::: "memory");
    while (t1 - t0 < j->seconds) {
        __asm__ volatile(
            "mov %0, %%ecx\n\t"
            "1:\n\t"
            "vpdpbusd %%zmm17, %%zmm16, %%zmm0\n\t" "vpdpbusd %%zmm17, %%zmm16, %%zmm1\n\t"
            "vpdpbusd %%zmm17, %%zmm16, %%zmm2\n\t" "vpdpbusd %%zmm17, %%zmm16, %%zmm3\n\t"
            "vpdpbusd %%zmm17, %%zmm16, %%zmm4\n\t" "vpdpbusd %%zmm17, %%zmm16, %%zmm5\n\t"
            "vpdpbusd %%zmm17, %%zmm16, %%zmm6\n\t" "vpdpbusd %%zmm17, %%zmm16, %%zmm7\n\t"
            "vpdpbusd %%zmm17, %%zmm16, %%zmm8\n\t" "vpdpbusd %%zmm17, %%zmm16, %%zmm9\n\t"
            "vpdpbusd %%zmm17, %%zmm16, %%zmm10\n\t" "vpdpbusd %%zmm17, %%zmm16, %%zmm11\n\t"
            "vpdpbusd %%zmm17, %%zmm16, %%zmm12\n\t" "vpdpbusd %%zmm17, %%zmm16, %%zmm13\n\t"
            "vpdpbusd %%zmm17, %%zmm16, %%zmm14\n\t" "vpdpbusd %%zmm17, %%zmm16, %%zmm15\n\t"
            "dec %%ecx\n\t"
            "jnz 1b\n\t" ::"r"(INNER) : "ecx", "cc");
        blocks++;
        t1 = now();
    }
    __asm__ volatile("vmovdqa32 %%zmm0, %0" : "=m"(out) :: "memory");
    for (int k = 0; k < 16; k++) sum += out[k];
#else
    volatile int32_t seed = 0x01020304;
    int8x16_t a = vreinterpretq_s8_s32(vdupq_n_s32(seed)), b = vreinterpretq_s8_s32(vdupq_n_s32(seed ^ 0x7f7f7f7f));
    int32x4_t acc[ACCS];
    for (int k = 0; k < ACCS; k++) acc[k] = vdupq_n_s32(k);
    while (t1 - t0 < j->seconds) {
        for (int i = 0; i < INNER; i++) {
#pragma GCC unroll 16
            for (int k = 0; k < ACCS; k++) acc[k] = vdotq_s32(acc[k], a, b);
            __asm__ volatile("" : "+w"(a)); /* a may change: no hoisting or folding */
        }
        blocks++;
        t1 = now();
    }
    for (int k = 0; k < ACCS; k++) sum += vaddvq_s32(acc[k]);
#endif
    j->checksum = sum;
    j->rate = (double)blocks * INNER * ACCS * MACS_PER_INSTR / (t1 - t0);
    j->cpu_share = (cpu_now() - c0) / (t1 - t0);
    return NULL;
}

/* Copy a buffer much larger than the caches back and forth; bytes moved = read + write. */
static void *copy_loop(void *arg) {
    struct job *j = arg;
    size_t n = j->bytes;
    char *src = malloc(n), *dst = malloc(n);
    memset(src, 1, n);
    memset(dst, 2, n);
    pthread_barrier_wait(&start_line);
    double t0 = now(), c0 = cpu_now(), t1 = t0;
    uint64_t copies = 0;
    while (t1 - t0 < j->seconds) {
        memcpy(dst, src, n);
        char *t = src;
        src = dst;
        dst = t;
        copies++;
        t1 = now();
    }
    j->checksum = src[n / 2];
    j->rate = 2.0 * n * copies / (t1 - t0);
    j->cpu_share = (cpu_now() - c0) / (t1 - t0);
    free(src);
    free(dst);
    return NULL;
}

static double run(void *(*fn)(void *), int threads, double seconds, size_t bytes, double *per_thread_min,
                  double *cpu_share) {
    pthread_t tid[64];
    struct job jobs[64];
    pthread_barrier_init(&start_line, NULL, threads);
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct job){.seconds = seconds, .bytes = bytes};
        pthread_create(&tid[t], NULL, fn, &jobs[t]);
    }
    double total = 0, lo = 1e300;
    *cpu_share = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        total += jobs[t].rate;
        *cpu_share += jobs[t].cpu_share / threads;
        lo = jobs[t].rate < lo ? jobs[t].rate : lo;
    }
    pthread_barrier_destroy(&start_line);
    *per_thread_min = lo;
    return total;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    double seconds = argc > 2 ? atof(argv[2]) : 1.0;
    size_t mib = argc > 3 ? (size_t)atol(argv[3]) : 256;
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "peak_probe: THREADS must be 1..64\n");
        return 2;
    }
    double dot_min, copy_min, dot_cpu, copy_cpu;
    double dot = run(dot_loop, threads, seconds, 0, &dot_min, &dot_cpu);
    double copy = run(copy_loop, threads, seconds, mib << 20, &copy_min, &copy_cpu);
    printf("{\"isa\": \"%s\", \"threads\": %d, \"seconds\": %.2f, \"gmacs_total\": %.2f, \"gmacs_per_thread_min\": %.2f, "
           "\"dot_cpu_share\": %.3f, \"copy_mib\": %zu, \"copy_gbs_total\": %.2f, \"copy_gbs_per_thread_min\": %.2f, "
           "\"copy_cpu_share\": %.3f}\n",
           ISA, threads, seconds, dot / 1e9, dot_min / 1e9, dot_cpu, mib, copy / 1e9, copy_min / 1e9, copy_cpu);
    return 0;
}
