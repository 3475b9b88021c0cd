import COpenBLAS
import Dispatch
import Foundation
import Testing
@testable import NN

// Results must not depend on the thread count (ComputeThreads): the same
// seed gives the same bits under `srun -c1`, on 2 cores and on 8. And two
// models trained at once from two threads must not disturb each other.

/// Bit patterns, so that −0 ≠ +0 and any last-bit difference counts.
private func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

/// Everything a training run leaves: parameters, buffers (running
/// statistics), the last step's parameter gradients, its input gradient
/// and its logits, as bit patterns.
private struct RunResult: Equatable {
    var state: [[UInt32]]
    var grads: [[UInt32]]
    var inputGrad: [UInt32]
    var logits: [UInt32]

    /// Entries that differ from `other`, per part ("" when none): a short
    /// failure message instead of printing whole weight arrays.
    func differences(from other: RunResult) -> String {
        func count(_ a: [[UInt32]], _ b: [[UInt32]]) -> Int {
            a.count != b.count ? -1 : zip(a, b).reduce(0) { $0 + ($1.0.count != $1.1.count ? 1 : zip($1.0, $1.1).filter { $0 != $1 }.count) }
        }
        let parts = [("state", count(state, other.state)), ("grads", count(grads, other.grads)),
                     ("inputGrad", count([inputGrad], [other.inputGrad])), ("logits", count([logits], [other.logits]))]
        return parts.filter { $0.1 != 0 }.map { "\($0.0): \($0.1) entries differ" }.joined(separator: ", ")
    }
}

/// `steps` SGD steps (momentum, weight decay) of cross-entropy training on
/// fixed random data, with `threads` threads for the layers. `configure`
/// may change per-layer options (the same for every run compared).
private func train(arch: String, input: [Int], classes: Int, batch: Int, steps: Int, threads: Int,
                   seed: UInt64, configure: (Model) -> Void = { _ in }) throws -> RunResult {
    try ComputeThreads.withCount(threads) {
        #expect(ComputeThreads.count == threads)
        let model = try Model(architecture: arch, inputShape: input, seed: seed)
        configure(model)
        let opt = try SGD(parameters: model.parameters, learningRate: 0.05, momentum: 0.9, weightDecay: 1e-3)
        var rng = RNG(seed: seed, stream: 99)
        let x = randomTensor([batch] + input, seed: seed &+ 1000)
        let labels = (0..<batch).map { _ in rng.int(below: classes) }
        var dx: Tensor?
        var logits = Tensor(shape: [0])
        for s in 0..<steps {
            logits = model.forward(x, training: true)
            let (_, g) = try Loss.crossEntropy(logits, labels: labels)
            opt.zeroGrad()
            dx = model.backward(g, inputGradient: s == steps - 1)
            if s < steps - 1 { opt.step() }
        }
        return RunResult(state: model.state.map { bits($0.values) }, grads: model.parameters.map { bits($0.grad) },
                         inputGrad: bits(dx?.data ?? []), logits: bits(logits.data))
    }
}

/// Small conv-BN model with every path forced: all convolutions split into
/// image chunks (threshold 0), a 1×1 conv, a strided conv, patch blocks of
/// 7 rows (several blocks per chunk, straddling images) and a Winograd conv.
private func smallRun(threads: Int, seed: UInt64 = 5) throws -> RunResult {
    try train(arch: "c8,c8k1,p,c16s2,c12,p,gap,fc4", input: [12, 12, 3], classes: 4, batch: 6, steps: 3,
              threads: threads, seed: seed) { model in
        for case let conv as Conv2D in model.layers {
            conv.parallelThreshold = 0
            conv.winogradMinChunkTiles = 1
            if conv.kernel == 3 && conv.stride == 1 { conv.patchBlockBytes = 7 * 9 * conv.inChannels * 4 }
            // The 16→12 conv by Winograd in blocks of 5 tiles (the 3→8 one stays im2col).
            if conv.kernel == 3 && conv.stride == 1 && conv.inChannels == 16 {
                conv.algorithm = .winograd
                conv.winogradBlockBytes = 5 * 16 * 4 * (16 + 12)
            }
        }
    }
}

