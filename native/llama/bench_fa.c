// bench_fa.c - the work partition of nacrith-fa for ONE query row (a one-lane decode step):
// 30 layers x 3 KV heads x n_kv cells (f16 K, bf16 V, SmolLM2-135M's shape), 9 query heads,
// 2 threads taking items from a shared counter after a barrier per layer, as ggml's threadpool
// does. The cache layout is llama.cpp's: a cell's row holds every KV head (384 bytes of K, 384 of
// V), so one head reads 128 bytes of every row. Partitions: items of 1, 2+1 or 3 query heads of a
// GQA group (the heads of one item share the reads of the K/V rows), and ops.cpp's few-rows
// partition: each thread one equal share of the 9 query vectors, its KV heads walked together
// (nfa_attend_heads). Prints the best of 5 runs per partition.
// Usage: make -C native/llama bench [N_KV=8192]
#include "nacrith-fa.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <time.h>
#define L 30
#define HKV 3
#define RK 3
#define ROW (HKV * 64)  // halves per cache row
static int64_t NKV; static uint16_t *K, *V; static float *Q, *O; static int NT = 2;
static atomic_int counter; static pthread_barrier_t bar;
typedef struct { int kv, h0, nh; } item;
static item items[64]; static int nitems; static int shares;
static void *worker(void *arg) {
    int ith = (int)(intptr_t)arg;
    void *scratch = aligned_alloc(64, (nfa_scratch_bytes(HKV * RK, NKV) + 63) / 64 * 64);
    nfa_qv qv[HKV * RK];
    for (int l = 0; l < L; l++) {
        pthread_barrier_wait(&bar);
        if (ith == 0) atomic_store(&counter, NT);
        pthread_barrier_wait(&bar);
        const size_t lo = (size_t)l * NKV * ROW;
        if (shares) {  // units [u0, u1) of the 9 (KV head, query head) units
            int u0 = HKV * RK * ith / NT, u1 = HKV * RK * (ith + 1) / NT, n = 0, nh = 0, first[HKV + 1];
            const void *Ks[HKV], *Vs[HKV];
            for (int u = u0; u < u1; u++) {
                int kv = u / RK;
                if (nh == 0 || Ks[nh - 1] != K + lo + kv * 64) { Ks[nh] = K + lo + kv * 64; Vs[nh] = V + lo + kv * 64; first[nh++] = n; }
                qv[n].q = Q + (l * 9 + u) * 64; qv[n].mask = NULL; qv[n].out = O + (l * 9 + u) * 64; n++;
            }
            first[nh] = n;
            nfa_attend_heads(qv, n, nh, first, Ks, Vs, ROW * 2, ROW * 2, NKV, 0.125f, scratch);
            continue;
        }
        for (int it = ith; it < nitems; it = atomic_fetch_add(&counter, 1)) {
            item m = items[it];
            for (int h = 0; h < m.nh; h++) {
                int hq = m.kv * RK + m.h0 + h;
                qv[h].q = Q + (l * 9 + hq) * 64; qv[h].mask = NULL; qv[h].out = O + (l * 9 + hq) * 64;
            }
            nfa_attend(qv, m.nh, K + lo + m.kv * 64, ROW * 2, V + lo + m.kv * 64, ROW * 2, NKV, 0.125f, scratch);
        }
    }
    free(scratch); return NULL;
}
static double run(void) {
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        pthread_barrier_init(&bar, NULL, NT);
        pthread_t th[8]; struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
        for (int t = 0; t < NT; t++) pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t);
        for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec);
        if (s < best) best = s;
        pthread_barrier_destroy(&bar);
    }
    return best;
}
int main(int argc, char **argv) {
    NKV = argc > 1 ? atoi(argv[1]) : 8192;
    size_t n = (size_t)L * NKV * ROW;
    K = malloc(n * 2); V = malloc(n * 2); Q = malloc(L * 9 * 64 * 4); O = malloc(L * 9 * 64 * 4);
    for (size_t i = 0; i < n; i++) { K[i] = 0x3c00 ^ (i * 2654435761u >> 20 & 0x3ff); V[i] = 0x3f80 ^ (i * 40503u & 0x7f); }
    for (int i = 0; i < L * 9 * 64; i++) Q[i] = (i % 7) * 0.01f;
    int groups[][3] = {{1,1,1},{2,1,0},{3,0,0}};
    for (int g = 0; g < 3; g++) {
        nitems = 0;
        for (int kv = 0; kv < HKV; kv++) { int h0 = 0; for (int j = 0; j < 3 && groups[g][j]; j++) { items[nitems++] = (item){kv, h0, groups[g][j]}; h0 += groups[g][j]; } }
        double best = run();
        printf("n_kv %lld, items of %d/%d/%d heads: %.2f ms per token, %.2f us per cached position\n", (long long)NKV,
               groups[g][0], groups[g][1], groups[g][2], best * 1e3, best * 1e6 / NKV);
    }
    shares = 1;
    double best = run();
    printf("n_kv %lld, one share of the 9 query vectors per thread: %.2f ms per token, %.2f us per cached position\n",
           (long long)NKV, best * 1e3, best * 1e6 / NKV);
    return 0;
}
