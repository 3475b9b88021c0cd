// bench-nn: training and inference throughput of the default teacher and
// student, convolution GFLOP/s against sgemm's own, per-layer time, and
// memory over many steps. Release build:
//   swift build -c release && .build/release/bench-nn [--profile]
// Figures: best and median step over --steps timed steps (the best is the
// one least disturbed on a shared machine), and the process CPU time per
// step (all threads), which does not count time lost to other processes.
// --block-kib / --no-split select the convolution's execution variants
// (0 = one whole-batch GEMM per product; --no-split = one chunk on one
// thread). --threads sets the layers' thread count (default: every core);
// OpenBLAS is single-threaded in every process linking NN, so the sgemm
// figures are one core's. The teacher is measured twice in the same run:
// with the library's convolution algorithm (Winograd F(2×2,3×3) for the
// 3×3 stride-1 layers from 16 channels, or --conv-algorithm) and with
// every convolution by im2col ("teacher-im2col"), and the ratio printed.
// --winograd-block-kib sets the Winograd block size. When `python3 -c "import torch"` works, the same
// steps run in PyTorch eager (bench/torch_bench.py) with the same thread
// count in the same run, and the ratios are printed.
import ArgumentParser
import CLIKit
import Foundation
import COpenBLAS
import NN

#if canImport(Glibc)
import Glibc
#endif

/// CPU seconds used by the whole process (all threads): under contention
/// from other processes this, unlike wall time, still measures our work.
func cpuNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// A field of /proc/self/status in MiB (VmHWM = peak resident, VmRSS = now).
func procStatusMiB(_ field: String) -> Double {
    guard let f = fopen("/proc/self/status", "r") else { return .nan }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 512)
    while fgets(&line, 512, f) != nil {
        let s = String(cString: line)
        if s.hasPrefix(field + ":") {
            let kb = s.split(separator: " ").compactMap { Double($0) }.first ?? .nan
            return kb / 1024
        }
    }
    return .nan
}

func randomTensor(_ shape: [Int], rng: inout RNG) -> Tensor {
    let n = shape.reduce(1, *)
    var t = Tensor(shape: shape)
    t.data.withUnsafeMutableBufferPointer { p in
        for i in 0..<n { p[i] = rng.uniform() * 2 - 1 }
    }
    return t
}

/// dL/dz of the mean softmax cross-entropy, (softmax(z) − onehot(y))/B.
func crossEntropyGradient(_ z: Tensor, labels: [Int], into g: inout Tensor) {
    let b = z.shape[0], k = z.shape[1]
    if g.shape != z.shape { g = Tensor(shape: z.shape) }
    z.data.withUnsafeBufferPointer { zp in
        g.data.withUnsafeMutableBufferPointer { gp in
            for i in 0..<b {
                var m = -Float.infinity
                for c in 0..<k { m = max(m, zp[i * k + c]) }
                var s: Float = 0
                for c in 0..<k { let e = expf(zp[i * k + c] - m); gp[i * k + c] = e; s += e }
                for c in 0..<k { gp[i * k + c] = (gp[i * k + c] / s - (c == labels[i] ? 1 : 0)) / Float(b) }
            }
        }
    }
}

/// Multiply-accumulates of every convolution for one image forward.
func convMACs(_ model: Model) -> Double {
    var shape = model.inputShape
    var macs = 0.0
    for (layer, out) in zip(model.layers, model.layerShapes) {
        if let conv = layer as? Conv2D {
            macs += Double(out[0] * out[1] * out[2]) * Double(conv.kernel * conv.kernel * conv.inChannels)
        }
        shape = out
    }
    _ = shape
    return macs
}

/// GFLOP/s of one sgemm C(m×n) = A(m×k)·B(k×n), best of `reps`.
func gemmGflops(m: Int, n: Int, k: Int, reps: Int = 5) -> Double {
    var rng = RNG(seed: 1)
    let a = (0..<(m * k)).map { _ in rng.uniform() }
    let b = (0..<(k * n)).map { _ in rng.uniform() }
    var c = [Float](repeating: 0, count: m * n)
    var best = Double.infinity
    for _ in 0..<reps {
        let t0 = now()
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1,
                                ap.baseAddress, Int32(k), bp.baseAddress, Int32(n), 0, cp.baseAddress, Int32(n))
                }
            }
        }
        best = min(best, now() - t0)
    }
    return 2 * Double(m) * Double(n) * Double(k) / best / 1e9
}

