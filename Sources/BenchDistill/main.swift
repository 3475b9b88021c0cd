import ArgumentParser
import Distill
import Foundation
import NN
import ShapesWorld
import StageKit
import Subspace
import TensorIO

/// `bench-distill`: seconds per training epoch of the distillation methods on
/// the default student and the default distillation split (1200 synthetic
/// images), with the teacher's outputs computed once beforehand (timed
/// separately). Target: a distillation epoch costs at most 1.5× a
/// `label-only` epoch. Build with `-c release`.
struct BenchDistill: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-distill",
                                                    abstract: "Seconds per distillation epoch, per method.")

    @Option(help: "Comma list of methods.") var methods = "label-only,kd,fitnet,attention,subdistill"
    @Option(help: "Epochs timed per method.") var epochs = 3
    @Option(help: "Training images per class (240: the default 1200-image split).") var perClass = 240
    @Option(help: "Student architecture.") var arch = "c8,p,c16,p,c16,p,gap,fc5"
    @Option(help: "Teacher architecture (random weights: the timing does not depend on them).")
    var teacherArch = "c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20"
    @Option(help: "Threads.") var threads: Int?

    func run() throws {
        let nThreads = Threads.configure(requested: threads)
        let dir = NSTemporaryDirectory() + "bench-distill-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var sc = SynthesisConfig()
        sc.seed = 0
        sc.family = "gratings"
        sc.splits = [.distillTrain, .distillVal]
        sc.perClass.distillTrain = perClass
        sc.perClass.distillVal = 60
        sc.outputDirectory = dir
        try SynthesisPlan.prepare(sc).writeAll(to: dir, contactSheets: false)
        let train = try Dataset(path: dir + "/distill-train.npz")
        let val = try Dataset(path: dir + "/distill-val.npz")
        let teacher = try Model(architecture: teacherArch, inputShape: train.imageShape, seed: 0)
        let student = try Model(architecture: arch, inputShape: train.imageShape, seed: 0)
        // Random orthonormal bases (timing only): k = the paired student layer's channels.
        var bases: [String: SubspaceBasis] = [:]
        var rng = RNG(seed: 1)
        for (t, s) in zip(teacher.tapNames, student.tapNames) {
            let d = teacher.tapShape(t)[2], k = student.tapShape(s)[2]
            let q = OrthogonalParameter(name: "u", rows: d, cols: k, initialization: .random, rng: &rng).value
            bases[t] = try SubspaceBasis(layer: t, kind: .prcaposdef, channels: d, k: k, uk: q.map(Double.init),
                                         mean: [Double](repeating: 0, count: d), sigma2: [Double](repeating: 1, count: k),
                                         eigenvalues: [Double](repeating: 1, count: d), contextRank: d, sampleCount: 1)
        }
        print("bench-distill: \(train.count) training images, \(val.count) validation images, student \(arch), \(nThreads) threads, \(epochs) epochs per method")
        print("| method | s/epoch | × label-only | teacher outputs (once), s |")
        print("|---|---|---|---|")
        var base: Double?
        for name in methods.split(separator: ",").map(String.init) {
            var c = DistillConfig(method: try DistillMethod(parsing: name))
            c.architecture = arch
            c.epochs = epochs
            let t0 = ProgressLine.now()
            let trainer = try DistillTrainer.prepare(config: c, teacher: teacher, teacherLogShift: nil,
                                                     classIndices: train.subtaskClasses ?? Array(0..<5),
                                                     train: train, val: val, bases: bases)
            let t1 = ProgressLine.now()
            _ = try trainer.run()
            let perEpoch = (ProgressLine.now() - t1) / Double(epochs)
            if c.method == .labelOnly { base = perEpoch }
            let ratio = base.map { String(format: "%.2f", perEpoch / $0) } ?? "–"
            print(String(format: "| %@ | %.3f | %@ | %.2f |", name, perEpoch, ratio, c.method.usesTeacher ? t1 - t0 : 0))
        }
    }
}

BenchDistill.main()
