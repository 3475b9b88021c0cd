import Foundation

// The worst-class study's analyses (Wang et al. 2022, "Robust Distillation
// for Worst-class Performance"), on top of the companion grids of
// Companion.swift: the Pareto view of overall against worst-class accuracy
// with its baselines, the teachers' calibration, whether calibration or the
// teacher's own worst-class accuracy predicts the student's worst-class
// accuracy, and the DRO weights over training. Rendering is in
// WorstClassReport.swift.

// MARK: - Correlation

/// Ranks 1…n of the values, tied values sharing the mean of their positions
/// (the ranks Spearman's coefficient needs with ties).
public func averageRanks(_ v: [Double]) -> [Double] {
    let order = v.indices.sorted { v[$0] != v[$1] ? v[$0] < v[$1] : $0 < $1 }
    var ranks = [Double](repeating: 0, count: v.count)
    var i = 0
    while i < order.count {
        var j = i
        while j + 1 < order.count && v[order[j + 1]] == v[order[i]] { j += 1 }
        let r = Double(i + j) / 2 + 1
        for k in i...j { ranks[order[k]] = r }
        i = j + 1
    }
    return ranks
}

/// Pearson's r = Σ(x − x̄)(y − ȳ) / √(Σ(x − x̄)² Σ(y − ȳ)²); nil for fewer
/// than two pairs, unequal lengths or a constant variable (r undefined).
public func pearson(_ x: [Double], _ y: [Double]) -> Double? {
    guard x.count == y.count, x.count >= 2, (x + y).allSatisfy(\.isFinite) else { return nil }
    let n = Double(x.count)
    let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
    var sxy = 0.0, sxx = 0.0, syy = 0.0
    for (a, b) in zip(x, y) {
        sxy += (a - mx) * (b - my)
        sxx += (a - mx) * (a - mx)
        syy += (b - my) * (b - my)
    }
    guard sxx > 0, syy > 0 else { return nil }
    return max(-1, min(1, sxy / (sxx * syy).squareRoot()))
}

/// Spearman's ρ: Pearson's r of the average ranks (ties handled); nil as
/// for `pearson`.
public func spearman(_ x: [Double], _ y: [Double]) -> Double? {
    guard x.count == y.count else { return nil }
    return pearson(averageRanks(x), averageRanks(y))
}

// MARK: - Pareto front

/// Which points are non-dominated when both coordinates are to be
/// maximised: p is dominated when another point is at least as good in
/// both and better in one. Equal points do not dominate each other.
public func paretoFront(_ points: [(x: Double, y: Double)]) -> [Bool] {
    points.map { p in
        !points.contains { q in q.x >= p.x && q.y >= p.y && (q.x > p.x || q.y > p.y) }
    }
}

// MARK: - Points of the Pareto view

/// The baselines of the worst-class study, drawn apart from the robust
/// combinations.
public enum BaselineKind: String, CaseIterable, Sendable {
    /// Plain distillation: an erm teacher and a std student.
    case plain = "erm → std"
    /// Post-hoc logit adjustment of the erm teacher's std student (Menon et al. 2021).
    case logitAdjusted = "erm → std + logit adjustment"
    /// A class-re-weighted student loss (student objective `reweighted`) from the erm teacher.
    case reweighted = "erm → reweighted"
}

/// A teacher objective × student objective combination, with the
/// calibrated-teacher flag and β of the student's objective.
public struct StudyCombo: Hashable, Sendable {
    public var teacherObjective: String?
    public var calibrated: Bool
    public var studentObjective: String?
    public var beta: Double?

    /// The teacher as the student sees it: "dro", "dro (calibrated)".
    public var teacherKey: String { (teacherObjective ?? "–") + (calibrated ? " (calibrated)" : "") }

    /// "dro (calibrated) → balanced, β = 0.5" (β only when `showBeta`).
    public func label(showBeta: Bool) -> String {
        var s = "\(teacherKey) → \(studentObjective ?? "–")"
        if showBeta, let b = beta { s += ", β = \(numberText(b))" }
        return s
    }

