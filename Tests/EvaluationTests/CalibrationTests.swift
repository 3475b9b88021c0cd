import Foundation
import NN
import Reporting
import StageKit
import TensorIO
import Testing
@testable import Evaluation

// Calibration, logit adjustment and the DRO record (docs/protocol.md,
// "Metrics"), checked against values computed by hand.

/// Four images, three classes; every confidence lies inside a bin, away
/// from the edges.
private let probs: [Double] = [
    0.75, 0.15, 0.10,   // y = 0
    0.62, 0.28, 0.10,   // y = 1
    0.18, 0.14, 0.68,   // y = 2
    0.04, 0.88, 0.08,   // y = 1
]
private let labels = [0, 1, 2, 1]

private func close(_ a: Double?, _ b: Double, _ tol: Double = 1e-12) -> Bool {
    guard let a else { return false }
    return abs(a - b) <= tol
}

@Test func classwiseAndTopLabelECEByHand() throws {
    let c = Calibration.measure(probabilities: probs, labels: labels, classes: 3)
    #expect(c.bins == 10)
    // Class 0 (one-vs-rest, all four images): bins 7 (0.75, yes), 6 (0.62, no), 1 (0.18, no), 0 (0.04, no):
    // (0.25 + 0.62 + 0.18 + 0.04) / 4 = 0.2725.
    #expect(close(c.classwiseEce[0], 0.2725))
    // Class 1: bin 1 holds 0.15 and 0.14 (neither of class 1): weight 2/4, |0 − 0.145|;
    // bin 2: 0.28 (yes) |1 − 0.28|; bin 8: 0.88 (yes) |1 − 0.88|: 0.0725 + 0.18 + 0.03 = 0.2825.
    #expect(close(c.classwiseEce[1], 0.2825))
    // Class 2: bin 1 holds 0.10 twice (no): 0.5·0.10; bin 6: 0.68 (yes) 0.25·0.32; bin 0: 0.08 (no) 0.25·0.08.
    #expect(close(c.classwiseEce[2], 0.15))
    #expect(close(c.classwiseEceMean, 0.705 / 3))
    #expect(close(c.classwiseEceMax, 0.2825))
    // Top label: 0.75 right (bin 7), 0.62 wrong and 0.68 right (bin 6: conf 0.65, acc 0.5), 0.88 right (bin 8):
    // 0.5·0.15 + 0.25·0.25 + 0.25·0.12 = 0.1675.
    #expect(close(c.topLabelEce, 0.1675))
    #expect(c.reliability.count == [0, 0, 0, 0, 0, 0, 2, 1, 1, 0])
    #expect(close(c.reliability.confidence[6], 0.65) && c.reliability.accuracy[6] == 0.5)
    #expect(c.reliability.accuracy[7] == 1 && c.reliability.confidence[0].isNaN && c.reliability.accuracy[0].isNaN)
    let bins1 = try #require(c.classwiseReliability?[1])
    #expect(bins1.count == [0, 2, 1, 0, 0, 0, 0, 0, 1, 0])
    #expect(close(bins1.confidence[1], 0.145) && bins1.accuracy[1] == 0 && bins1.accuracy[2] == 1)
    // Accuracy 3/4; recall 1, 1/2, 1.
    #expect(c.accuracy == 0.75 && c.worstClass == 0.5)
}

@Test func binEdgesAndPerfectCalibration() {
    #expect(Calibration.bin(0, bins: 10) == 0)
    #expect(Calibration.bin(1, bins: 10) == 9)
    #expect(Calibration.bin(0.25, bins: 10) == 2)
    #expect(Calibration.bin(1.0000001, bins: 10) == 9 && Calibration.bin(-1e-12, bins: 10) == 0)
    // Confidence 0.75 on four images, three right: calibrated, ECE 0.
    let (r, e) = Calibration.reliability(confidences: [0.75, 0.75, 0.75, 0.75], outcomes: [true, true, false, true], bins: 10)
    #expect(e == 0 && r.count[7] == 4)
    #expect(Calibration.reliability(confidences: [], outcomes: [], bins: 10).ece == 0)
}

@Test func shiftedSoftmaxRemovesTheTeachersShift() {
    // z = (0, log 2, 0) with shift (0, log 2, log 2): z − s = (0, 0, −log 2) → (2, 2, 1)/5.
    let z: [Float] = [0, Float(log(2.0)), 0]
    let p = Calibration.probabilities(logits: z, classes: 3, shift: [0, log(2), log(2)])
    #expect(zip(p, [0.4, 0.4, 0.2]).allSatisfy { abs($0 - $1) < 1e-7 })
    // Large logits do not overflow.
    let q = Calibration.probabilities(logits: [1000, 1000], classes: 2)
    #expect(q == [0.5, 0.5])
}

