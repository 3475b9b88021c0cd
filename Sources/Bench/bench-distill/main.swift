import ArgumentParser
import CLIKit
import Distill
import Foundation
import NN
import ShapesWorld
import StageKit
import Subspace
import TensorIO

/// `bench-distill`: seconds per training epoch (including its validation
/// pass) of the distillation methods on the default student and the default
/// distillation split (1200 synthetic images), with the teacher's outputs
/// computed once beforehand (timed separately). Target: a distillation
/// epoch costs at most 1.5× a `label-only` epoch (the first method listed
/// is the reference). Build with `-c release`:
///
///     swift build -c release && .build/release/bench-distill
struct BenchDistill: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-distill",
                                                    abstract: "Seconds per distillation epoch, per method.",
                                                    discussion: exitStatusHelp, version: toolVersion)

    @Option(help: "Comma list of methods.") var methods = "label-only,kd,fitnet,attention,subdistill"
    @Option(help: "Epochs per run (one run per method and round).") var epochs = 2
    @Option(help: "Rounds over all methods.") var rounds = 3
    @Option(help: "Training images per class (240: the default 1200-image split).") var perClass = 240
    @Option(help: "Student architecture.") var arch = "c8,p,c16,p,c16,p,gap,fc5"
    @Option(help: "Teacher architecture (random weights: the timing does not depend on them).")
    var teacherArch = "c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20"
    @OptionGroup var threadsOption: ThreadsOption

    func run() throws {
        let nThreads = Threads.configure(requested: threadsOption.threads)
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
        print("bench-distill: \(train.count) training images, \(val.count) validation images, student \(arch), \(nThreads) threads; \(rounds) rounds × \(epochs) epochs per method, methods interleaved")
        // Teacher outputs once per method (timed apart), then the methods in
        // turn, several rounds, so that load from other processes spreads
        // over all of them; per-epoch wall times from the end-of-epoch log.
        let names = methods.split(separator: ",").map(String.init)
        var trainers: [DistillTrainer] = []
        var cacheSeconds: [Double] = []
        for name in names {
            var c = DistillConfig(method: try DistillMethod(parsing: name))
            c.architecture = arch
            c.epochs = epochs
            let t0 = ProgressLine.now()
            trainers.append(try DistillTrainer.prepare(config: c, teacher: teacher, teacherLogShift: nil,
                                                       classIndices: train.subtaskClasses ?? Array(0..<5),
                                                       train: train, val: val, bases: bases))
            cacheSeconds.append(c.method.usesTeacher ? ProgressLine.now() - t0 : 0)
        }
        var times = [[Double]](repeating: [], count: names.count)
        for _ in 0..<rounds {
            for (i, t) in trainers.enumerated() {
                var last = ProgressLine.now()
                var hooks = TrainerHooks()
                hooks.log = { line in
                    guard line.contains("val acc") else { return }
                    let now = ProgressLine.now()
                    times[i].append(now - last)
                    last = now
                }
                _ = try t.run(hooks: hooks)
            }
        }
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }
        let baseMin = times[0].min()!, baseMed = median(times[0])
        print("| method | s/epoch (min) | s/epoch (median) | × \(names[0]) (min) | × \(names[0]) (median) | teacher outputs once, s |")
        print("|---|---|---|---|---|---|")
        for (i, name) in names.enumerated() {
            print(String(format: "| %@ | %.3f | %.3f | %.2f | %.2f | %.2f |", name, times[i].min()!, median(times[i]),
                         times[i].min()! / baseMin, median(times[i]) / baseMed, cacheSeconds[i]))
        }
    }
}

runMain(BenchDistill.self)
