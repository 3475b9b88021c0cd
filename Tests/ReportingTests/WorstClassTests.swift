import Foundation
import Testing
@testable import Reporting

// The worst-class study's report: correlations, Pareto front, teacher
// calibration, the predictor analysis and the DRO records, on runs built
// here with known values.

/// A calibration block whose per-class ECE mean is `mean` (max = 2·mean), whose argmax has
/// worst-class accuracy `worst`, with all 10 images in bin 7.
func calibration(mean: Double, worst: Double? = nil) -> CalibrationMetrics {
    let bins = ReliabilityBins(confidence: (0..<10).map { $0 == 7 ? 0.75 : .nan }, accuracy: (0..<10).map { $0 == 7 ? 0.7 : .nan },
                               count: (0..<10).map { $0 == 7 ? 10 : 0 })
    return CalibrationMetrics(bins: 10, classwiseEce: [0, 2 * mean, mean], classwiseEceMean: mean, classwiseEceMax: 2 * mean,
                              topLabelEce: mean / 2, accuracy: 0.8, worstClass: worst, reliability: bins,
                              classwiseReliability: [bins, bins, bins])
}

/// A companion-study run: student (acc, worst) with ± `spread` by seed (seed 1: −, seed 2: +),
/// the teacher's calibration, optional logit adjustment and DRO record.
func studyRun(t: String, s: String, seed: Int, acc: Double, worst: Double, imbalance: Double = 10, spread: Double = 0.01,
              calibrated: Bool? = nil, beta: Double? = nil, teacherECE: Double = 0.05, teacherWorst: Double = 0.5,
              shiftRemovedECE: Double? = nil, la: (Double, Double)? = nil, dro: DROTrajectory? = nil,
              teacherDRO: DROTrajectory? = nil) -> LoadedRun {
    let sign = seed == 1 ? -1.0 : 1.0
    let run = RunInfo(pipeline: "longtail", subtask: "gratings", method: "kd", rho: 0, seed: seed, teacherObjective: t,
                      studentObjective: s, beta: beta, imbalance: imbalance, calibratedTeacher: calibrated)
    var student = ModelMetrics(accTest: acc + sign * spread, worstClass: worst + sign * spread, dro: dro)
    if let (a, w) = la {
        student.logitAdjusted = LogitAdjustedMetrics(tau: 1, classPriors: [0.7, 0.2, 0.1], accTest: a + sign * spread,
                                                     worstClass: w + sign * spread, perClassRecall: [1, w, w])
    }
    let teacher = ModelMetrics(accTest: 0.9, worstClass: teacherWorst, calibration: calibration(mean: teacherECE, worst: teacherWorst),
                               calibrationShiftRemoved: calibration(mean: shiftRemovedECE ?? teacherECE, worst: teacherWorst),
                               dro: teacherDRO)
    let cal = calibrated == true ? "-cal" : ""
    return LoadedRun(path: "lt/\(t)\(cal)-if\(numberText(imbalance))/\(s)\(beta.map { "-b\($0)" } ?? "")/seed\(seed)/metrics.json",
                     metrics: RunMetrics(run: run, student: student, teacher: teacher, numClasses: 3))
}

@Test func ranksAndCorrelationsByHand() {
    #expect(averageRanks([10, 20, 20, 5]) == [2, 3.5, 3.5, 1])
    // Σd² = 4 over n = 5: ρ = 1 − 6·4 / (5·24) = 0.8.
    #expect(abs(spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])! - 0.8) < 1e-12)
    // r = 11 / √(5·26).
    #expect(abs(pearson([1, 2, 3, 4], [2, 4, 5, 9])! - 11 / (130.0).squareRoot()) < 1e-12)
    // Ties: ranks (1, 2.5, 2.5, 4) against (1, 3, 2, 4): 4.5 / √(4.5·5) = 3/√10.
    #expect(abs(spearman([1, 2, 2, 3], [1, 3, 2, 4])! - 3 / (10.0).squareRoot()) < 1e-12)
    #expect(spearman([1, 2, 3], [3, 2, 1]) == -1)
    #expect(pearson([1, 1, 1], [1, 2, 3]) == nil && pearson([1], [2]) == nil && spearman([1, 2], [1]) == nil)
}