@Test func smallConvBNTrainingIsBitIdenticalForOneTwoThreeThreads() throws {
    let one = try smallRun(threads: 1)
    #expect(one.state.count == 4 + 2 * 4 + 2 + 2 * 4)   // conv weights, BN γ/β, fc weight/bias; running stats
    #expect(one.inputGrad.count == 6 * 12 * 12 * 3)
    for t in [2, 3] {
        let r = try smallRun(threads: t)
        // Weights and running statistics after 3 steps, the last step's
        // gradients, input gradient and logits.
        #expect(r.differences(from: one) == "", "\(t) threads")
    }
    // Not vacuous: another seed gives other numbers.
    let other = try smallRun(threads: 2, seed: 6).differences(from: one)
    #expect(other.contains("state"))
}

/// The default teacher at batch 8, one step (forward, backward; the small
/// model above covers steps with updates): its 32×32 convolutions are above
/// the split threshold (8 image chunks), batch norm, ReLU and pooling there
/// exceed one 64 Ki-element chunk, so every parallel pass has several chunks.
@Test func teacherTrainingIsBitIdenticalForOneTwoThreeThreads() throws {
    let arch = "c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20"
    func run(_ t: Int) throws -> RunResult {
        try train(arch: arch, input: [32, 32, 3], classes: 20, batch: 8, steps: 1, threads: t, seed: 11)
    }
    let one = try run(1)
    for t in [2, 3] {
        let diff = try run(t).differences(from: one)
        #expect(diff == "", "teacher, \(t) threads")
    }
}

/// Per-channel reductions over several 64 Ki chunks (batch-norm statistics,
/// bias gradients): the same bits for any thread count, and the partials
/// are really combined (the sums match a Double reference).
@Test func channelReductionsAreBitIdenticalAcrossThreadCounts() {
    let c = 20, n = 13_001 * c   // 4 chunks, the last partial
    #expect(Parallel.chunks(count: n, align: ChannelTiling(channels: c).lanes) == 4)
    let x = randomTensor([n], seed: 77, scale: 2).data.map { $0 + 0.75 }
    let y = randomTensor([n], seed: 78).data
    func sums(_ threads: Int) -> [UInt64] {
        ComputeThreads.withCount(threads) {
            let t = ChannelTiling(channels: c)
            var s = [Double](repeating: 0, count: c), q = s, a = s, d = s, o = s
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeBufferPointer { yp in
                    channelSumAndSquares(xp.baseAddress!, count: n, tiling: t, sum: &s, sumSq: &q)
                    channelSumAndDot(yp.baseAddress!, xp.baseAddress!, count: n, tiling: t, mask: NoMask(), sumA: &a, sumAB: &d)
                    channelSum(xp.baseAddress!, count: n, tiling: t, sumA: &o)
                }
            }
            var col = [Float](repeating: 0, count: c)
            x.withUnsafeBufferPointer { addColumnSums($0.baseAddress!, rows: n / c, cols: c, into: &col) }
            return (s + q + a + d + o).map(\.bitPattern) + col.map { UInt64($0.bitPattern) }
        }
    }
    let one = sums(1)
    #expect(sums(2) == one)
    #expect(sums(3) == one)
    var ref = [Double](repeating: 0, count: c)
    for i in 0..<n { ref[i % c] += Double(x[i]) }
    for ch in 0..<c { #expect(abs(Double(bitPattern: one[ch]) - ref[ch]) < 1e-6 * Double(n)) }
}

/// Two models trained at the same time from two threads (each with 2 layer
/// threads, as parallel tests would) end with exactly the weights of
/// serial one-thread runs.
@Test func concurrentTrainingOfTwoModelsMatchesSerialRuns() throws {
    let serialA = try smallRun(threads: 1, seed: 21)
    let serialB = try smallRun(threads: 1, seed: 22)
    let lock = NSLock()
    var results: [UInt64: RunResult] = [:]
    var failure: Error?
    DispatchQueue.concurrentPerform(iterations: 2) { i in
        let seed: UInt64 = 21 + UInt64(i)
        do {
            // Several rounds so the two trainings overlap in time.
            var r = try smallRun(threads: 2, seed: seed)
            for _ in 0..<2 {
                let again = try smallRun(threads: 2, seed: seed)
                if again != r { r.state = [] }
            }
            lock.lock(); results[seed] = r; lock.unlock()
        } catch {
            lock.lock(); failure = error; lock.unlock()
        }
    }
    #expect(failure == nil)
    #expect(results[21]?.differences(from: serialA) == "")
    #expect(results[22]?.differences(from: serialB) == "")
    #expect(serialA != serialB)
}

