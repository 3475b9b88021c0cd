// Persistent workers that spin briefly before sleeping.
//
// Why not Dispatch's concurrentPerform: a training step of a small student
// is a few hundred short parallel passes (batch norm, ReLU, pooling, GEMM
// chunks of ~10-100 us each), and concurrentPerform wakes a parked worker
// for every one of them; the wake-ups cost more than the passes save (perf:
// ~12 % of a student step in the scheduler). Here a worker that has just
// finished a pass spins for ~50 us (2000 pause instructions: 47 us on the
// development machine) waiting for the next one, as OpenMP
// runtimes do, and only then sleeps on a condition variable.
//
// Spinning must not cost a busy machine (`make -j2` runs two stages at
// once): every 16th round of every spin wait is a sched_yield, and the
// caller, once its own chunks are done, also sleeps after the spin instead
// of spinning on a helper that was descheduled mid-chunk. Measured with the
// quick pipeline's student (40 epochs): alone 2.7-3.2 s against 3.2-4.0 s
// with Dispatch; two at once 6.0-6.4 s against 6.6-7.6 s; four at once on
// 2 cores 13.7-13.8 s against 13.4-14.7 s. Without the yields, two at once
// took 8.3-9.4 s and four 28.7-29.3 s.
//
// Results never depend on this pool: which worker runs a chunk does not
// change what the chunk computes (NN's Parallel.swift).
#include "worker_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

enum { max_helpers = 63, spin_rounds = 2000 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;
static long started = 0;            // helper threads running (under lock)
static long start_generation[max_helpers + 1];  // the generation a helper was created in

// The current job. Its fields are written by the caller before it publishes
// the job in `state` (release) and read by its helpers after they see it
// (acquire). `state` = generation·256 + number of helpers taking part, in
// one word: a helper that is not part of a job may see it late, while the
// caller already prepares the next one, and must not mix the two; a helper
// that is part of a job is waited for, so the job's fields stay put for it.
static nn_chunk_fn job_fn;
static void *job_context;
static long job_chunks;
static atomic_long state = 0;
static atomic_long next_chunk = 0;
static atomic_long active = 0;      // helpers still inside the job
static atomic_int busy = 0;         // a job is in flight

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// One round of a spin wait: mostly a pause, every 16th round a yield, so
/// that a spinning thread gives its core to a runnable one (another stage
/// under `make -j2`, or the very helper the caller is waiting for).
static inline void spin_round(int round) {
    if ((round & 15) == 15) { sched_yield(); return; }
    cpu_relax();
}

static void take_chunks(long worker) {
    for (;;) {
        long c = atomic_fetch_add_explicit(&next_chunk, 1, memory_order_relaxed);
        if (c >= job_chunks) break;
        job_fn(job_context, c, worker);
    }
}

static void *helper_main(void *arg) {
    // Jobs from the one current at creation on (not the one current when the
    // thread gets to run: it may already count on this helper).
    long id = (long)arg;
    pthread_mutex_lock(&lock);
    long seen = start_generation[id];
    pthread_mutex_unlock(&lock);
    for (;;) {
        long s;
        int spins = 0;
        while (((s = atomic_load_explicit(&state, memory_order_acquire)) >> 8) == seen) {
            if (++spins < spin_rounds) { spin_round(spins); continue; }
            pthread_mutex_lock(&lock);
            while (((s = atomic_load_explicit(&state, memory_order_acquire)) >> 8) == seen)
                pthread_cond_wait(&wake, &lock);
            pthread_mutex_unlock(&lock);
            break;
        }
        seen = s >> 8;
        if (id <= (s & 255)) {
            take_chunks(id);
            if (atomic_fetch_sub_explicit(&active, 1, memory_order_acq_rel) == 1) {
                pthread_mutex_lock(&lock);
                pthread_cond_broadcast(&done);
                pthread_mutex_unlock(&lock);
            }
        }
    }
    return 0;
}

/// Starts helpers up to `n` (once; they never exit). Returns how many run.
static long ensure_helpers(long n) {
    if (n > max_helpers) n = max_helpers;
    pthread_mutex_lock(&lock);
    while (started < n) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        start_generation[started + 1] = atomic_load_explicit(&state, memory_order_relaxed) >> 8;
        int failed = pthread_create(&t, &attr, helper_main, (void *)(started + 1));
        pthread_attr_destroy(&attr);
        if (failed) break;
        started += 1;
    }
    long have = started;
    pthread_mutex_unlock(&lock);
    return have < n ? have : n;
}

void nn_pool_run(long chunks, long workers, nn_chunk_fn fn, void *context) {
    int expected = 0;
    if (workers <= 1 || chunks <= 1
        || !atomic_compare_exchange_strong_explicit(&busy, &expected, 1, memory_order_acquire, memory_order_relaxed)) {
        for (long c = 0; c < chunks; c++) fn(context, c, 0);
        return;
    }
    long helpers = ensure_helpers((workers < chunks ? workers : chunks) - 1);
    job_fn = fn;
    job_context = context;
    job_chunks = chunks;
    atomic_store_explicit(&next_chunk, 0, memory_order_relaxed);
    atomic_store_explicit(&active, helpers, memory_order_relaxed);
    long generation = (atomic_load_explicit(&state, memory_order_relaxed) >> 8) + 1;
    pthread_mutex_lock(&lock);
    atomic_store_explicit(&state, generation * 256 + helpers, memory_order_release);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    take_chunks(0);
    // Wait for the helpers still in a chunk: spin, then sleep (a helper
    // descheduled mid-chunk on a busy machine must not cost a spinning core).
    for (int spins = 1; atomic_load_explicit(&active, memory_order_acquire) > 0; spins++) {
        if (spins < spin_rounds) { spin_round(spins); continue; }
        pthread_mutex_lock(&lock);
        while (atomic_load_explicit(&active, memory_order_acquire) > 0) pthread_cond_wait(&done, &lock);
        pthread_mutex_unlock(&lock);
    }
    atomic_store_explicit(&busy, 0, memory_order_release);
}