    /// Which baseline the combination is, if any: the plain (erm) teacher,
    /// used as it is, with a std, logit-adjusted or re-weighted student. The
    /// same students of a robust teacher are combinations like any other.
    public var baseline: BaselineKind? {
        let plainTeacher = teacherObjective.map { Dataset.baselineObjectives.contains($0.lowercased()) } ?? true
        guard plainTeacher && !calibrated else { return nil }
        let s = studentObjective?.lowercased()
        if s == Dataset.logitAdjustedObjective.lowercased() { return .logitAdjusted }
        if s == "reweighted" { return .reweighted }
        return s.map { Dataset.baselineObjectives.contains($0) } ?? true ? .plain : nil
    }

    init(_ r: RunInfo) {
        teacherObjective = r.teacherObjective
        calibrated = r.calibratedTeacher ?? false
        studentObjective = r.studentObjective
        beta = r.beta
    }
}

/// One combination of a Pareto panel: means and 95 % intervals over seeds.
public struct StudyPoint: Sendable {
    public var combo: StudyCombo
    public var label: String
    public var overall: Stat
    public var worst: Stat
    /// Runs behind the point.
    public var n: Int
    /// Non-dominated among the panel's means.
    public var onFront: Bool
    public var baseline: BaselineKind? { combo.baseline }
}

/// All combinations of one imbalance factor (and of whatever else varies,
/// except the objectives, the calibrated flag and β).
public struct StudyPanel: Sendable {
    public var title: String
    public var points: [StudyPoint]

    /// For a non-baseline point, the baselines whose means it dominates
    /// (at least as good in both, better in one): a Pareto improvement.
    public func dominatedBaselines(_ p: StudyPoint) -> [StudyPoint] {
        guard p.baseline == nil else { return [] }
        let (x, y) = (p.overall.mean, p.worst.mean)
        return points.filter { b in
            b.baseline != nil && x >= b.overall.mean && y >= b.worst.mean && (x > b.overall.mean || y > b.worst.mean)
        }
    }
}

// MARK: - Teachers

/// One teacher as trained: its objective and the data it saw (imbalance and
/// whatever else that can change a teacher varies over the runs).
public struct TeacherConfig: Hashable, Sendable {
    public var objective: String?
    public var imbalance: Double?
    /// Other teacher-relevant settings that vary ("subtask = stars"); "" when none.
    public var context: String

    public var label: String {
        var s = "teacher \(objective ?? "–")"
        if let i = imbalance { s += ", imbalance \(numberText(i))" }
        if !context.isEmpty { s += ", " + context }
        return s
    }
}

/// A teacher's numbers over seeds: per seed one evaluation (every student
/// run of a seed repeats it), then mean and interval over seeds.
public struct TeacherSummary: Sendable {
    public var config: TeacherConfig
    /// Seeds with a teacher evaluation.
    public var seeds: [Int]
    public var accuracy: Stat?
    public var worstClass: Stat?
    /// Per-class ECE mean and max, raw scores and shift removed.
    public var eceMean: Stat?, eceMax: Stat?
    public var eceMeanShiftRemoved: Stat?, eceMaxShiftRemoved: Stat?
    public var topLabelEce: Stat?, topLabelEceShiftRemoved: Stat?
    /// Worst-class accuracy of argmax of the shift-removed scores.
    public var worstClassShiftRemoved: Stat?
    /// Reliability bins pooled over seeds (counts added, means weighted by counts).
    public var reliability: ReliabilityBins?, reliabilityShiftRemoved: ReliabilityBins?
    /// Class-wise (one-vs-rest) bins pooled over classes and seeds.
    public var classwiseReliability: ReliabilityBins?, classwiseReliabilityShiftRemoved: ReliabilityBins?
    /// Whether the shift-removed scores differ from the raw ones anywhere (false for erm teachers).
    public var shiftMatters: Bool
}

/// Pools reliability bins: counts added, mean confidence and accuracy weighted by counts. nil when
/// the inputs disagree on the number of bins or there are none.
public func poolReliability(_ parts: [ReliabilityBins]) -> ReliabilityBins? {
    guard let b = parts.first?.count.count, b > 0,
          parts.allSatisfy({ $0.count.count == b && $0.confidence.count == b && $0.accuracy.count == b }) else { return nil }
    var n = [Int](repeating: 0, count: b), conf = [Double](repeating: 0, count: b), acc = [Double](repeating: 0, count: b)
    for p in parts {
        for i in 0..<b where p.count[i] > 0 {
            n[i] += p.count[i]
            conf[i] += Double(p.count[i]) * p.confidence[i]
            acc[i] += Double(p.count[i]) * p.accuracy[i]
        }
    }
    return ReliabilityBins(confidence: (0..<b).map { n[$0] > 0 ? conf[$0] / Double(n[$0]) : .nan },
                           accuracy: (0..<b).map { n[$0] > 0 ? acc[$0] / Double(n[$0]) : .nan }, count: n)
}