@Test func logitAdjustmentSubtractsTauLogPrior() throws {
    // π = (0.6, 0.4): log π₀ − log π₁ = log 1.5 ≈ 0.405. Subtracting log π favours class 1 by 0.405:
    // row 0 (margin 0.5 for class 0) stays 0, row 1 (margin 0.2) flips to 1, row 2 stays 1.
    let z: [Float] = [1.0, 0.5, 0.2, 0.0, 0.0, 1.0]
    let y = [0, 1, 1]
    let la = try #require(Calibration.logitAdjusted(logits: z, labels: y, classes: 2, trainCounts: [60, 40]))
    #expect(la.predictions == [0, 1, 1])
    #expect(la.metrics.accTest == 1 && la.metrics.worstClass == 1)
    #expect(la.metrics.classPriors == [0.6, 0.4] && la.metrics.tau == 1)
    // Unadjusted, row 1 is wrong; adding log π instead would keep it wrong.
    #expect(Scores.accuracy(predictions: [0, 0, 1], labels: y) == 2.0 / 3)
    // A class without training examples: undefined.
    #expect(Calibration.logitAdjusted(logits: z, labels: y, classes: 2, trainCounts: [10, 0]) == nil)
}

@Test func trainClassCountsAreReadAndCheckedFromTheStudentsMetadata() throws {
    let ok = ArtifactMeta(stage: "distill", parameters: ["train_class_counts": [240, 76, 24]])
    #expect(try Calibration.trainClassCounts(ok, classes: 3, path: "s.npz") == [240, 76, 24])
    #expect(try Calibration.trainClassCounts(ArtifactMeta(stage: "distill"), classes: 3, path: "s.npz") == nil)
    for bad: JSON in [[1, 2], [1, 2.5, 3], [1, -1, 3], "many"] {
        let meta = ArtifactMeta(stage: "distill", parameters: ["train_class_counts": bad])
        #expect(throws: EvaluationError.self) { try Calibration.trainClassCounts(meta, classes: 3, path: "s.npz") }
    }
}

/// A `dro` record as distill and train-teacher write it.
func droRecord(updates: Int = 2, groups: Int = 3) -> JSON {
    let start: Double = -log(Double(groups))
    var rows: [[Double]] = []
    for u in 0..<updates {
        var row: [Double] = []
        for g in 0..<groups { row.append(start + 0.01 * Double(u + 1) * Double(g - 1)) }
        rows.append(row)
    }
    let flat: [Double] = rows.flatMap { $0 }
    let history: [JSON] = rows.map { r in JSON.array(r.map { JSON.number($0) }) }
    let final: [JSON] = (rows.last ?? []).map { JSON.number($0) }
    var o: [String: JSON] = ["every": 32, "eta": 0.1]
    o["updates"] = .number(Double(updates))
    o["log_lambda_min"] = .number(flat.min() ?? start)
    o["log_lambda_max"] = .number(flat.max() ?? start)
    o["final_log_lambda"] = .array(final)
    o["history"] = .array(history)
    return .object(o)
}

@Test func droRecordIsParsedAndMalformedOnesAreRefused() throws {
    let meta = ArtifactMeta(stage: "distill", extra: ["dro": droRecord()])
    let d = try #require(try Calibration.droTrajectory(meta, role: "student", path: "s.npz"))
    #expect(d.updates == 2 && d.groups == 3 && d.every == 32 && d.eta == 0.1)
    #expect(d.history.count == 2 && abs(d.history[1][2] - (-log(3.0) + 0.02)) < 1e-15)
    #expect(try Calibration.droTrajectory(ArtifactMeta(stage: "distill"), role: "student", path: "s.npz") == nil)

    func message(_ j: JSON) -> String {
        do { _ = try Calibration.droTrajectory(ArtifactMeta(stage: "distill", extra: ["dro": j]), role: "student", path: "s.npz"); return "none" }
        catch { return "\(error)" }
    }
    guard case .object(var o) = droRecord() else { return }
    o["updates"] = 3
    #expect(message(.object(o)).contains("2 history rows for 3 updates"))
    o = { if case .object(let x) = droRecord() { return x }; return [:] }()
    o["history"] = [[0, 0, 0], [0, 0]]
    #expect(message(.object(o)).contains("history[1] has 2 values for 3 groups"))
    o.removeValue(forKey: "history")
    #expect(message(.object(o)).contains("no list 'history'"))
    #expect(message("dro").contains("student 's.npz': meta.extra.dro is not an object"))
}