@Test func paretoFrontOfKnownPoints() {
    let pts: [(x: Double, y: Double)] = [(80, 50), (85, 40), (78, 55), (79, 49), (85, 40), (70, 55)]
    // (79, 49) is beaten by (80, 50); (70, 55) by (78, 55) (equal y, higher x); equal points both stay.
    #expect(paretoFront(pts) == [true, true, true, false, true, false])
    #expect(paretoFront([]) == [])
}

/// Six combinations at imbalance 10 with designed means; the logit-adjusted point comes from
/// the std student's evaluation.
func paretoRuns() -> [LoadedRun] {
    var runs: [LoadedRun] = []
    for seed in [1, 2] {
        runs.append(studyRun(t: "erm", s: "std", seed: seed, acc: 0.80, worst: 0.40, la: (0.79, 0.55)))
        runs.append(studyRun(t: "erm", s: "reweighted", seed: seed, acc: 0.78, worst: 0.50))
        runs.append(studyRun(t: "dro", s: "dro", seed: seed, acc: 0.81, worst: 0.52))
        runs.append(studyRun(t: "dro", s: "dro", seed: seed, acc: 0.82, worst: 0.50, calibrated: true))
        runs.append(studyRun(t: "balanced", s: "balanced", seed: seed, acc: 0.77, worst: 0.45))
    }
    return runs
}

@Test func paretoPanelMarksTheFrontAndTheBaselines() throws {
    let d = Dataset(runs: paretoRuns())
    let c = Dataset(runs: d.companionRuns)
    #expect(c.runs.count == 12)                                   // 10 runs + 2 derived std+LA
    let panels = c.studyPanels
    #expect(panels.map(\.title) == ["all runs"])
    let p = panels[0]
    func point(_ label: String) throws -> StudyPoint { try #require(p.points.first { $0.label == label }) }
    // Teacher objective (erm first), uncalibrated first, then student objective (std first).
    #expect(p.points.map(\.label) == ["erm → std", "erm → reweighted", "erm → std+LA", "dro → dro", "dro (calibrated) → dro",
                                      "balanced → balanced"])
    #expect(try point("erm → std").baseline == .plain && point("erm → std+LA").baseline == .logitAdjusted)
    #expect(try point("erm → reweighted").baseline == .reweighted && point("dro → dro").baseline == nil)
    // Means and intervals: seeds at ±0.01, so s = 0.01·√2 and h = t(0.975, 1)·s/√2 = 12.706·0.01.
    let la = try point("erm → std+LA")
    #expect(abs(la.overall.mean - 0.79) < 1e-12 && abs(la.worst.mean - 0.55) < 1e-12 && la.n == 2)
    #expect(abs(la.worst.ciHalfWidth! - 0.127062047) < 1e-6)
    // Front: (79, 55), (81, 52), (82, 50); the rest are dominated.
    #expect(p.points.filter(\.onFront).map(\.label) == ["erm → std+LA", "dro → dro", "dro (calibrated) → dro"])
    // The students of a robust teacher are no baselines, whatever their objective.
    #expect(StudyCombo(RunInfo(method: "kd", rho: 0, seed: 1, teacherObjective: "dro", studentObjective: "reweighted")).baseline == nil)
    #expect(StudyCombo(RunInfo(method: "kd", rho: 0, seed: 1, teacherObjective: "erm", studentObjective: "std",
                               calibratedTeacher: true)).baseline == nil)
    #expect(p.dominatedBaselines(try point("dro → dro")).map(\.label) == ["erm → std", "erm → reweighted"])
    #expect(p.dominatedBaselines(try point("balanced → balanced")).isEmpty)

    let svg = WorstClassReport.pareto(p)
    let els = try #require(parseXML(svg))
    #expect(seriesPerPanel(els) == [3])                           // the robust combinations
    #expect(seriesPerPanel(els, cls: "baseline") == [3])          // erm → std, reweighted, std+LA
    #expect(seriesPerPanel(els, cls: "pareto-front") == [1])
    let front = try #require(els.first { $0.0 == "polyline" && $0.1["stroke-dasharray"] == "4,3" })
    #expect(front.1["points"]?.split(separator: " ").count == 3)
    // Labels: the three front points and the two baselines off the front.
    #expect(els.filter { $0.1["class"] == "point-label" }.count == 5)
}

