import Foundation
import NN
import StageKit
import TensorIO
import Testing
@testable import Training

@Test func shortRunReducesTheLossAndWritesTheTeacher() throws {
    let dir = try TempDir()
    defer { dir.cleanup() }
    try makeQuadrantData(dir)
    var o = quadrantOptions(dir)
    o.epochs = 6
    let r = try Training.trainTeacher(o)
    #expect(r.status == .trained)
    #expect(r.log.epochs == 6)
    #expect(r.log["loss"]!.last! < 0.6 * r.log["loss"]!.first!)
    #expect(r.log["val_acc"]!.last! >= 0.9)

    // The artifact: network, priors, zero shift (erm), log, metadata.
    let t = try TeacherArtifact.load(o.outPath)
    #expect(t.classPriors == [0.25, 0.25, 0.25, 0.25])
    #expect(t.logShift == [0, 0, 0, 0])
    #expect(t.model.architecture == "c4,p,c8,p,gap,fc4")
    #expect(t.meta?.stage == "train-teacher")
    #expect(t.meta?.inputs["train"] == (try sha256Hex(ofFile: o.trainPath)))
    #expect(t.meta?.inputs["val"] == (try sha256Hex(ofFile: o.valPath)))
    #expect(t.meta?.parameters["epochs"] == .number(6))
    #expect(t.meta?.parameters["objective"] == .string("erm"))
    #expect(t.meta?.extra["fingerprint"]?.string == r.fingerprint)
    let a = try NPZ.read(o.outPath)
    #expect(try a.array("log/epoch").asInts() == [1, 2, 3, 4, 5, 6])
    #expect(try a.array("log/loss").doubles() == r.log["loss"]!)
    #expect(try a.array("log/val_acc").doubles() == r.log["val_acc"]!)
    #expect(try a.array("log/val_worst_class").doubles() == r.log["val_worst_class"]!)
    #expect(try a.array("log/train_acc").count == 6)
    #expect(a["log/seconds"] == nil)  // timings live in meta.extra, not in the tensors
    #expect(TrainingLog(json: t.meta?.extra["log"], series: Training.logSeries) == r.log)
    // The stored network reproduces the logged validation accuracy.
    let val = try Dataset(path: o.valPath)
    #expect(try Training.evaluate(model: t.model, dataset: val).accuracy == r.log["val_acc"]!.last!)
    // No checkpoint is left behind.
    #expect(!FileManager.default.fileExists(atPath: o.outPath + ".ckpt.npz"))
}

@Test func resumedRunEqualsAnUninterruptedOneBitForBit() throws {
    let dir = try TempDir()
    defer { dir.cleanup() }
    try makeQuadrantData(dir)
    // Every source of state: augmentation draws, dro's λ and validation
    // batches, Adam's moments, the schedule crossing a decay.
    var o = quadrantOptions(dir, out: "resumed.npz")
    o.augmentation = Augmentation(crop: true, flip: true, cropPadding: 2)
    o.objective = .dro
    o.droEvery = 3
    o.droBatch = 12
    o.epochs = 4
    o.lrStep = 1

    var killed = o
    killed.stopAfterEpochs = 2
    let first = try Training.trainTeacher(killed)
    #expect(first.status == .stopped)
    #expect(first.log.epochs == 2)
    #expect(FileManager.default.fileExists(atPath: o.outPath + ".ckpt.npz"))
    #expect(!FileManager.default.fileExists(atPath: o.outPath))

    let resumed = try Training.trainTeacher(o)   // a fresh call: state only from files
    #expect(resumed.status == .trained)
    #expect(resumed.resumedFromEpoch == 2)
    #expect(!FileManager.default.fileExists(atPath: o.outPath + ".ckpt.npz"))

    var straightOptions = o
    straightOptions.outPath = dir.file("straight.npz")
    let straight = try Training.trainTeacher(straightOptions)
    #expect(straight.resumedFromEpoch == 0)
    #expect(straight.fingerprint == resumed.fingerprint)

    let a = try TeacherArtifact.load(o.outPath), b = try TeacherArtifact.load(straightOptions.outPath)
    let sa = a.model.state, sb = b.model.state
    #expect(sa.count == sb.count)
    for (x, y) in zip(sa, sb) {
        #expect(x.name == y.name)
        #expect(x.values.map(\.bitPattern) == y.values.map(\.bitPattern), "\(x.name) differs")
    }
    #expect(a.logShift.map(\.bitPattern) == b.logShift.map(\.bitPattern))
    #expect(a.logShift.contains { $0 != 0 })   // dro moved λ
    #expect(resumed.log["loss"]! == straight.log["loss"]!)
    #expect(resumed.log["val_acc"]! == straight.log["val_acc"]!)
    #expect(resumed.log["epoch"]! == [1, 2, 3, 4])
    // The λ trajectory in meta.extra.dro survives the interruption.
    let da = try #require(a.meta?.extra["dro"]?.object), db = try #require(b.meta?.extra["dro"]?.object)
    #expect(da == db)
    #expect(da["history"]?.array?.count == Int(da["updates"]?.number ?? -1) && (da["updates"]?.number ?? 0) > 0)
    #expect(da["every"] == .number(3) && da["eta"] == .number(o.eta))
}

