import Foundation

// The companion study (Wang et al. 2022): which robust objective, on the
// teacher, the student or both, gives the best worst-class student. Runs are
// grouped by everything that varies except the two objectives and the seed
// (imbalance first), and each group is a teacher objective × student
// objective grid of overall and worst-class accuracy.

/// One teacher-objective × student-objective grid.
public struct ObjectiveGroup: Sendable {
    /// "imbalance = 10, method = kd, ρ = 0.5", or "all runs" when nothing else varies.
    public var title: String
    /// Stable identifier (SVG ids).
    public var id: String
    /// Row and column values in order of first appearance (nil = absent).
    public var teacherObjectives: [String?]
    public var studentObjectives: [String?]
    public var runs: [LoadedRun]

    /// Student runs of one cell.
    public func cell(teacher t: String?, student s: String?) -> [LoadedRun] {
        runs.filter { $0.metrics.run.teacherObjective == t && $0.metrics.run.studentObjective == s }
    }

    /// Student overall (test) and worst-class accuracy of one cell.
    public func studentStats(teacher t: String?, student s: String?) -> (overall: Stat?, worst: Stat?, n: Int) {
        let c = cell(teacher: t, student: s)
        return (describe(c.compactMap { Metric.accTest.value($0.metrics.student) }),
                describe(c.compactMap { Metric.worstClass.value($0.metrics.student) }), c.count)
    }

    /// The teacher's own overall and worst-class accuracy for a teacher objective (per seed, then over seeds).
    public func teacherStats(teacher t: String?) -> (overall: Stat?, worst: Stat?) {
        let rs = runs.filter { $0.metrics.run.teacherObjective == t }
        func stat(_ m: Metric) -> Stat? {
            var perSeed: [Int: [Double]] = [:]
            for r in rs {
                if let v = r.metrics.teacher.flatMap({ m.value($0) }), v.isFinite {
                    perSeed[r.metrics.run.seed, default: []].append(v)
                }
            }
            return describe(perSeed.keys.sorted().map { perSeed[$0]!.reduce(0, +) / Double(perSeed[$0]!.count) })
        }
        return (stat(.accTest), stat(.worstClass))
    }
}

extension Dataset {
    /// Objective names conventionally meaning "not robust"; they lead rows and columns so the
    /// baseline comes first. Other objectives keep their order of first appearance.
    public static let baselineObjectives = ["erm", "std", "standard", "ce", "none"]

    static func baselineFirst(_ v: [String?]) -> [String?] {
        let base = baselineObjectives.compactMap { b in v.first { $0?.lowercased() == b } }
        return base + v.filter { x in !base.contains { $0 == x } }
    }

    /// Objectives of all runs, baseline first (rows/columns, markers and colours of the figure).
    public var teacherObjectives: [String?] { Dataset.baselineFirst(values(of: .teacherObjective)) }
    public var studentObjectives: [String?] { Dataset.baselineFirst(values(of: .studentObjective)) }

    /// Groups for the companion study; empty when neither objective varies.
    public var objectiveGroups: [ObjectiveGroup] {
        guard hasObjectiveStudy else { return [] }
        // Grouping keys: everything that varies over all runs except the objectives and the seed.
        let fields: [ConfigField] = [.imbalance] + ConfigField.allCases.filter {
            $0 != .imbalance && $0 != .teacherObjective && $0 != .studentObjective
        }
        let varying = fields.filter { values(of: $0).count > 1 }
        let methodVaries = methodDistinguishesRuns
        let rhoVaries = rhos.count > 1

        func key(_ r: RunInfo) -> [String] {
            var k: [String] = []
            if let i = varying.firstIndex(of: .imbalance) {
                k.append("imbalance = \(varying[i].value(r) ?? "–")")
            }
            if methodVaries { k.append("method = \(r.method)") }
            if rhoVaries { k.append("ρ = \(numberText(r.rho))") }
            for f in varying where f != .imbalance { k.append("\(f.rawValue) = \(f.value(r) ?? "–")") }
            return k
        }

        var keys: [[String]] = []
        var members: [[LoadedRun]] = []
        for r in runs {
            let k = key(r.metrics.run)
            if let j = keys.firstIndex(of: k) { members[j].append(r) } else { keys.append(k); members.append([r]) }
        }
        return zip(keys, members).enumerated().map { i, km in
            let (k, rs) = km
            var tObj: [OptionalKey] = [], sObj: [OptionalKey] = []
            for r in rs {
                let t = OptionalKey(r.metrics.run.teacherObjective), s = OptionalKey(r.metrics.run.studentObjective)
                if !tObj.contains(t) { tObj.append(t) }
                if !sObj.contains(s) { sObj.append(s) }
            }
            return ObjectiveGroup(title: k.isEmpty ? "all runs" : k.joined(separator: ", "), id: "group\(i)",
                                  teacherObjectives: Dataset.baselineFirst(tObj.map(\.value)),
                                  studentObjectives: Dataset.baselineFirst(sObj.map(\.value)), runs: rs)
        }
    }
}