@Test func betaAndImbalanceSplitPointsAndPanels() throws {
    var runs: [LoadedRun] = []
    for imb in [1.0, 100.0] {
        for seed in [1, 2] {
            runs.append(studyRun(t: "erm", s: "std", seed: seed, acc: 0.8, worst: 0.5, imbalance: imb, beta: 1))
            runs.append(studyRun(t: "erm", s: "dro", seed: seed, acc: 0.8, worst: 0.6, imbalance: imb, beta: 0.5))
            runs.append(studyRun(t: "erm", s: "dro", seed: seed, acc: 0.7, worst: 0.7, imbalance: imb, beta: 1))
        }
    }
    let panels = Dataset(runs: runs).studyPanels
    #expect(panels.map(\.title) == ["imbalance = 1", "imbalance = 100"])
    #expect(panels[0].points.map(\.label) == ["erm → std", "erm → dro, β = 0.5", "erm → dro, β = 1"])
    #expect(panels[1].points.allSatisfy(\.onFront) == false)
    #expect(panels[1].points.map(\.onFront) == [false, true, true])

    // The figure joins erm → dro over β in β order (β = 0.5 at (80, 60), β = 1 at (70, 70): x falls),
    // and draws no path for erm → std, which has one β.
    let els = try #require(parseXML(WorstClassReport.pareto(panels[0])))
    #expect(seriesPerPanel(els, cls: "beta-path") == [1])
    let path = els.filter { $0.0 == "polyline" && $0.1["stroke-dasharray"] == "1.5,2.5" }
    #expect(path.count == 1)
    let xs = (path.first?.1["points"] ?? "").split(separator: " ").compactMap { Double($0.split(separator: ",")[0]) }
    #expect(xs.count == 2 && xs[0] > xs[1])
}

/// The longtail pipeline names each student variant after its objective (kd-std, kd-dro-b0.5,
/// kd-std-cal): those names say nothing the settings do not, and must not split the views.
/// Two methods on one configuration (kd and fitnet under the same objectives) still do.
@Test func objectiveVariantNamesDoNotSplitTheViews() {
    func named(_ r: LoadedRun, _ m: String) -> LoadedRun { var r = r; r.metrics.run.method = m; return r }
    var runs: [LoadedRun] = []
    for seed in [1, 2] {
        runs.append(named(studyRun(t: "erm", s: "std", seed: seed, acc: 0.8, worst: 0.5), "kd-std"))
        runs.append(named(studyRun(t: "erm", s: "dro", seed: seed, acc: 0.8, worst: 0.6), "kd-dro"))
        runs.append(named(studyRun(t: "erm", s: "dro", seed: seed, acc: 0.7, worst: 0.7, beta: 0.5), "kd-dro-b0.5"))
        runs.append(named(studyRun(t: "dro", s: "std", seed: seed, acc: 0.8, worst: 0.6, calibrated: true), "kd-std-cal"))
    }
    let d = Dataset(runs: runs)
    #expect(!d.methodDistinguishesRuns)
    #expect(d.studyPanels.map(\.title) == ["all runs"])
    #expect(d.studyPanels[0].points.count == 4)
    #expect(d.objectiveGroups.allSatisfy { !$0.title.contains("method") })

    let twoMethods = runs + runs.map { named($0, "fitnet-" + $0.metrics.run.method) }
    let t = Dataset(runs: twoMethods)
    #expect(t.methodDistinguishesRuns)
    #expect(t.studyPanels.count == 8 && t.studyPanels.allSatisfy { $0.points.count == 1 })
}