// MARK: - Predictors of the student's worst-class accuracy

/// One (teacher as the student saw it, student objective) cell of the
/// predictor analysis: the teacher's per-class ECE mean and worst-class
/// accuracy of the scores the student was distilled from, and the
/// student's mean worst-class accuracy.
public struct PredictorCell: Sendable {
    public var teacher: TeacherConfig
    public var calibrated: Bool
    public var studentObjective: String
    public var teacherEce: Double
    public var teacherWorstClass: Double
    public var studentWorstClass: Double
    /// Student runs behind the mean.
    public var n: Int
}

/// Correlations of both predictors with the student's worst-class accuracy
/// over a set of cells.
public struct PredictorComparison: Sendable {
    /// "kd std", or "pooled".
    public var name: String
    public var n: Int
    public var spearmanEce: Double?, spearmanWorst: Double?
    public var pearsonEce: Double?, pearsonWorst: Double?

    /// The predictor with the larger |Spearman ρ|; nil when either is
    /// undefined, "tie" when equal. A winner whose sign is the unhelpful one
    /// (a less calibrated or a worse teacher going with a better student)
    /// says so.
    public var winner: String? {
        guard let e = spearmanEce, let w = spearmanWorst else { return nil }
        if abs(abs(e) - abs(w)) < 1e-12 { return "tie" }
        if abs(e) > abs(w) { return "per-class ECE" + (e > 0 ? " (reversed: less calibrated, better student)" : "") }
        return "teacher worst-class accuracy" + (w < 0 ? " (reversed: worse teacher, better student)" : "")
    }

    public init(name: String, cells: [PredictorCell]) {
        self.name = name
        n = cells.count
        let y = cells.map(\.studentWorstClass)
        spearmanEce = spearman(cells.map(\.teacherEce), y)
        spearmanWorst = spearman(cells.map(\.teacherWorstClass), y)
        pearsonEce = pearson(cells.map(\.teacherEce), y)
        pearsonWorst = pearson(cells.map(\.teacherWorstClass), y)
    }
}

// MARK: - The study over a dataset

extension Dataset {
    /// Student objective of the derived post-hoc logit-adjusted runs.
    public static let logitAdjustedObjective = "std+LA"

    /// The runs of the companion study: every run, plus for each run of a
    /// plain (std) student with a logit-adjusted evaluation a derived run
    /// with student objective `std+LA` whose test and worst-class accuracy
    /// are the adjusted ones (its own point in grids and figures).
    public var companionRuns: [LoadedRun] {
        var out = runs
        for r in runs {
            guard let la = r.metrics.student.logitAdjusted else { continue }
            let s = r.metrics.run.studentObjective?.lowercased()
            guard s.map({ Dataset.baselineObjectives.contains($0) }) ?? true else { continue }
            var m = r.metrics
            m.run.studentObjective = Dataset.logitAdjustedObjective
            m.student = ModelMetrics(accTest: la.accTest, worstClass: la.worstClass, perClassRecall: la.perClassRecall)
            out.append(LoadedRun(path: r.path + "#logit-adjusted", metrics: m))
        }
        return out
    }

    /// Fields that split the Pareto view into panels: those that vary, except
    /// the objectives, β and the calibrated flag (points within a panel);
    /// imbalance first.
    var panelFields: [ConfigField] {
        ([.imbalance] + ConfigField.allCases.filter { $0 != .imbalance }).filter {
            ![.teacherObjective, .studentObjective, .beta, .calibratedTeacher].contains($0) && values(of: $0).count > 1
        }
    }

    /// Runs grouped by `panelFields` (plus method and ρ when they vary), in order of first appearance.
    func panelGroups() -> [(title: String, runs: [LoadedRun])] {
        let fields = panelFields
        let methodVaries = methodDistinguishesRuns
        func key(_ r: RunInfo) -> [String] {
            var k = fields.map { f in f == .imbalance ? "imbalance = \(f.value(r) ?? "–")" : "\(f.rawValue) = \(f.value(r) ?? "–")" }
            if methodVaries { k.append("method = \(r.method)") }
            if rhos.count > 1 { k.append("ρ = \(numberText(r.rho))") }
            return k
        }
        var keys: [[String]] = [], members: [[LoadedRun]] = []
        for r in runs {
            let k = key(r.metrics.run)
            if let j = keys.firstIndex(of: k) { members[j].append(r) } else { keys.append(k); members.append([r]) }
        }
        return zip(keys, members).map { ($0.isEmpty ? "all runs" : $0.joined(separator: ", "), $1) }
    }

