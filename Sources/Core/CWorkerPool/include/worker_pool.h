// A fork-join pool of persistent worker threads for NN's Parallel.forEachChunk.
#ifndef WORKER_POOL_H
#define WORKER_POOL_H

/// One chunk of a parallel pass: `chunk` < chunks, `worker` < workers.
typedef void (*nn_chunk_fn)(void *context, long chunk, long worker);

/// Runs fn(context, c, w) once for every chunk c in 0..<chunks on `workers`
/// threads (the caller is worker 0), handing chunks out in order to whichever
/// worker is free; returns when every chunk is done. A call made while the
/// pool serves another call (from inside a chunk, or from another thread)
/// runs its chunks on the calling thread alone.
void nn_pool_run(long chunks, long workers, nn_chunk_fn fn, void *context);

#endif