@Test func teacherCalibrationIsSummarisedPerTeacherOverSeeds() throws {
    var runs: [LoadedRun] = []
    for seed in [1, 2] {
        // Two student runs per seed repeat their teacher's numbers.
        for s in ["std", "dro"] {
            runs.append(studyRun(t: "erm", s: s, seed: seed, acc: 0.8, worst: 0.5, teacherECE: seed == 1 ? 0.04 : 0.06))
            runs.append(studyRun(t: "dro", s: s, seed: seed, acc: 0.8, worst: 0.5, teacherECE: 0.10, shiftRemovedECE: 0.03))
        }
    }
    let ts = Dataset(runs: runs).teacherSummaries
    #expect(ts.map(\.config.label) == ["teacher erm, imbalance 10", "teacher dro, imbalance 10"])
    #expect(ts[0].seeds == [1, 2] && abs(ts[0].eceMean!.mean - 0.05) < 1e-12 && abs(ts[0].eceMax!.mean - 0.10) < 1e-12)
    #expect(ts[0].shiftMatters == false && ts[1].shiftMatters == true)
    #expect(abs(ts[1].eceMeanShiftRemoved!.mean - 0.03) < 1e-12 && ts[1].eceMean!.mean == 0.10)
    // Pooled bins: one evaluation per seed, so 2 × 10 images, not 4 × 10.
    #expect(ts[0].reliability?.count[7] == 20 && ts[0].classwiseReliability?.count[7] == 60)
    #expect(poolReliability([ReliabilityBins(confidence: [0.2, .nan], accuracy: [0, .nan], count: [1, 0]),
                             ReliabilityBins(confidence: [0.1, 0.9], accuracy: [1, 1], count: [3, 2])])
        == ReliabilityBins(confidence: [0.125, 0.9], accuracy: [0.75, 1], count: [4, 2]))

    let svg = try #require(WorstClassReport.reliabilityFigure(ts[1]))
    let els = try #require(parseXML(svg))
    #expect(seriesPerPanel(els) == [2, 2])                        // raw and shift removed
    #expect(seriesPerPanel(els, cls: "reference") == [1, 1])      // the diagonal
    let ermFigure = try #require(WorstClassReport.reliabilityFigure(ts[0]))
    let ermElements = try #require(parseXML(ermFigure))
    #expect(seriesPerPanel(ermElements) == [1, 1])
    let md = try #require(WorstClassReport.calibrationSection(Dataset(runs: runs)))
    #expect(md.contains("| erm | 10 | 90.0 | 50.0 | 0.050 ± 0.127 | 0.100 ± 0.254 | 0.050 ± 0.127 | 0.100 ± 0.254 | 50.0 | 0.025 ± 0.064 | 2 | `reliability-erm-imbalance-10.svg` |"), "\(md)")
}

@Test func predictorAnalysisFindsTheKnownCorrelations() throws {
    // Three teachers: ECE 0.10, 0.05, 0.02 and worst class 0.30, 0.50, 0.40; std students 0.40, 0.50, 0.60,
    // dro students 0.55, 0.45, 0.50.
    var runs: [LoadedRun] = []
    let teachers: [(String, Double, Double)] = [("erm", 0.10, 0.30), ("balanced", 0.05, 0.50), ("dro", 0.02, 0.40)]
    let std = [0.40, 0.50, 0.60], dro = [0.55, 0.45, 0.50]
    for seed in [1, 2] {
        for (i, (t, e, w)) in teachers.enumerated() {
            runs.append(studyRun(t: t, s: "std", seed: seed, acc: 0.8, worst: std[i], teacherECE: e, teacherWorst: w))
            runs.append(studyRun(t: t, s: "dro", seed: seed, acc: 0.8, worst: dro[i], teacherECE: e, teacherWorst: w))
        }
    }
    let d = Dataset(runs: runs)
    let cells = d.predictorCells
    #expect(cells.count == 6)
    let c = d.predictorComparisons
    #expect(c.map(\.name) == ["std", "dro", "pooled"] && c.map(\.n) == [3, 3, 6])
    // std: ECE ranks (3, 2, 1) against (1, 2, 3): −1; worst-class ranks (1, 3, 2): 1 − 6·2/24 = 0.5.
    #expect(abs(c[0].spearmanEce! + 1) < 1e-12 && abs(c[0].spearmanWorst! - 0.5) < 1e-12)
    #expect(abs(c[0].pearsonEce! - -0.9897433186107871) < 1e-9 && abs(c[0].pearsonWorst! - 0.5) < 1e-9)
    #expect(c[0].winner == "per-class ECE")
    // dro: ECE ranks (3, 2, 1) against (3, 1, 2): 0.5; worst ranks (1, 3, 2) against (3, 1, 2): −1.
    #expect(abs(c[1].spearmanEce! - 0.5) < 1e-12 && abs(c[1].spearmanWorst! + 1) < 1e-12)
    #expect(c[1].winner == "teacher worst-class accuracy (reversed: worse teacher, better student)")
    let pooledX = cells.map(\.teacherEce), pooledY = cells.map(\.studentWorstClass)
    #expect(c[2].spearmanEce == spearman(pooledX, pooledY))
    let md = try #require(WorstClassReport.predictorSection(d))
    #expect(md.contains("| std | 3 | -1.000 | +0.500 | -0.990 | +0.500 | per-class ECE |"), "\(md)")
    #expect(md.contains("| pooled | 6 |"))
}

