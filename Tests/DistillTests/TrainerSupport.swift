import Foundation
@testable import Distill
import NN
import ShapesWorld
import StageKit
import Subspace
import TensorIO

/// Shared test material, built once per test process:
/// - a small gratings subtask (ρ = 0, 5 × 32 training and 5 × 16 validation
///   images) written by ShapesWorld's library as `synthesize` does, then
///   centre-cropped to 16×16 (the middle of the grating disc: the stripes
///   keep their full resolution, so debug-mode training learns in a few
///   dozen steps; labels, meta and the other entries are synthesize's own);
/// - a 5-class teacher trained with labels on the same data (so teacher-only
///   students have something to learn from), and its subspace bases;
/// - a random 20-class teacher (the stage's view: logits cut to the subtask
///   classes of the split metadata), its artifact and subspace files.
/// Models are not thread-safe: every test takes its own copy.
enum Fixture {
    /// A smaller student than the default (half the channels) for speed.
    static let studentArch = "c4,p,c8,p,c8,p,gap,fc5"
    static let teacherArch = "c8,p,c16,p,c16,p,gap,fc5"
    static let stageTeacherArch = "c8,p,c16,p,c16,p,gap,fc20"

    static let dir: String = {
        let dir = NSTemporaryDirectory() + "distill-tests-\(getpid())"
        var c = SynthesisConfig()
        c.seed = 3
        c.family = "gratings"
        c.rho = 0
        // Full-contrast stripes: these tests check that training works, in a
        // few dozen debug-mode steps; the default low contrast (which makes
        // orientation slower to learn than the digit, on purpose) needs more.
        c.gratingContrast = 1...1
        c.splits = [.distillTrain, .distillVal]
        c.perClass.distillTrain = 32
        c.perClass.distillVal = 16
        c.outputDirectory = dir
        do {
            try SynthesisPlan.prepare(c).writeAll(to: dir, contactSheets: false, fixedTime: true)
            for s in ["distill-train", "distill-val"] { try centreCrop(dir + "/\(s).npz", to: 16) }
        } catch { fatalError("fixture data: \(error)") }
        return dir
    }()

    /// Replaces the N×32×32×3 images of a split by their central side×side crops.
    static func centreCrop(_ path: String, to side: Int) throws {
        var a = try NPZ.read(path)
        let img = try a.array("images")
        let (n, h, w) = (img.shape[0], img.shape[1], img.shape[2])
        let (oy, ox) = ((h - side) / 2, (w - side) / 2)
        let src = try img.uint8s()
        var out = [UInt8](repeating: 0, count: n * side * side * 3)
        for i in 0..<n {
            for y in 0..<side {
                for x in 0..<side {
                    for ch in 0..<3 { out[((i * side + y) * side + x) * 3 + ch] = src[((i * h + y + oy) * w + x + ox) * 3 + ch] }
                }
            }
        }
        a.set("images", NDArray(out, shape: [n, side, side, 3]))
        try NPZ.write(a, to: path)
    }

    static var trainPath: String { dir + "/distill-train.npz" }
    static var valPath: String { dir + "/distill-val.npz" }
    static let train: Dataset = { try! Dataset(path: trainPath) }()
    static let val: Dataset = { try! Dataset(path: valPath) }()
    static var subtask: [Int] { train.subtaskClasses! }

    /// A short-run configuration on the fixture (lr 1e-2: few steps in debug builds).
    ///
    /// Batch 8 and evaluation batches of 3 keep every matrix product at most
    /// 2¹⁸ multiply-adds (student conv1 at batch 8: 8·256·27·4 = 221 184;
    /// teacher conv2 at 3 images: 3·64·72·16 = 221 184), which OpenBLAS always
    /// runs on one thread, and every convolution below NN's parallel split.
    /// Reason: OpenBLAS's sgemm gives different last bits on 1 and 2 threads
    /// for some shapes, and concurrently running tests change its global
    /// thread count (NN's conv fork-join sets it to 1 and restores it); the
    /// bit-exact comparisons of this target must not depend on that race.
    static func config(_ m: DistillMethod, epochs: Int = 6) -> DistillConfig {
        var c = DistillConfig(method: m)
        c.batchSize = 8
        c.evalBatch = 3
        c.architecture = studentArch
        c.epochs = epochs
        c.learningRate = 1e-2
        c.seed = 5
        return c
    }

    // MARK: Trained 5-class teacher

    private static let trainedTeacherState: [Model.StateEntry] = {
        var c = DistillConfig(method: .labelOnly)
        c.evalBatch = 16
        c.architecture = teacherArch
        c.epochs = 8
        c.batchSize = 16
        c.learningRate = 1e-2
        c.seed = 11
        let t = try! DistillTrainer(config: c, train: train, val: val, teacher: nil, pairs: [], bases: [])
        return try! t.run().student.state
    }()

    /// A private copy of the trained teacher (its classes are the subtask's: classIndices 0..<5).
    static func teacher() -> Model {
        let m = try! Model(architecture: teacherArch, inputShape: train.imageShape, seed: 0)
        try! m.setState(trainedTeacherState)
        return m
    }