/// What the design relies on: OpenBLAS runs single-threaded in this
/// process from load on, and a single-threaded sgemm gives the same bits
/// for the same call whatever the alignment of its operands (so which
/// worker's scratch buffer holds a chunk's patch block does not matter).
@Test func singleThreadedSgemmIsRepeatableAndAlignmentIndependent() {
    #expect(ComputeThreads.blasSetSerialAtLoad)
    #expect(OpenBLASInfo.threads == 1)
    for (m, n, k) in [(227, 32, 288), (56, 128, 1152), (131, 67, 509)] {
        let a = randomTensor([m * k], seed: 1).data, b = randomTensor([k * n], seed: 2).data
        var ref: [UInt32] = []
        for offset in 0..<4 {
            // Operands copied to buffers shifted by `offset` floats.
            var ab = [Float](repeating: 0, count: m * k + 4), bb = [Float](repeating: 0, count: k * n + 4)
            var cb = [Float](repeating: 0, count: m * n + 4)
            ab.replaceSubrange(offset..<(offset + m * k), with: a)
            bb.replaceSubrange((3 - offset)..<(3 - offset + k * n), with: b)
            ab.withUnsafeBufferPointer { ap in
                bb.withUnsafeBufferPointer { bp in
                    cb.withUnsafeMutableBufferPointer { cp in
                        sgemm(false, false, m: m, n: n, k: k, a: ap.baseAddress! + offset, lda: k,
                              b: bp.baseAddress! + 3 - offset, ldb: n, beta: 0, c: cp.baseAddress! + offset, ldc: n)
                    }
                }
            }
            let c = bits(Array(cb[offset..<(offset + m * n)]))
            if offset == 0 { ref = c } else { #expect(c == ref, "\(m)×\(n)×\(k) offset \(offset)") }
        }
    }
}

// MARK: - OpenBLAS's own threading (in a child process: it changes the
// process-wide OpenBLAS thread count, which must never happen while other
// tests run).

/// Shapes of the products the layers issue (conv blocks forward, dW, dX;
/// the fc layer; the student's first conv) and odd shapes.
private let blasShapes: [(Bool, Bool, Int, Int, Int)] = [
    (false, false, 862, 32, 288), (true, false, 288, 32, 862), (false, true, 862, 288, 32),
    (false, false, 455, 64, 576), (false, false, 227, 128, 1152), (true, false, 1152, 128, 227),
    (false, false, 8192, 32, 27), (false, false, 8192, 8, 27), (false, false, 128, 20, 128),
    (true, false, 128, 20, 128), (false, false, 131, 67, 509), (false, false, 3, 1000, 1000),
    (false, false, 777, 777, 777),
]

/// Per shape: entries of C that differ between 1 and 2, and 1 and 3
/// OpenBLAS threads; then sgemv. Runs in the child only.
private func blasThreadingReport() -> (lines: [String], layerShapesDiffer: Bool) {
    var lines: [String] = [], layerDiffer = false
    func run(_ threads: Int32, _ body: () -> Void) { openblas_set_num_threads(threads); body() }
    for (i, (ta, tb, m, n, k)) in blasShapes.enumerated() {
        let a = randomTensor([m * k], seed: UInt64(i)).data, b = randomTensor([k * n], seed: UInt64(i + 100)).data
        var outs: [[UInt32]] = []
        for t: Int32 in [1, 2, 3] {
            var c = [Float](repeating: 0, count: m * n)
            run(t) {
                a.withUnsafeBufferPointer { ap in
                    b.withUnsafeBufferPointer { bp in
                        c.withUnsafeMutableBufferPointer { cp in
                            sgemm(ta, tb, m: m, n: n, k: k, a: ap.baseAddress!, lda: ta ? m : k,
                                  b: bp.baseAddress!, ldb: tb ? k : n, beta: 0, c: cp.baseAddress!, ldc: n)
                        }
                    }
                }
            }
            outs.append(bits(c))
        }
        let d2 = zip(outs[0], outs[1]).filter { $0 != $1 }.count, d3 = zip(outs[0], outs[2]).filter { $0 != $1 }.count
        if i < 10 && d2 + d3 > 0 { layerDiffer = true }
        lines.append("sgemm \(ta ? "T" : "N")\(tb ? "T" : "N") \(m)×\(n)×\(k): \(d2) (2 threads), \(d3) (3 threads) of \(m * n) differ")
    }
    for (trans, m, n) in [(false, 1000, 1000), (true, 1000, 1000), (false, 333, 777), (true, 20000, 50)] {
        let a = randomTensor([m * n], seed: 5).data, x = randomTensor([trans ? m : n], seed: 6).data
        var outs: [[UInt32]] = []
        for t: Int32 in [1, 2] {
            var y = [Float](repeating: 0, count: trans ? n : m)
            run(t) {
                cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), 1, a, Int32(n),
                            x, 1, 0, &y, 1)
            }
            outs.append(bits(y))
        }
        lines.append("sgemv \(trans ? "T" : "N") \(m)×\(n): \(zip(outs[0], outs[1]).filter { $0 != $1 }.count) of \(outs[0].count) differ (2 threads)")
    }
    return (lines, layerDiffer)
}