/// With two imbalance factors the correlations are also given within each one: there the
/// ranking may differ from the pooled one, which mostly follows the factor.
@Test func predictorAnalysisWithinEachImbalance() throws {
    var runs: [LoadedRun] = []
    // At r = 10: ECE 0.01, 0.02, 0.03 with students 0.9, 0.8, 0.7 (ECE predicts, ρ = −1); worst class
    // 0.99, 0.97, 0.98 (ρ = +0.5). At r = 30 everything is worse, so pooled both predictors track r.
    let cells: [(Double, String, Double, Double, Double)] = [
        (10, "erm", 0.01, 0.99, 0.9), (10, "balanced", 0.02, 0.97, 0.8), (10, "dro", 0.03, 0.98, 0.7),
        (30, "erm", 0.05, 0.90, 0.1), (30, "balanced", 0.06, 0.92, 0.3), (30, "dro", 0.07, 0.91, 0.2)]
    for seed in [1, 2] {
        for (r, t, e, w, s) in cells {
            runs.append(studyRun(t: t, s: "std", seed: seed, acc: 0.8, worst: s, imbalance: r, teacherECE: e, teacherWorst: w))
        }
    }
    // A third factor with two cells gives no within-factor row (n < 3), but counts in the others.
    runs.append(studyRun(t: "erm", s: "std", seed: 1, acc: 0.8, worst: 0.9, imbalance: 1, teacherECE: 0.01, teacherWorst: 1))
    runs.append(studyRun(t: "dro", s: "std", seed: 1, acc: 0.8, worst: 0.9, imbalance: 1, teacherECE: 0.01, teacherWorst: 1))
    let c = Dataset(runs: runs).predictorComparisons
    #expect(c.map(\.name) == ["std", "pooled", "std, imbalance 10", "std, imbalance 30", "pooled, imbalance 10",
                              "pooled, imbalance 30"])
    #expect(c.map(\.n) == [8, 8, 3, 3, 3, 3])
    let r10 = c[2], r30 = c[3]
    #expect(abs(r10.spearmanEce! + 1) < 1e-12 && abs(r10.spearmanWorst! - 0.5) < 1e-12)
    #expect(r10.winner == "per-class ECE")
    // r = 30: ECE ranks (1, 2, 3) against students (1, 3, 2): +0.5; worst ranks (1, 3, 2): +1.
    #expect(abs(r30.spearmanEce! - 0.5) < 1e-12 && abs(r30.spearmanWorst! - 1) < 1e-12)
    #expect(r30.winner == "teacher worst-class accuracy")
    // A winner with the unhelpful sign says so: here a less calibrated teacher goes with a better student.
    let reversed = Dataset(runs: [1, 2].flatMap { seed in
        [("erm", 0.01, 0.5, 0.1), ("balanced", 0.02, 0.6, 0.2), ("dro", 0.03, 0.4, 0.3)].map { t, e, w, s in
            studyRun(t: t, s: "std", seed: seed, acc: 0.8, worst: s, teacherECE: e, teacherWorst: w)
        }
    }).predictorComparisons[0]
    #expect(reversed.winner == "per-class ECE (reversed: less calibrated, better student)")
}