    /// Bases of every kind for the trained teacher, by teacher layer.
    static let teacherBases: [BasisKind: [String: SubspaceBasis]] = computeBases(teacher(), classIndices: Array(0..<5))

    // MARK: Random 20-class teacher for the stage

    static func stageTeacher() -> Model {
        try! Model(architecture: stageTeacherArch, inputShape: train.imageShape, seed: 21)
    }

    static let stageTeacherBases: [BasisKind: [String: SubspaceBasis]] = computeBases(stageTeacher(), classIndices: subtask)

    static let stageTeacherPath: String = {
        let path = dir + "/teacher.npz"
        let t = TeacherArtifact(model: stageTeacher(), classPriors: [Float](repeating: 0.05, count: 20),
                                logShift: [Float](repeating: 0, count: 20))
        try! NPZ.write(t.artifact(meta: ArtifactMeta(stage: "train-teacher")), to: path)
        return path
    }()

    /// A subspace artifact with all the stage teacher's bases whose meta records `teacherDigest`.
    static func writeSubspace(teacherDigest: String?, name: String,
                              bases: [BasisKind: [String: SubspaceBasis]] = stageTeacherBases) -> String {
        let path = dir + "/\(name).npz"
        var a = Artifact(meta: ArtifactMeta(stage: "extract-subspace", inputs: teacherDigest.map { ["teacher": $0] } ?? [:]))
        for kind in BasisKind.allCases { for (_, b) in bases[kind]!.sorted(by: { $0.key < $1.key }) { b.write(into: &a) } }
        try! NPZ.write(a, to: path)
        return path
    }

    /// The relevant subspace of each teacher layer as the subspace stage
    /// computes it (contexts ∂(z_(1) − z_(2))/∂a over the subtask logits), for
    /// k = the default-paired student layer's channels.
    static func computeBases(_ t: Model, classIndices: [Int],
                             studentArch: String = studentArch) -> [BasisKind: [String: SubspaceBasis]] {
        let student = try! Model(architecture: studentArch, inputShape: train.imageShape, seed: 0)
        var x = Tensor(shape: [0])
        train.gather(Array(0..<train.count)[...], into: &x)
        let z = t.forward(x, training: false)
        let cOut = z.shape[1]
        var g = Tensor(shape: z.shape)
        for i in 0..<train.count {
            let sub = classIndices.sorted { z.data[i * cOut + $0] > z.data[i * cOut + $1] }
            g.data[i * cOut + sub[0]] = 1
            g.data[i * cOut + sub[1]] = -1
        }
        t.backward(g)
        var out: [BasisKind: [String: SubspaceBasis]] = [:]
        for (tap, s) in zip(t.tapNames, student.tapNames) {
            let a = t.activation(tap: tap), c = t.tapGradient(tap)
            var ext = try! SubspaceExtractor(channels: a.shape[3], seed: 1)
            _ = try! ext.add(activations: a.data, contexts: c.data, shape: a.shape)
            for kind in BasisKind.allCases {
                out[kind, default: [:]][tap] = try! ext.basis(layer: tap, kind: kind, k: student.tapShape(s)[2])
            }
        }
        t.zeroGrad()
        return out
    }

    // MARK: Helpers

    /// Accuracy of a model on a split (evaluation mode).
    static func accuracy(_ m: Model, _ d: Dataset) -> Double {
        Loss.accuracy(predictions: predictions(m, d), labels: d.labels)
    }

    static func predictions(_ m: Model, _ d: Dataset) -> [Int] {
        var x = Tensor(shape: [0])
        var out: [Int] = []
        for start in stride(from: 0, to: d.count, by: 3) {
            d.gather(Array(start..<min(d.count, start + 3))[...], into: &x)
            out += Loss.argmax(m.forward(x, training: false))
        }
        return out
    }

    /// A trainer for method `c.method` on the fixture with the trained teacher.
    static func trainer(_ c: DistillConfig, train: Dataset = Fixture.train) throws -> DistillTrainer {
        try DistillTrainer.prepare(config: c, teacher: c.method.usesTeacher ? teacher() : nil, teacherLogShift: nil,
                                   classIndices: Array(0..<5), train: train, val: val,
                                   bases: c.method.basisKind.map { teacherBases[$0]! } ?? [:])
    }

    static func tempPath(_ name: String) -> String {
        dir + "/out-\(name)-\(UUID().uuidString.prefix(8)).npz"
    }

    /// Flattened (name, values) of a model's state, for bit-exact comparisons.
    static func flat(_ m: Model) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: m.state.map { ($0.name, $0.values) })
    }
}

/// Registered methods by name, for the tests' arguments.
extension DistillMethod {
    static func named(_ n: String) -> DistillMethod { try! DistillMethod(parsing: n) }
    static let labelOnly = named("label-only")
    static let kd = named("kd")
    static let kdCE = named("kd+ce")
    static let fitnet = named("fitnet")
    static let fitnetNoAct = named("fitnet-noact")
    static let attention = named("attention")
    static let dkd = named("dkd")
    static let subdistill = named("subdistill")
    static let subdistillPCA = named("subdistill-pca")
    static let subdistillRandom = named("subdistill-random")
}
