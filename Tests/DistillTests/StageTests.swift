import Foundation
import Testing
@testable import Distill
import NN
import StageKit
import Subspace
import TensorIO

private func options(_ method: DistillMethod, subspace: String?, out: String, epochs: Int = 1,
                     arch: String = Fixture.studentArch) -> DistillStageOptions {
    var c = Fixture.config(method, epochs: epochs)
    c.architecture = arch
    return DistillStageOptions(teacherPath: Fixture.stageTeacherPath, trainPath: Fixture.trainPath,
                               valPath: Fixture.valPath, subspacePath: subspace, outPath: out, config: c)
}

/// Runs the stage expecting an error whose message contains `text`; no artifact appears.
private func expectRefused(_ o: DistillStageOptions, _ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        try DistillStage.run(o)
        Issue.record("expected an error containing '\(text)'", sourceLocation: sourceLocation)
    } catch {
        #expect("\(error)".contains(text), "\(error)", sourceLocation: sourceLocation)
    }
    #expect(!FileManager.default.fileExists(atPath: o.outPath), sourceLocation: sourceLocation)
}

@Test func refusesSubspaceOfAnotherTeacher() throws {
    let sub = Fixture.writeSubspace(teacherDigest: String(repeating: "ab", count: 32), name: "sub-other")
    expectRefused(options(.subdistill, subspace: sub, out: Fixture.tempPath("other")), "computed from another teacher")
    let none = Fixture.writeSubspace(teacherDigest: nil, name: "sub-none")
    expectRefused(options(.subdistill, subspace: none, out: Fixture.tempPath("none")), "records no teacher digest")
}

@Test func refusesSubdistillWithoutSubspace() {
    for m in [DistillMethod.subdistill, .subdistillPCA, .subdistillRandom] {
        expectRefused(options(m, subspace: nil, out: Fixture.tempPath("nosub")), "needs --subspace")
    }
}

@Test func refusesUnknownMethodAndBadOptions() throws {
    #expect(throws: DistillError.self) { try DistillMethod(parsing: "hinton") }
    do { _ = try DistillMethod(parsing: "hinton") } catch {
        #expect("\(error)".contains("unknown method 'hinton'") && "\(error)".contains("subdistill-gradpca"))
    }
    #expect(throws: DistillError.self) { try LayerPair.parseList("stage1-stage1") }
    var o = options(.kd, subspace: nil, out: Fixture.tempPath("labels"))
    o.config.lambdaTask = 1
    expectRefused(o, "no ground-truth labels reach its loss")
    o = options(.fitnet, subspace: nil, out: Fixture.tempPath("pairs"))
    o.config.pairs = [LayerPair(teacher: "stage1", student: "stage9")]
    expectRefused(o, "the student has no layer 'stage9'")
    o = options(.kd, subspace: nil, out: Fixture.tempPath("arch"), arch: "c4,p,c8,p,gap,fc7")
    expectRefused(o, "outputs [7], the subtask has 5 classes")
    o = options(.kd, subspace: nil, out: Fixture.tempPath("missing"))
    o.teacherPath = Fixture.dir + "/no-such-teacher.npz"
    expectRefused(o, "does not exist")
}

@Test func refusesBasisWithWrongK() throws {
    let digest = try sha256Hex(ofFile: Fixture.stageTeacherPath)
    let sub = Fixture.writeSubspace(teacherDigest: digest, name: "sub-k")
    // Student stage 3 has 6 channels, the basis k = 8.
    let o = options(.subdistill, subspace: sub, out: Fixture.tempPath("k"), arch: "c4,p,c8,p,c6,p,gap,fc5")
    expectRefused(o, "has k = 8 directions, the student layer stage3 has 6 channels")
}

/// NaN guard: a diverging run stops with a clear error and writes nothing.
@Test func divergenceIsAnErrorWithoutArtifact() throws {
    var o = options(.kd, subspace: nil, out: Fixture.tempPath("nan"))
    o.config.learningRate = 1e36
    expectRefused(o, "not finite")
}