/// The layout decision (see Tensor.swift): a 3×3 conv (the teacher's first
/// and last stage), as (a) NHWC: one im2col of the batch and ONE gemm
/// (B·H·W)×(9·Cin)·(9·Cin)×Cout, vs (b) NCHW: per image an im2col to
/// (9·Cin)×(H·W) and a gemm Cout×(9·Cin)·(9·Cin)×(H·W) (the batch cannot be
/// folded without a transpose because the output must stay CHW).
func layoutComparison(batch: Int, size: Int, cin: Int, cout: Int) {
    let (h, w, k) = (size, size, 3)
    var rng = RNG(seed: 2)
    let x = randomTensor([batch, h, w, cin], rng: &rng)
    // One GEMM over the whole batch (single-threaded: OpenBLAS never
    // threads), as the layout argument goes; then the library's default
    // (blocked, image chunks spread over the threads).
    let conv = Conv2D(name: "nhwc", inChannels: cin, outChannels: cout, kernel: k, rng: &rng)
    conv.patchBlockBytes = Int.max
    conv.parallelThreshold = Int.max
    let blocked = Conv2D(name: "nhwc-blocked", inChannels: cin, outChannels: cout, kernel: k, rng: &rng)
    // NCHW path: per image, im2col (rows (c,ky,kx), columns (oy,ox); each
    // (row, oy) one contiguous shifted copy) and one gemm.
    let kk = k * k * cin, hw = h * w
    var cols = [Float](repeating: 0, count: kk * hw)
    var y = [Float](repeating: 0, count: batch * cout * hw)
    let wt = randomTensor([cout, kk], rng: &rng).data
    let xc = x.data  // contents irrelevant for timing; read as CHW
    func nchw() {
        xc.withUnsafeBufferPointer { xp in
            cols.withUnsafeMutableBufferPointer { cp in
                y.withUnsafeMutableBufferPointer { yp in
                    wt.withUnsafeBufferPointer { wp in
                        for b in 0..<batch {
                            let xb = xp.baseAddress! + b * cin * hw
                            for c in 0..<cin { for ky in 0..<k { for kx in 0..<k {
                                let row = cp.baseAddress! + ((c * k + ky) * k + kx) * hw
                                let ox0 = max(0, 1 - kx), ox1 = min(w, w + 1 - kx)
                                for oy in 0..<h {
                                    let iy = oy + ky - 1
                                    let dst = row + oy * w
                                    if iy < 0 || iy >= h { dst.update(repeating: 0, count: w); continue }
                                    if ox0 > 0 { dst.update(repeating: 0, count: ox0) }
                                    (dst + ox0).update(from: xb + (c * h + iy) * w + ox0 + kx - 1, count: ox1 - ox0)
                                    if ox1 < w { (dst + ox1).update(repeating: 0, count: w - ox1) }
                                }
                            } } }
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cout), Int32(hw), Int32(kk), 1,
                                        wp.baseAddress, Int32(kk), cp.baseAddress, Int32(hw), 0,
                                        yp.baseAddress! + b * cout * hw, Int32(hw))
                        }
                    }
                }
            }
        }
    }
    // Round-robin, best of 15 each: the variants see the same machine load.
    var best = Double.infinity, bestBlocked = Double.infinity, bestNCHW = Double.infinity
    for rep in 0..<16 {
        var t0 = now()
        _ = conv.forward(x, training: true)
        if rep > 0 { best = min(best, now() - t0) }
        t0 = now()
        _ = blocked.forward(x, training: true)
        if rep > 0 { bestBlocked = min(bestBlocked, now() - t0) }
        t0 = now()
        nchw()
        if rep > 0 { bestNCHW = min(bestNCHW, now() - t0) }
    }
    let flop: Double = 2.0 * Double(batch * hw * kk * cout)
    let g1: Double = flop / best / 1e9, g2: Double = flop / bestNCHW / 1e9, g3: Double = flop / bestBlocked / 1e9
    let ms1: Double = best * 1e3, ms2: Double = bestNCHW * 1e3, ms3: Double = bestBlocked * 1e3
    print(String(format: "layout  conv3x3 %d→%d @%d×%d forward, batch %d, im2col + gemm: NHWC one gemm %.2f ms (%.0f GFLOP/s), NCHW per-image gemms %.2f ms (%.0f GFLOP/s); NHWC blocked+split (default) %.2f ms (%.0f GFLOP/s)",
                 cin, cout, size, size, batch, ms1, g1, ms2, g2, ms3, g3))
}

extension ConvAlgorithm: ExpressibleByArgument {}