@Test func finishedRunIsNotRepeatedButAChangedOneIs() throws {
    let dir = try TempDir()
    defer { dir.cleanup() }
    try makeQuadrantData(dir)
    var o = quadrantOptions(dir)
    o.epochs = 1
    #expect(try Training.trainTeacher(o).status == .trained)
    let bytes = try Data(contentsOf: URL(fileURLWithPath: o.outPath))
    #expect(try Training.trainTeacher(o).status == .upToDate)
    #expect(try Data(contentsOf: URL(fileURLWithPath: o.outPath)) == bytes)
    o.seed = 1
    #expect(try Training.trainTeacher(o).status == .trained)
    #expect(try Data(contentsOf: URL(fileURLWithPath: o.outPath)) != bytes)
}

@Test func aStaleCheckpointOfOtherArgumentsIsIgnored() throws {
    let dir = try TempDir()
    defer { dir.cleanup() }
    try makeQuadrantData(dir)
    var o = quadrantOptions(dir)
    o.epochs = 2
    var killed = o
    killed.stopAfterEpochs = 1
    killed.learningRate = 0.02
    #expect(try Training.trainTeacher(killed).status == .stopped)
    let r = try Training.trainTeacher(o)
    #expect(r.status == .trained)
    #expect(r.resumedFromEpoch == 0)
}

/// Long-tailed blobs: class 0 has 300 examples, class 1 40, class 2 8;
/// balanced validation. ERM sacrifices the tail; logit adjustment
/// (`balanced`) and `dro` raise the worst-class accuracy.
@Test func robustObjectivesRaiseWorstClassAccuracyOnALongTail() throws {
    let dir = try TempDir()
    defer { dir.cleanup() }
    let means = [(-0.7, -0.4), (0.7, -0.4), (0.0, 0.8)]
    try writeBlobs(dir.file("train.npz"), counts: [300, 40, 8], means: means, sigma: 0.5, seed: 3)
    try writeBlobs(dir.file("val.npz"), counts: [100, 100, 100], means: means, sigma: 0.5, seed: 4)
    func run(_ mode: RobustMode, _ out: String) throws -> TeacherRunResult {
        var o = TeacherOptions(trainPath: dir.file("train.npz"), valPath: dir.file("val.npz"), outPath: dir.file(out))
        o.architecture = "fc3"
        o.epochs = 30
        o.batch = 16
        o.learningRate = 0.05
        o.objective = mode
        o.droEvery = 8
        o.eta = 0.5
        o.verbose = false
        return try Training.trainTeacher(o)
    }
    let erm = try run(.std, "erm.npz"), bal = try run(.balanced, "balanced.npz"), dro = try run(.dro, "dro.npz")
    let worstERM = erm.log["val_worst_class"]!.last!
    #expect(worstERM < 0.5)
    #expect(bal.log["val_worst_class"]!.last! > worstERM + 0.2)
    #expect(dro.log["val_worst_class"]!.last! > worstERM + 0.2)
    // balanced's shift is log w_y = log(1/(C·π_y)), written to the artifact.
    let t = try TeacherArtifact.load(dir.file("balanced.npz"))
    let pri: [Double] = [300, 40, 8].map { $0 / 348 }
    for y in 0..<3 {
        #expect(abs(Double(t.logShift[y]) - log(1 / (3 * pri[y]))) < 1e-5)
        #expect(abs(Double(t.classPriors[y]) - pri[y]) < 1e-6)
    }
    // dro puts the largest weight on the tail class.
    let lam = try TeacherArtifact.load(dir.file("dro.npz")).meta?.extra["robust_lambda"]?.array?.compactMap(\.number) ?? []
    // λ moved off uniform on the simplex, once every K = 8 of the
    // 30 · ⌊348/16⌋ = 630 steps.
    #expect(lam.count == 3)
    #expect(abs(lam.reduce(0, +) - 1) < 1e-12)
    #expect(lam.max()! - lam.min()! > 0.005)
    #expect(try TeacherArtifact.load(dir.file("dro.npz")).meta?.extra["robust_updates"] == .number(78))
    // meta.extra.dro: every update's log λ, its range and the final value.
    let rec = try #require(try TeacherArtifact.load(dir.file("dro.npz")).meta?.extra["dro"]?.object)
    let history = try #require(rec["history"]?.array).map { try #require($0.array).compactMap(\.number) }
    #expect(rec["updates"] == .number(78) && history.count == 78 && history.allSatisfy { $0.count == 3 })
    #expect(rec["final_log_lambda"] == .array(lam.map { .number(log($0)) }) || zip(history.last!, lam).allSatisfy { abs($0 - log($1)) < 1e-12 })
    #expect(rec["log_lambda_max"]!.number! >= history.last!.max()! && rec["log_lambda_min"]!.number! <= history.last!.min()!)
    #expect(try TeacherArtifact.load(dir.file("balanced.npz")).meta?.extra["dro"] == nil)
    // reweighted: the balanced costs as example weights, no logit shift.
    let rw = try run(.reweighted, "reweighted.npz")
    #expect(rw.log["val_worst_class"]!.last! > worstERM + 0.2)
    let trw = try TeacherArtifact.load(dir.file("reweighted.npz"))
    #expect(trw.logShift.allSatisfy { $0 == 0 } && trw.meta?.parameters["objective"] == "reweighted")
}