    /// Student objectives whose β varies over the runs (β then labels their points).
    var objectivesWithVaryingBeta: Set<String> {
        var betas: [String: Set<OptionalKey>] = [:]
        for r in runs { betas[r.metrics.run.studentObjective ?? "–", default: []].insert(OptionalKey(r.metrics.run.beta.map(numberText))) }
        return Set(betas.filter { $0.value.count > 1 }.map(\.key))
    }

    /// The Pareto view: one panel per imbalance factor (and other varying
    /// settings), one point per combination with overall and worst-class
    /// accuracy on test over seeds. Call on a dataset of `companionRuns`.
    public var studyPanels: [StudyPanel] {
        let betaVaries = objectivesWithVaryingBeta
        // Points in a fixed, readable order: teacher objective (baseline first), uncalibrated before
        // calibrated, student objective (baseline first), β ascending.
        let tOrder = teacherObjectives.map { $0 ?? "–" }, sOrder = studentObjectives.map { $0 ?? "–" }
        func rank(_ c: StudyCombo) -> (Int, Int, Int, Double) {
            (tOrder.firstIndex(of: c.teacherObjective ?? "–") ?? tOrder.count, c.calibrated ? 1 : 0,
             sOrder.firstIndex(of: c.studentObjective ?? "–") ?? sOrder.count, c.beta ?? -.infinity)
        }
        return panelGroups().compactMap { title, rs in
            var combos: [StudyCombo] = []
            for r in rs where !combos.contains(StudyCombo(r.metrics.run)) { combos.append(StudyCombo(r.metrics.run)) }
            combos.sort { rank($0) < rank($1) }
            var points: [StudyPoint] = combos.compactMap { c in
                let cell = rs.filter { StudyCombo($0.metrics.run) == c }
                guard let o = describe(cell.compactMap { Metric.accTest.value($0.metrics.student) }),
                      let w = describe(cell.compactMap { Metric.worstClass.value($0.metrics.student) }) else { return nil }
                return StudyPoint(combo: c, label: c.label(showBeta: betaVaries.contains(c.studentObjective ?? "–")),
                                  overall: o, worst: w, n: cell.count, onFront: false)
            }
            guard !points.isEmpty else { return nil }
            let front = paretoFront(points.map { (x: $0.overall.mean, y: $0.worst.mean) })
            for i in points.indices { points[i].onFront = front[i] }
            return StudyPanel(title: title, points: points)
        }
    }

    /// The teacher configuration of a run.
    func teacherConfig(_ r: RunInfo) -> TeacherConfig {
        let other = [ConfigField.pipeline, .subtask].filter { values(of: $0).count > 1 }
        return TeacherConfig(objective: r.teacherObjective, imbalance: r.imbalance,
                             context: other.map { "\($0.rawValue) = \($0.value(r) ?? "–")" }.joined(separator: ", "))
    }

    /// One value per seed (mean over the seed's runs, which repeat the
    /// teacher's evaluation), then mean and interval over seeds.
    static func overSeeds(_ rs: [LoadedRun], _ value: (LoadedRun) -> Double?) -> Stat? {
        var perSeed: [Int: [Double]] = [:]
        for r in rs { if let v = value(r), v.isFinite { perSeed[r.metrics.run.seed, default: []].append(v) } }
        return describe(perSeed.keys.sorted().map { perSeed[$0]!.reduce(0, +) / Double(perSeed[$0]!.count) })
    }