/// evaluate end to end: a robust teacher with a shift and a DRO record, a
/// student with training counts and a DRO record. The new blocks match an
/// independent recomputation from the logits in metrics.npz.
@Test func evaluateRecordsCalibrationLogitAdjustmentAndDRO() throws {
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeTestSplits(dir)
    let student = try modelWithBatchNorm("c3,p,c4,p,gap,fc3", input: [8, 8, 3], seed: 3)
    let teacher = try modelWithBatchNorm("c4,p,c6,p,gap,fc5", input: [8, 8, 3], seed: 4)
    var s = Artifact(meta: ArtifactMeta(stage: "distill", parameters: [
        "method": "kd", "objective": "dro", "calibrated_teacher": true, "train_class_counts": [30, 9, 3],
    ], seed: 7, extra: ["dro": droRecord(updates: 4, groups: 3)]))
    NetworkArtifact.write(student, into: &s)
    try NPZ.write(s, to: dir + "/student.npz")
    let shift: [Float] = [0.1, 0.7, -0.2, 0.4, -1.1]
    let t = TeacherArtifact(model: teacher, classPriors: [Float](repeating: 0.2, count: 5), logShift: shift)
    try NPZ.write(t.artifact(meta: ArtifactMeta(stage: "train-teacher", parameters: ["objective": "dro"], seed: 0,
                                                extra: ["dro": droRecord(updates: 3, groups: 5)])),
                  to: dir + "/teacher.npz")
    let out = dir + "/run/metrics.json"
    let m = try EvaluateStage.run(EvaluateOptions(student: dir + "/student.npz", teacher: dir + "/teacher.npz", data: dir,
                                                  out: out, sets: ["rho=0", "seed=1"], batchSize: 5))
    #expect(m.run.calibratedTeacher == true && m.run.studentObjective == "dro" && m.run.teacherObjective == "dro")
    #expect(try RunMetrics.load(path: out) == m)

    let npz = try NPZ.read(dir + "/run/metrics.npz")
    let y = try StageKit.Dataset(path: dir + "/test.npz").labels
    let zs = try npz.array("student/logits_test").floats(), zt = try npz.array("teacher/logits_test").floats()
    // Independent softmax in Float → Double, and the shift of columns [1, 3, 4].
    func softmax(_ z: [Float], minus s: [Double]) -> [Double] {
        stride(from: 0, to: z.count, by: 3).flatMap { i -> [Double] in
            let e = (0..<3).map { exp(Double(z[i + $0]) - s[$0]) }
            return e.map { $0 / e.reduce(0, +) }
        }
    }
    let cs = Calibration.measure(probabilities: softmax(zs, minus: [0, 0, 0]), labels: y, classes: 3)
    let ct = Calibration.measure(probabilities: softmax(zt, minus: [0, 0, 0]), labels: y, classes: 3)
    let cc = Calibration.measure(probabilities: softmax(zt, minus: [0.7, 0.4, -1.1].map { Double(Float($0)) }), labels: y, classes: 3)
    for (got, want) in [(m.student.calibration, cs), (m.teacher?.calibration, ct), (m.teacher?.calibrationShiftRemoved, cc)] {
        let g = try #require(got)
        #expect(zip(g.classwiseEce, want.classwiseEce).allSatisfy { abs($0 - $1) < 1e-9 })
        #expect(abs(g.topLabelEce - want.topLabelEce) < 1e-9 && g.reliability.count == want.reliability.count)
        #expect(g.reliability.count.reduce(0, +) == y.count)
    }
    // Raw calibration accuracy is the network's own; the shift changes the teacher's scores.
    #expect(m.teacher?.calibration?.accuracy == m.teacher?.accTest)
    #expect(m.teacher?.calibration?.classwiseEce != m.teacher?.calibrationShiftRemoved?.classwiseEce)
    // Logit adjustment with π = (30, 9, 3)/42.
    let la = try #require(m.student.logitAdjusted)
    let want = try #require(Calibration.logitAdjusted(logits: zs, labels: y, classes: 3, trainCounts: [30, 9, 3]))
    #expect(la == want.metrics && la.classPriors == [30.0 / 42, 9.0 / 42, 3.0 / 42])
    #expect(try npz.array("student/logit_adjusted/pred_test").asInts() == want.predictions)
    // DRO copied from both networks.
    #expect(m.student.dro?.updates == 4 && m.student.dro?.groups == 3)
    #expect(m.teacher?.dro?.updates == 3 && m.teacher?.dro?.groups == 5)
    #expect(try npz.array("teacher/dro/history").shape == [3, 5])
    #expect(try npz.array("teacher/calibration_shift_removed/classwise_ece").doubles() == m.teacher?.calibrationShiftRemoved?.classwiseEce)
    #expect(try npz.array("student/calibration/reliability_count").shape == [10])

    // A malformed DRO record: refused before anything is written, exit class "data".
    try FileManager.default.removeItem(atPath: dir + "/run")
    s.meta?.extra["dro"] = ["updates": 2]
    try NPZ.write(s, to: dir + "/student.npz")
    do {
        _ = try EvaluateStage.run(EvaluateOptions(student: dir + "/student.npz", teacher: dir + "/teacher.npz", data: dir,
                                                  out: out, sets: ["rho=0", "seed=1"], batchSize: 5))
        Issue.record("a malformed dro record was accepted")
    } catch let e as EvaluationError {
        #expect(e.kind == .data && e.message.contains("meta.extra.dro"), "\(e)")
    }
    #expect(!FileManager.default.fileExists(atPath: out))
}

@Test func oldMetricsWithoutTheNewBlocksStillDecode() throws {
    let old = #"{"run": {"method": "kd", "rho": 0, "seed": 1}, "student": {"acc_test": 0.9}, "teacher": {"acc_test": 0.95}}"#
    let m = try RunMetrics.decode(Data(old.utf8))
    #expect(m.student.calibration == nil && m.student.logitAdjusted == nil && m.teacher?.dro == nil)
    #expect(m.run.calibratedTeacher == nil)
}