@Test func nonFiniteTrainingStopsWithoutAnArtifact() throws {
    let dir = try TempDir()
    defer { dir.cleanup() }
    try writeBlobs(dir.file("train.npz"), counts: [40, 40], means: [(-1, 0), (1, 0)], sigma: 0.5, seed: 1)
    try writeBlobs(dir.file("val.npz"), counts: [10, 10], means: [(-1, 0), (1, 0)], sigma: 0.5, seed: 2)
    var o = TeacherOptions(trainPath: dir.file("train.npz"), valPath: dir.file("val.npz"), outPath: dir.file("t.npz"))
    o.architecture = "fc8,fc2"
    o.optimizer = .sgd
    o.learningRate = 1e38
    o.epochs = 3
    o.batch = 8
    o.verbose = false
    do {
        _ = try Training.trainTeacher(o)
        Issue.record("training with lr 1e38 did not stop")
    } catch let e as StageError {
        #expect(e.message.contains("epoch 1, batch"))
        #expect(e.message.contains("non-finite") || e.message.contains("loss became"))
    }
    #expect(!FileManager.default.fileExists(atPath: o.outPath))
}

@Test func badInputsGiveClearErrors() throws {
    let dir = try TempDir()
    defer { dir.cleanup() }
    try makeQuadrantData(dir)
    try writeQuadrants(dir.file("val16.npz"), perClass: 2, side: 16, seed: 3)
    func message(_ edit: (inout TeacherOptions) -> Void) -> String {
        var o = quadrantOptions(dir)
        o.epochs = 1
        edit(&o)
        do {
            _ = try Training.trainTeacher(o)
            return "no error"
        } catch {
            #expect(!FileManager.default.fileExists(atPath: o.outPath))
            return "\(error)"
        }
    }
    let missing = message { $0.trainPath = dir.file("nope.npz") }
    #expect(missing.contains("--train") && missing.contains("nope.npz"))
    let missingVal = message { $0.valPath = dir.file("nope.npz") }
    #expect(missingVal.contains("--val"))
    let size = message { $0.valPath = dir.file("val16.npz") }
    #expect(size.contains("image size differs") && size.contains("8×8×3") && size.contains("16×16×3"))
    let arch = message { $0.architecture = "c4,q,gap,fc4" }
    #expect(arch.contains("--arch") && arch.contains("'q'"))
    let classes = message { $0.architecture = "c4,p,gap,fc3" }
    #expect(classes.contains("4 classes") && classes.contains("fc4"))
    let batch = message { $0.batch = 1000 }
    #expect(batch.contains("fewer than one batch"))
    let epochs = message { $0.epochs = 0 }
    #expect(epochs.contains("--epochs"))
    let lr = message { $0.learningRate = -1 }
    #expect(lr.contains("--lr"))
    let groups = message { $0.objective = .balanced; $0.groups = .group }
    #expect(groups.contains("--groups group"))
    try "not a zip".write(toFile: dir.file("junk.npz"), atomically: true, encoding: .utf8)
    let junk = message { $0.valPath = dir.file("junk.npz") }
    #expect(junk.contains("validation split") && junk.contains("junk.npz"))
    // A subtask split is not a teacher training split.
    try writeSplit(dir.file("sub.npz"), images: [UInt8](repeating: 0, count: 2 * 8 * 8 * 3), shape: [2, 8, 8, 3],
                   labels: [0, 1], classes: 2, subtaskClasses: [1, 3])
    let sub = message { $0.trainPath = dir.file("sub.npz") }
    #expect(sub.contains("subtask"))
    #expect(throws: StageError.self) { try Augmentation(parsing: "crop,rotate") }
    #expect(throws: StageError.self) { try Augmentation(parsing: "crop,crop") }
}