@Test func calibratedTeacherIsJudgedByItsShiftRemovedScores() throws {
    var runs: [LoadedRun] = []
    for seed in [1, 2] {
        runs.append(studyRun(t: "dro", s: "std", seed: seed, acc: 0.8, worst: 0.5, teacherECE: 0.2, shiftRemovedECE: 0.01))
        runs.append(studyRun(t: "dro", s: "std", seed: seed, acc: 0.8, worst: 0.6, calibrated: true, teacherECE: 0.2,
                             shiftRemovedECE: 0.01))
    }
    let cells = Dataset(runs: runs).predictorCells
    #expect(cells.map(\.calibrated) == [false, true])
    #expect(cells.map(\.teacherEce) == [0.2, 0.01])
    #expect(cells.allSatisfy { $0.n == 2 })
    // Two points: correlations are defined but no winner is named (n < 3).
    let md = try #require(WorstClassReport.predictorSection(Dataset(runs: runs)))
    #expect(md.contains("– (n < 3)"))
}

func trajectory(updates: Int, groups: Int = 3, drift: Double = 0.05) -> DROTrajectory {
    let start = -log(Double(groups))
    let history = (1...max(updates, 1)).prefix(updates).map { u in (0..<groups).map { start + drift * Double(u) * Double($0 - 1) } }
    let flat = history.flatMap { $0 }
    return DROTrajectory(updates: updates, logLambdaMin: flat.min() ?? start, logLambdaMax: flat.max() ?? start,
                         finalLogLambda: history.last ?? [Double](repeating: start, count: groups), history: history, every: 32, eta: 0.1)
}

@Test func droRecordsTableAndFigureUseTheFirstSeed() throws {
    var runs: [LoadedRun] = []
    for seed in [2, 1] {          // the smaller seed comes second: still chosen
        runs.append(studyRun(t: "dro", s: "dro", seed: seed, acc: 0.8, worst: 0.5, dro: trajectory(updates: seed == 1 ? 4 : 6),
                             teacherDRO: trajectory(updates: 10, groups: 5)))
        runs.append(studyRun(t: "dro", s: "std", seed: seed, acc: 0.8, worst: 0.5, teacherDRO: trajectory(updates: 10, groups: 5)))
        runs.append(studyRun(t: "erm", s: "dro", seed: seed, acc: 0.8, worst: 0.5, dro: trajectory(updates: 7)))
    }
    let d = Dataset(runs: runs)
    let records = d.droRecords
    // Four student records, and the dro teacher's once per seed (not once per student run).
    #expect(records.map(\.role) == ["student", "student", "student", "student", "teacher", "teacher"])
    let first = WorstClassReport.firstSeedRecords(records)
    #expect(first.map(\.seed) == [1, 1, 1] && first.map(\.trajectory.updates) == [4, 7, 10])
    // The figure: one student of the panel, the erm teacher's (first in the Pareto order), and the dro teacher.
    let shown = WorstClassReport.figureRecords(records)
    #expect(shown.map(\.configuration) == ["student dro, teacher erm", "teacher dro, imbalance 10"])
    let svg = try #require(WorstClassReport.droFigure(d))
    let els = try #require(parseXML(svg))
    #expect(seriesPerPanel(els) == [3, 5])                        // one series per group
    let md = try #require(WorstClassReport.droSection(d))
    #expect(md.contains("| student dro, teacher dro | 2 | 4–6 | 3 |"), "\(md)")
    #expect(md.contains("| student dro, teacher erm | 2 | 7 | 3 |"))
    #expect(md.contains("| teacher dro, imbalance 10 | 2 | 10 | 5 |"))
    // log λ range over both student runs: 6 updates of drift 0.05 reach ±0.3 around log(1/3).
    #expect(md.contains(String(format: "[%.3f, %.3f]", -log(3.0) - 0.3, -log(3.0) + 0.3)))
    #expect(WorstClassReport.droFigure(Dataset(runs: paretoRuns())) == nil)
}