    /// Every teacher configuration with a calibration record, in order of first appearance.
    public var teacherSummaries: [TeacherSummary] {
        var configs: [TeacherConfig] = []
        for r in runs where r.metrics.teacher?.calibration != nil {
            let c = teacherConfig(r.metrics.run)
            if !configs.contains(c) { configs.append(c) }
        }
        return configs.map { c in
            let rs = runs.filter { $0.metrics.teacher?.calibration != nil && teacherConfig($0.metrics.run) == c }
            // One evaluation per seed (the first run of the seed) for the pooled bins.
            var firstOfSeed: [Int: LoadedRun] = [:]
            for r in rs where firstOfSeed[r.metrics.run.seed] == nil { firstOfSeed[r.metrics.run.seed] = r }
            let perSeed = firstOfSeed.keys.sorted().map { firstOfSeed[$0]!.metrics.teacher! }
            let raw = perSeed.compactMap(\.calibration), removed = perSeed.compactMap(\.calibrationShiftRemoved)
            func classwise(_ cs: [CalibrationMetrics]) -> ReliabilityBins? {
                poolReliability(cs.flatMap { $0.classwiseReliability ?? [] })
            }
            let matters = zip(raw, removed).contains { $0.classwiseEce != $1.classwiseEce || $0.reliability != $1.reliability }
            return TeacherSummary(
                config: c, seeds: firstOfSeed.keys.sorted(),
                accuracy: Dataset.overSeeds(rs) { $0.metrics.teacher?.accTest },
                worstClass: Dataset.overSeeds(rs) { $0.metrics.teacher.flatMap { Metric.worstClass.value($0) } },
                eceMean: Dataset.overSeeds(rs) { $0.metrics.teacher?.calibration?.classwiseEceMean },
                eceMax: Dataset.overSeeds(rs) { $0.metrics.teacher?.calibration?.classwiseEceMax },
                eceMeanShiftRemoved: Dataset.overSeeds(rs) { $0.metrics.teacher?.calibrationShiftRemoved?.classwiseEceMean },
                eceMaxShiftRemoved: Dataset.overSeeds(rs) { $0.metrics.teacher?.calibrationShiftRemoved?.classwiseEceMax },
                topLabelEce: Dataset.overSeeds(rs) { $0.metrics.teacher?.calibration?.topLabelEce },
                topLabelEceShiftRemoved: Dataset.overSeeds(rs) { $0.metrics.teacher?.calibrationShiftRemoved?.topLabelEce },
                worstClassShiftRemoved: Dataset.overSeeds(rs) { $0.metrics.teacher?.calibrationShiftRemoved?.worstClass },
                reliability: poolReliability(raw.map(\.reliability)),
                reliabilityShiftRemoved: removed.isEmpty ? nil : poolReliability(removed.map(\.reliability)),
                classwiseReliability: classwise(raw),
                classwiseReliabilityShiftRemoved: removed.isEmpty ? nil : classwise(removed),
                shiftMatters: matters)
        }
    }

    /// The predictor analysis' cells: per teacher configuration, calibrated
    /// flag and student objective (with β when it varies), the teacher's
    /// per-class ECE mean and worst-class accuracy of the scores the student
    /// saw (shift removed for a calibrated teacher) and the student's mean
    /// worst-class accuracy, each a mean over seeds. Cells lacking a value
    /// are left out.
    public var predictorCells: [PredictorCell] {
        let betaVaries = objectivesWithVaryingBeta
        let showMethod = methodDistinguishesRuns
        func objective(_ r: RunInfo) -> String {
            var s = r.studentObjective ?? "–"
            if betaVaries.contains(s), let b = r.beta { s += " β=\(numberText(b))" }
            if showMethod { s = "\(r.method) \(s)" }
            return s
        }
        struct Key: Hashable { var t: TeacherConfig; var cal: Bool; var s: String }
        var keys: [Key] = []
        var members: [Key: [LoadedRun]] = [:]
        for r in runs where r.metrics.teacher?.calibration != nil {
            let k = Key(t: teacherConfig(r.metrics.run), cal: r.metrics.run.calibratedTeacher ?? false, s: objective(r.metrics.run))
            if members[k] == nil { keys.append(k) }
            members[k, default: []].append(r)
        }
        return keys.compactMap { k in
            let rs = members[k]!
            func seen(_ m: ModelMetrics?) -> CalibrationMetrics? { k.cal ? m?.calibrationShiftRemoved : m?.calibration }
            guard let ece = Dataset.overSeeds(rs, { seen($0.metrics.teacher)?.classwiseEceMean }),
                  let tw = Dataset.overSeeds(rs, { r in
                      seen(r.metrics.teacher)?.worstClass ?? (k.cal ? nil : r.metrics.teacher.flatMap { Metric.worstClass.value($0) })
                  }),
                  let sw = describe(rs.compactMap { Metric.worstClass.value($0.metrics.student) }) else { return nil }
            return PredictorCell(teacher: k.t, calibrated: k.cal, studentObjective: k.s, teacherEce: ece.mean,
                                 teacherWorstClass: tw.mean, studentWorstClass: sw.mean, n: sw.n)
        }
    }