@Test func augmentationParsing() throws {
    #expect(try Augmentation(parsing: "none") == .none)
    #expect(try Augmentation(parsing: "crop") == Augmentation(crop: true))
    #expect(try Augmentation(parsing: "flip, crop") == Augmentation(crop: true, flip: true))
    #expect(Augmentation(crop: true, flip: true).description == "crop,flip")
}

/// Each augmented image is its source shifted by some (dy, dx) in ±p with
/// black fill, then possibly mirrored; with flip alone, the image or its
/// mirror; and the same generator state gives the same batch.
@Test func augmentationIsAShiftWithBlackPaddingAndOptionalMirror() throws {
    let b = 6, h = 5, w = 7, c = 2, p = 2
    // Distinct positive values, so the transform can be recovered.
    let src = Tensor(shape: [b, h, w, c], data: (0..<(b * h * w * c)).map { Float($0 + 1) })
    let pad = (0 - Dataset.pixelMean) / Dataset.pixelScale
    func matches(_ out: ArraySlice<Float>, _ img: Int, dy: Int, dx: Int, flip: Bool) -> Bool {
        for y in 0..<h {
            for x in 0..<w {
                let cx = flip ? w - 1 - x : x
                let sy = y + dy, sx = cx + dx
                for k in 0..<c {
                    let o = out[out.startIndex + (y * w + x) * c + k]
                    let e = (sy < 0 || sy >= h || sx < 0 || sx >= w) ? pad : src.data[((img * h + sy) * w + sx) * c + k]
                    if o != e { return false }
                }
            }
        }
        return true
    }
    for (crop, flip) in [(true, false), (false, true), (true, true)] {
        let aug = BatchAugmenter(Augmentation(crop: crop, flip: flip, cropPadding: p))
        var x = src
        var rng = RNG(seed: 9)
        aug.apply(&x, rng: &rng)
        var y = src
        var rng2 = RNG(seed: 9)
        aug.apply(&y, rng: &rng2)
        #expect(x == y)
        #expect(x != src)
        let per = h * w * c
        for i in 0..<b {
            let out = x.data[(i * per)..<((i + 1) * per)]
            var found = false
            for dy in (crop ? -p : 0)...(crop ? p : 0) {
                for dx in (crop ? -p : 0)...(crop ? p : 0) {
                    for f in flip ? [false, true] : [false] where matches(out, i, dy: dy, dx: dx, flip: f) { found = true }
                }
            }
            #expect(found, "image \(i) is not a shifted/mirrored copy (crop \(crop), flip \(flip))")
        }
    }
}

/// Subtask accuracy cuts the logits to the split's classes: with an
/// identity linear teacher the logits are the (normalised) features.
@Test func subtaskAccuracyUsesOnlyTheSubtaskLogits() throws {
    let dir = try TempDir()
    defer { dir.cleanup() }
    let model = try Model(architecture: "fc4", inputShape: [1, 1, 4], seed: 0)
    var eye = [Float](repeating: 0, count: 16)
    for i in 0..<4 { eye[i * 4 + i] = 1 }
    try model.setState([("l0.fc.weight", [4, 4], eye), ("l0.fc.bias", [4], [0, 0, 0, 0])])
    let teacher = TeacherArtifact(model: model, classPriors: [0.25, 0.25, 0.25, 0.25], logShift: [0, 0, 0, 0])
    // Feature 0 always largest (the full argmax is class 0, outside the
    // subtask); among teacher classes 2 and 3 the larger decides.
    let images: [UInt8] = [250, 10, 200, 100,   // → subtask label 0 (class 2)
                           250, 10, 100, 200,   // → 1 (class 3)
                           250, 10, 150, 120,   // → 0
                           250, 10, 120, 150]   // → 1
    try writeSplit(dir.file("test-clean.npz"), images: images, shape: [4, 1, 1, 4], labels: [0, 1, 1, 1],
                   classes: 2, subtaskClasses: [2, 3])
    let d = try Dataset(path: dir.file("test-clean.npz"))
    #expect(try Training.subtaskAccuracy(teacher: teacher, dataset: d) == 0.75)
    let ev = try Training.evaluate(model: model, dataset: d, classes: [2, 3])
    #expect(ev.predictions == [0, 1, 0, 1])
    #expect(abs(ev.worstClassAccuracy - 2.0 / 3) < 1e-12)
    // A split without subtask classes is refused.
    try writeSplit(dir.file("plain.npz"), images: images, shape: [4, 1, 1, 4], labels: [0, 1, 2, 3], classes: 4)
    #expect(throws: StageError.self) { try Training.subtaskAccuracy(teacher: teacher, dataset: try Dataset(path: dir.file("plain.npz"))) }
}