/// A full stage run: student.npz holds the network, the method's state, the
/// logs of both λ_layer candidates and metadata with every digest; the
/// checkpoint is gone; the stored student reproduces the returned one.
@Test func stageWritesStudentArtifact() throws {
    let digest = try sha256Hex(ofFile: Fixture.stageTeacherPath)
    let sub = Fixture.writeSubspace(teacherDigest: digest, name: "sub-ok")
    let out = Fixture.tempPath("ok")
    var o = options(.subdistill, subspace: sub, out: out, epochs: 2)
    o.config.lambdaLayers = [0.5, 50]
    var warnings: [String] = []
    var hooks = DistillStage.Hooks()
    hooks.warn = { warnings.append($0) }
    let r = try DistillStage.run(o, hooks: hooks)
    #expect(!FileManager.default.fileExists(atPath: out + ".ckpt.npz"))
    let a = try NPZ.read(out)
    let meta = try #require(a.meta)
    #expect(meta.stage == "distill")
    #expect(meta.inputs["teacher"] == digest)
    #expect(meta.inputs["subspace"] == (try sha256Hex(ofFile: sub)))
    #expect(meta.inputs["train"] == (try sha256Hex(ofFile: Fixture.trainPath)))
    #expect(meta.inputs["val"] == (try sha256Hex(ofFile: Fixture.valPath)))
    #expect(meta.parameters["method"]?.string == "subdistill")
    #expect(meta.parameters["chosen_lambda_layer"]?.number == Double(r.chosenLambdaLayer))
    #expect(meta.parameters["lambda_layer_candidates"] == .array([0.5, 50]))
    #expect(meta.parameters["lambda_layer"]?.number == Double(r.chosenLambdaLayer))
    #expect(meta.parameters["rho"]?.number == 0 && meta.parameters["family"]?.string == "gratings")
    #expect(meta.extra["dead_channels"]?.array?.count == 3)
    #expect(meta.parameters["temperature"]?.number == 4)
    #expect(meta.parameters["pairs"] == .array(["stage1:stage1", "stage2:stage2", "stage3:stage3"]))
    #expect(meta.parameters["subtask_classes"] == .array([10, 11, 12, 13, 14]))
    // Per-class counts of the training split (evaluate's logit adjustment).
    let train = try Dataset(path: Fixture.trainPath)
    let counts = (0..<5).map { c in train.labels.filter { $0 == c }.count }
    #expect(counts.reduce(0, +) == train.count)
    #expect(meta.parameters["train_class_counts"] == .array(counts.map { .number(Double($0)) }))
    #expect(meta.seed == 5)
    #expect(meta.extra["candidates"]?.array?.count == 2)
    #expect(meta.extra["warnings"]?.array?.count == warnings.count)
    let student = try NetworkArtifact.read(from: a)
    #expect(Fixture.predictions(student, Fixture.val) == Fixture.predictions(r.student, Fixture.val))
    #expect(try a.array("log/val_accuracy").doubles() == r.candidates[r.chosen].log["val_accuracy"]!)
    #expect(try a.array("log/candidates/lambda_layer").doubles() == [0.5, 50])
    #expect(a["log/candidate1/loss_layer/stage2-stage2"] != nil)
    #expect(a["log/dead_channels/stage3-stage3"] != nil)
    #expect(try a.array("method/stage1-stage1.rotation.Q").shape == [4, 4])
    #expect(try a.array("method/stage2-stage2.runningVar").shape == [8])
    #expect(a["method/robust/log_shift"] != nil)

    // Deterministic: the same run gives identical tensors.
    let out2 = Fixture.tempPath("ok2")
    o.outPath = out2
    try DistillStage.run(o)
    let b = try NPZ.read(out2)
    #expect(a.names == b.names)
    let differing = a.names.filter { a[$0] != b[$0] }
    #expect(differing.isEmpty, "entries differ between two identical runs: \(differing)")
}