/// Why OpenBLAS threading is never used: with this OpenBLAS (0.3.21,
/// Haswell kernels) the bits of sgemm depend on its thread count for the
/// layers' own shapes. (If an OpenBLAS upgrade made them equal, this test
/// fails and the note in Parallel.swift needs revisiting.) The child also
/// checks that a fresh process starts with OpenBLAS single-threaded.
@Test func openBLASThreadingChangesBitsForLayerShapes() async {
    let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
        guard OpenBLASInfo.threads == 1, ComputeThreads.blasSetSerialAtLoad else {
            print("OpenBLAS starts with \(OpenBLASInfo.threads) threads")
            exit(2)
        }
        let (lines, differ) = blasThreadingReport()
        for l in lines { print(l) }
        exit(differ ? 0 : 3)
    }
    if let out = result?.standardOutputContent {
        let text = String(decoding: out, as: UTF8.self)
        #expect(text.contains("sgemm NN 128×20×128"), "\(text)")
        print(text)
    }
}

// The worker pool behind every parallel pass (CWorkerPool): each chunk runs
// exactly once, on a worker index below the worker count; a pass started
// inside a chunk, or from several threads at once, still completes.

/// Runs `chunks` chunks on `workers` workers; per chunk the worker index
/// (each chunk writes only its own slot, so no synchronisation is needed).
private func poolPass(_ chunks: Int, workers: Int) -> [Int] {
    var seen = [Int](repeating: -1, count: chunks)
    seen.withUnsafeMutableBufferPointer { s in
        let p = s.baseAddress!
        Parallel.forEachChunk(chunks, workers: workers) { c, w in p[c] = w }
    }
    return seen
}

@Test func workerPoolRunsEveryChunkOnceOnAValidWorker() {
    for (chunks, workers) in [(1, 2), (2, 2), (7, 2), (1000, 2), (50, 3), (5, 8)] {
        let seen = poolPass(chunks, workers: workers)
        #expect(seen.allSatisfy { $0 >= 0 && $0 < min(workers, chunks) }, "\(chunks) chunks on \(workers): \(seen.prefix(10))")
    }
    // Many short passes back to back (the helpers spin between them).
    for _ in 0..<2000 { #expect(poolPass(4, workers: 2).allSatisfy { $0 >= 0 && $0 < 2 }) }
}

@Test func workerPoolHandlesNestedAndConcurrentPasses() {
    // A pass inside a chunk runs on the calling worker.
    var inner = [[Int]](repeating: [], count: 6)
    inner.withUnsafeMutableBufferPointer { s in
        let p = s.baseAddress!
        Parallel.forEachChunk(6, workers: 2) { c, _ in p[c] = poolPass(5, workers: 2) }
    }
    #expect(inner.allSatisfy { $0.count == 5 && $0.allSatisfy { $0 >= 0 && $0 < 2 } })
    // Four threads at once: one gets the pool, the others run serially.
    var results = [[Int]](repeating: [], count: 4)
    results.withUnsafeMutableBufferPointer { s in
        let p = s.baseAddress!
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            var last: [Int] = []
            for _ in 0..<200 { last = poolPass(64, workers: 2) }
            p[i] = last
        }
    }
    #expect(results.allSatisfy { $0.count == 64 && $0.allSatisfy { $0 >= 0 && $0 < 2 } })
}