struct BenchNN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-nn",
        abstract: "Throughput of training steps and inference for the default teacher and student.",
        discussion: exitStatusHelp,
        version: toolVersion)

    @Option(help: "Timed training steps per model.") var steps = 20
    @Option(help: "Batch size.") var batch = 64
    @Option(help: "Total teacher training steps of the memory check (RSS is read after 50 and after this many).")
    var memorySteps = 1000
    @Flag(help: "Print a per-layer time profile of one training step.") var profile = false
    @Option(help: "Conv patch-matrix block in KiB per GEMM (0 = whole batch in one GEMM; default: the library's).")
    var blockKib: Int?
    @Flag(help: "Keep each convolution in one chunk on one thread (default: image chunks over the threads).")
    var noSplit = false
    @Option(help: "Threads for the layers (default: every core).") var threads: Int?
    @Option(help: "Winograd block (transformed input + products) in KiB (default: the library's).")
    var winogradBlockKib: Int?
    @Option(help: "Winograd tiles per image chunk below which a batch is cut into fewer chunks (default: the library's).")
    var winogradMinChunkTiles: Int?
    @Option(help: "Algorithm of the 3×3/stride 1 convolutions in every model but teacher-im2col: im2col, winograd (F(2×2, 3×3)), winograd4 (F(4×4, 3×3)) or auto (default: the library's).")
    var convAlgorithm: ConvAlgorithm?
    @Option(help: "Comma-separated subset of: gemm, layout, teacher, teacher-im2col, student, teacher-nobn, memory, torch.")
    var only = "gemm,layout,teacher,teacher-im2col,student,teacher-nobn,memory,torch"
    @Option(help: "PyTorch side of the comparison (run when python3 can import torch).")
    var torchScript: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("bench/torch_bench.py").path

    /// Best training and inference images/s per model, for the PyTorch ratios.
    final class Results { var train: [String: Double] = [:]; var infer: [String: Double] = [:] }
    let results = Results()

    enum CodingKeys: String, CodingKey {
        case steps, batch, memorySteps, profile, blockKib, noSplit, threads, winogradBlockKib, winogradMinChunkTiles,
             convAlgorithm, only, torchScript
    }

    func run() throws {
        let sections = Set(only.split(separator: ",").map(String.init))
        let known: Set = ["gemm", "layout", "teacher", "teacher-im2col", "student", "teacher-nobn", "memory", "torch"]
        if let bad = sections.subtracting(known).sorted().first {
            throw ValidationError("--only: unknown section `\(bad)`; choose from \(known.sorted().joined(separator: ", "))")
        }
        if let threads { ComputeThreads.configure(threads) }
        print("bench-nn: batch \(batch), \(steps) timed steps, OpenBLAS core \(OpenBLASInfo.coreName), layer threads \(ComputeThreads.count), OpenBLAS threads \(OpenBLASInfo.threads)")
        if sections.contains("gemm") {
            // Whole-model im2col shapes, then the teacher's Winograd block
            // products (tiles × Cin · Cin × Cout at 1 MiB blocks).
            for (m, n, k) in [(2048, 2048, 2048), (65536, 32, 288), (16384, 64, 576), (4096, 128, 1152),
                              (256, 32, 32), (128, 64, 64), (64, 128, 128), (2048, 32, 32), (512, 128, 128)] {
                let gf: Double = gemmGflops(m: m, n: n, k: k)
                print(String(format: "sgemm   %5d×%4d×%4d: %.1f GFLOP/s", m, n, k, gf))
            }
        }
        if sections.contains("layout") {
            layoutComparison(batch: batch, size: 32, cin: 32, cout: 32)
            layoutComparison(batch: batch, size: 8, cin: 128, cout: 128)
        }
        let teacher = "c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20"
        let student = "c8,p,c16,p,c16,p,gap,fc5"
        if sections.contains("teacher") { try benchModel("teacher", teacher, classes: 20, batchNorm: true) }
        if sections.contains("teacher-im2col") {
            // The same teacher with the 3×3 convolutions by im2col, for the
            // Winograd/im2col ratio (the algorithm decision of Conv2D).
            try benchModel("teacher-im2col", teacher, classes: 20, batchNorm: true, algorithm: .im2col)
            let main = convAlgorithm ?? Conv2D.defaultAlgorithm
            if let a = results.train["teacher"], let b = results.train["teacher-im2col"],
               let ia = results.infer["teacher"], let ib = results.infer["teacher-im2col"] {
                print(String(format: "ratio   teacher %@/im2col: train %.2f× (%.0f vs %.0f img/s), inference %.2f× (%.0f vs %.0f img/s)",
                             main.rawValue as NSString, a / b, a, b, ia / ib, ia, ib))
            }
        }
        if sections.contains("student") { try benchModel("student", student, classes: 5, batchNorm: true) }
        if sections.contains("teacher-nobn") { try benchModel("teacher-nobn", teacher, classes: 20, batchNorm: false) }
        if sections.contains("memory") { try memoryCheck(teacher) }
        if sections.contains("torch") { compareWithTorch() }
    }

    /// Runs bench/torch_bench.py with this run's thread count and prints
    /// ours / PyTorch for every model measured here.
    func compareWithTorch() {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import torch"]
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { print("torch   skipped: python3 not found"); return }
        probe.waitUntilExit()
        guard probe.terminationStatus == 0 else { print("torch   skipped: python3 cannot import torch"); return }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", torchScript, String(ComputeThreads.count), String(batch), String(steps)]
        let pipe = Pipe()
        p.standardOutput = pipe
        guard (try? p.run()) != nil else { print("torch   skipped: cannot run \(torchScript)"); return }
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { print("torch   failed (exit \(p.terminationStatus))"); return }
        for line in text.split(separator: "\n") {
            guard line.hasPrefix("RESULT ") else { print(line); continue }
            var fields: [String: String] = [:]
            for kv in line.dropFirst(7).split(separator: " ") {
                let parts = kv.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            guard let name = fields["name"], let tt = Double(fields["train_img_s"] ?? ""),
                  let ti = Double(fields["infer_img_s"] ?? "") else { continue }
            let ours = name == "teacher-nchw" ? "teacher" : name
            guard let ot = results.train[ours], let oi = results.infer[ours] else { continue }
            print(String(format: "ratio   ours/torch %@: train %.2f× (%.0f vs %.0f img/s), inference %.2f× (%.0f vs %.0f img/s)",
                         name as NSString, ot / tt, ot, tt, oi / ti, oi, ti))
        }
    }

    func configure(_ model: Model, algorithm: ConvAlgorithm? = nil) {
        for case let conv as Conv2D in model.layers {
            if let a = algorithm ?? convAlgorithm { conv.algorithm = a }
            if let kib = winogradBlockKib { conv.winogradBlockBytes = kib << 10 }
            if let t = winogradMinChunkTiles { conv.winogradMinChunkTiles = max(1, t) }
            if let kib = blockKib { conv.patchBlockBytes = kib == 0 ? Int.max : kib << 10 }
            if noSplit { conv.parallelThreshold = Int.max }
        }
    }

    func benchModel(_ label: String, _ arch: String, classes: Int, batchNorm: Bool,
                    algorithm: ConvAlgorithm? = nil) throws {
        let model = try Model(architecture: arch, inputShape: [32, 32, 3], batchNorm: batchNorm, seed: 1)
        configure(model, algorithm: algorithm)
        var rng = RNG(seed: 3)
        let x = randomTensor([batch, 32, 32, 3], rng: &rng)
        let labels = (0..<batch).map { _ in rng.int(below: classes) }
        var g = Tensor(shape: [batch, classes])
        let optimizer = try AdamW(parameters: model.parameters, learningRate: 1e-3, weightDecay: 0)
        func step() {
            let z = model.forward(x, training: true)
            crossEntropyGradient(z, labels: labels, into: &g)
            model.zeroGrad()
            model.backward(g)
            optimizer.step()
        }
        for _ in 0..<3 { step() }
        // Each step timed alone: the minimum is the figure least disturbed
        // by other processes on a shared machine; the median is printed too.
        var trainTimes: [Double] = [], inferTimes: [Double] = [], cpuTimes: [Double] = []
        for _ in 0..<steps {
            let c0 = cpuNow(), t0 = now(); step(); trainTimes.append(now() - t0); cpuTimes.append(cpuNow() - c0)
        }
        cpuTimes.sort()
        // Inference = Model.inference (evaluation mode, no backward state).
        for _ in 0..<2 { _ = model.inference(x) }
        for _ in 0..<steps {
            let t0 = now(); _ = model.inference(x); inferTimes.append(now() - t0)
        }
        trainTimes.sort(); inferTimes.sort()
        let train = trainTimes[0], trainMedian = trainTimes[trainTimes.count / 2]
        let infer = inferTimes[0], inferMedian = inferTimes[inferTimes.count / 2]
        let macs = convMACs(model) * Double(batch)
        // Training: forward, dW and dX GEMMs (dX skipped for the first conv).
        let firstConv = model.layers.first as? Conv2D
        var firstMACs = 0.0
        if let c = firstConv { firstMACs = Double(batch * 32 * 32 * c.outChannels * 27) }
        let trainFlop: Double = 2 * (3 * macs - firstMACs)
        let trainMs: Double = train * 1e3, trainRate: Double = Double(batch) / train
        let trainMedRate: Double = Double(batch) / trainMedian
        let trainG: Double = trainFlop / train / 1e9
        let inferRate: Double = Double(batch) / infer, inferG: Double = 2 * macs / infer / 1e9
        let inferMedRate: Double = Double(batch) / inferMedian
        let cpuMs: Double = cpuTimes[0] * 1e3
        results.train[label] = trainRate
        results.infer[label] = inferRate
        print(String(format: "%@: train %.1f ms/step = %.0f img/s best (median %.0f img/s), conv 2·MACs/step time %.1f GFLOP/s, CPU %.1f ms/step; inference %.0f img/s best (median %.0f), %.1f GFLOP/s; %d parameters",
                     label, trainMs, trainRate, trainMedRate, trainG, cpuMs, inferRate, inferMedRate, inferG, model.parameterCount))
        if profile { profileStep(model, x: x, labels: labels, classes: classes) }
    }

    /// Times every layer's forward and backward within one training step.
    func profileStep(_ model: Model, x: Tensor, labels: [Int], classes: Int) {
        let n = model.layers.count
        var fwd = [Double](repeating: 0, count: n), bwd = [Double](repeating: 0, count: n)
        var g = Tensor(shape: [batch, classes])
        let reps = max(steps / 2, 3)
        for _ in 0..<reps {
            var h = x
            for (i, l) in model.layers.enumerated() {
                let t = now(); h = l.forward(h, training: true); fwd[i] += now() - t
            }
            crossEntropyGradient(h, labels: labels, into: &g)
            var d = g
            for i in stride(from: n - 1, through: 0, by: -1) {
                let t = now()
                if i == 0 { model.layers[0].backwardParameters(d) } else { d = model.layers[i].backward(d) }
                bwd[i] += now() - t
            }
        }
        var convTime = 0.0, convFlop = 0.0
        for (i, l) in model.layers.enumerated() {
            var flops = ""
            if let c = l as? Conv2D {
                let out = model.layerShapes[i]
                let f: Double = 2.0 * Double(batch * out[0] * out[1] * out[2] * c.kernel * c.kernel * c.inChannels)
                let tf: Double = fwd[i] / Double(reps), tb: Double = bwd[i] / Double(reps)
                let fb: Double = i == 0 ? f : 2 * f
                flops = String(format: "  fwd %.0f GFLOP/s, bwd %.0f GFLOP/s", f / tf / 1e9, fb / tb / 1e9)
                convTime += tf + tb
                convFlop += f + fb
            }
            let tf: Double = fwd[i] / Double(reps) * 1e3, tb: Double = bwd[i] / Double(reps) * 1e3
            print(l.name.padding(toLength: 12, withPad: " ", startingAt: 0)
                  + String(format: " fwd %7.2f ms  bwd %7.2f ms", tf, tb) + flops)
        }
        let convMs: Double = convTime * 1e3, convG: Double = convFlop / convTime / 1e9
        print(String(format: "  convolutions alone: %.1f ms per step, %.1f GFLOP/s", convMs, convG))
    }

    /// RSS after 50 and after `memorySteps` teacher training steps: flat when
    /// every workspace is reused.
    func memoryCheck(_ arch: String) throws {
        let model = try Model(architecture: arch, inputShape: [32, 32, 3], seed: 1)
        configure(model)
        var rng = RNG(seed: 4)
        let x = randomTensor([batch, 32, 32, 3], rng: &rng)
        let labels = (0..<batch).map { _ in rng.int(below: 20) }
        var g = Tensor(shape: [batch, 20])
        var rss50 = 0.0
        let optimizer = try AdamW(parameters: model.parameters, learningRate: 1e-3, weightDecay: 0)
        let t0 = now()
        for s in 1...max(memorySteps, 50) {
            let z = model.forward(x, training: true)
            crossEntropyGradient(z, labels: labels, into: &g)
            model.zeroGrad()
            model.backward(g)
            optimizer.step()
            if s == 50 { rss50 = procStatusMiB("VmRSS") }
        }
        let elapsed: Double = now() - t0
        let total = max(memorySteps, 50)
        let rss: Double = procStatusMiB("VmRSS"), hwm: Double = procStatusMiB("VmHWM")
        let rate: Double = Double(batch * total) / elapsed
        print(String(format: "memory  teacher: RSS after 50 steps %.1f MiB, after %d steps %.1f MiB; peak (VmHWM) %.1f MiB; %.0f img/s over the run",
                     rss50, total, rss, hwm, rate))
    }
}

runMain(BenchNN.self)