@Test func stageWritesTheStudyAndRemovesStaleFigures() throws {
    let root = try tempDir()
    defer { try? FileManager.default.removeItem(atPath: root) }
    var runs = paretoRuns()
    runs.append(studyRun(t: "dro", s: "dro", seed: 1, acc: 0.8, worst: 0.5, imbalance: 100, dro: trajectory(updates: 3)))
    for r in runs {
        let path = root + "/" + r.path
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try r.metrics.jsonData().write(to: URL(fileURLWithPath: path))
    }
    let out = root + "/report"
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    try Data("old".utf8).write(to: URL(fileURLWithPath: out + "/pareto-imbalance-3.svg"))
    let result = try ReportStage.run(ReportOptions(root: root, out: out))
    let names = result.written.map { ($0 as NSString).lastPathComponent }
    #expect(names.contains("pareto-imbalance-10.svg") && names.contains("pareto-imbalance-100.svg"))
    #expect(names.contains("reliability-erm-imbalance-10.svg") && names.contains("dro-trajectory.svg"))
    #expect(result.removed.map { ($0 as NSString).lastPathComponent } == ["pareto-imbalance-3.svg"])
    for n in names where n.hasSuffix(".svg") {
        #expect(parseXML(try String(contentsOfFile: out + "/" + n, encoding: .utf8)) != nil, "\(n)")
    }
    let summary = try String(contentsOfFile: out + "/summary.md", encoding: .utf8)
    for title in ["## Worst-class study: overall vs worst-class accuracy (Pareto view)", "## Teacher calibration on the subtask",
                  "## Does the teacher's calibration", "## DRO group weights"] {
        #expect(summary.contains(title), "\(title)")
    }
    // The companion grid gains the logit-adjusted column.
    #expect(summary.contains("| erm | ") && summary.contains("std+LA"))
    let csv = parseCSV(try String(contentsOfFile: out + "/results.csv", encoding: .utf8))
    #expect(csv[0].contains("la_acc_test") && csv[0].contains("calibrated_teacher") && csv[0].last == "path")
    // Deterministic: the same bytes again.
    let before = try Data(contentsOf: URL(fileURLWithPath: out + "/summary.md"))
    let pareto = try Data(contentsOf: URL(fileURLWithPath: out + "/pareto-imbalance-10.svg"))
    _ = try ReportStage.run(ReportOptions(root: root, out: out))
    #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/summary.md")) == before)
    #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/pareto-imbalance-10.svg")) == pareto)
}

@Test func olderRunsWithoutTheCalibratedFlagShareTheSeries() {
    var old = makeRun("kd", rho: 0, seed: 1, acc: 0.8)
    old.metrics.run.calibratedTeacher = nil
    var new = makeRun("kd", rho: 0, seed: 2, acc: 0.7)
    new.metrics.run.calibratedTeacher = false
    #expect(Dataset(runs: [old, new]).series.count == 1)
    var cal = makeRun("kd", rho: 0, seed: 1, acc: 0.9)
    cal.metrics.run.calibratedTeacher = true
    #expect(Dataset(runs: [old, new, cal]).series.map(\.name) == ["kd [cal=false]", "kd [cal=true]"])
}

@Test func plainPipelinesKeepTheirOutput() throws {
    // Runs whose objectives do not vary: no study sections or figures, the published CSV header.
    let runs = [makeRun("kd", rho: 0, seed: 1, acc: 0.8, tObj: "erm", sObj: "std"),
                makeRun("kd", rho: 1, seed: 1, acc: 0.5, tObj: "erm", sObj: "std")]
    let d = Dataset(runs: runs)
    #expect(WorstClassReport.sections(d) == nil && WorstClassReport.figures(d).isEmpty)
    #expect(parseCSV(ResultsCSV.render(runs))[0] == ResultsCSV.columns)
    #expect(!SummaryMarkdown.render(d, root: "r", gaps: Gaps(), expected: nil).contains("Worst-class study"))
}

@Test func numberTextReadsFloat32ValuesAsTheyWereSet() {
    #expect(numberText(Double(Float(0.1))) == "0.1")
    #expect(numberText(0.1) == "0.1")
    #expect(numberText(100) == "100")
    #expect(numberText(0.25) == "0.25")
    #expect(numberText(1e-5) == "1e-05")
}