    /// Correlations per student objective (in order of first appearance),
    /// then pooled over all cells. When the imbalance factor varies, both
    /// predictors mostly follow it (a larger r makes every teacher less
    /// calibrated and worse on its rarest class, and every student worse), so
    /// the same correlations are also given within each imbalance factor:
    /// per objective (`std, imbalance 30`), then pooled (`pooled, imbalance 30`).
    public var predictorComparisons: [PredictorComparison] {
        let cells = predictorCells
        var objectives: [String] = [], imbalances: [Double?] = []
        for c in cells where !objectives.contains(c.studentObjective) { objectives.append(c.studentObjective) }
        for c in cells where !imbalances.contains(c.teacher.imbalance) { imbalances.append(c.teacher.imbalance) }
        var out = objectives.map { o in PredictorComparison(name: o, cells: cells.filter { $0.studentObjective == o }) }
        out.append(PredictorComparison(name: "pooled", cells: cells))
        guard imbalances.count > 1 else { return out }
        imbalances.sort { ($0 ?? -.infinity) < ($1 ?? -.infinity) }
        func tag(_ i: Double?) -> String { "imbalance \(i.map(numberText) ?? "–")" }
        for o in objectives {
            for i in imbalances {
                let within = cells.filter { $0.studentObjective == o && $0.teacher.imbalance == i }
                if within.count >= 3 { out.append(PredictorComparison(name: "\(o), \(tag(i))", cells: within)) }
            }
        }
        for i in imbalances {
            let within = cells.filter { $0.teacher.imbalance == i }
            if within.count >= 3 { out.append(PredictorComparison(name: "pooled, \(tag(i))", cells: within)) }
        }
        return out
    }
}

// MARK: - DRO trajectories

/// A DRO record with the run and role it came from.
public struct DRORecord: Sendable {
    /// "student" or "teacher".
    public var role: String
    /// The dro configuration: "student dro, teacher erm, imbalance 10", "teacher dro, imbalance 10".
    public var configuration: String
    public var seed: Int
    public var path: String
    public var trajectory: DROTrajectory
    /// The Pareto panel of the run ("imbalance = 10", "all runs").
    public var panel: String
    /// Order of the configuration within its panel (teacher objective, calibrated, β), for the figure.
    var rank: [Double]
}

extension Dataset {
    /// Every DRO record, students first (one per run), then teachers (one per
    /// teacher configuration and seed: every student run repeats its teacher's).
    public var droRecords: [DRORecord] {
        var out: [DRORecord] = []
        let panelOf = Dictionary(panelGroups().flatMap { g in g.runs.map { ($0.path, g.title) } }, uniquingKeysWith: { a, _ in a })
        let betaVaries = objectivesWithVaryingBeta
        let tOrder = teacherObjectives.map { $0 ?? "–" }
        for r in runs {
            guard let d = r.metrics.student.dro else { continue }
            let c = StudyCombo(r.metrics.run)
            var name = "student \(c.studentObjective ?? "–"), teacher \(c.teacherKey)"
            if betaVaries.contains(c.studentObjective ?? "–"), let b = c.beta { name += ", β = \(numberText(b))" }
            let panel = panelOf[r.path] ?? "all runs"
            if panel != "all runs" { name += ", " + panel }
            let rank = [Double(tOrder.firstIndex(of: c.teacherObjective ?? "–") ?? tOrder.count), c.calibrated ? 1 : 0, c.beta ?? -1]
            out.append(DRORecord(role: "student", configuration: name, seed: r.metrics.run.seed, path: r.path, trajectory: d,
                                 panel: panel, rank: rank))
        }
        var seen = Set<String>()
        for r in runs {
            guard let d = r.metrics.teacher?.dro else { continue }
            let name = teacherConfig(r.metrics.run).label
            guard seen.insert("\(name)|\(r.metrics.run.seed)").inserted else { continue }
            out.append(DRORecord(role: "teacher", configuration: name, seed: r.metrics.run.seed, path: r.path, trajectory: d,
                                 panel: panelOf[r.path] ?? "all runs", rank: []))
        }
        return out
    }
}
