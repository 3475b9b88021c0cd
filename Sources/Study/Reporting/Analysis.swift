import Foundation

// Grouping runs into series (one per method, split further only by settings
// that vary within that method) and cells (series × ρ), and the statistics
// over seeds shown in every table and figure.

/// One `metrics.json` that was read successfully.
public struct LoadedRun: Equatable, Sendable {
    /// Path relative to the report root (as written to `results.csv`).
    public var path: String
    public var metrics: RunMetrics
    public init(path: String, metrics: RunMetrics) {
        self.path = path
        self.metrics = metrics
    }
}

// MARK: - Statistics

/// Mean, sample standard deviation and 95 % confidence interval of the mean of a set of values
/// (one per seed).
public struct Stat: Equatable, Sendable {
    public var n: Int
    public var mean: Double
    /// Sample standard deviation √(Σ(x − x̄)² / (n − 1)); nil when n < 2.
    public var std: Double?
    public init(n: Int, mean: Double, std: Double?) {
        self.n = n
        self.mean = mean
        self.std = std
    }

    /// Confidence level of `ciHalfWidth`.
    public static let confidence = 0.95

    /// Half-width of the 95 % confidence interval of the mean, t_{0.975, n−1} · s / √n (Student t
    /// with n − 1 degrees of freedom, s the sample standard deviation); nil when n < 2.
    public var ciHalfWidth: Double? {
        guard n >= 2, let s = std else { return nil }
        return studentTQuantile(0.5 + Stat.confidence / 2, df: n - 1) * s / Double(n).squareRoot()
    }

    /// The 95 % interval [mean − h, mean + h]; nil when n < 2.
    public var ci: ClosedRange<Double>? {
        guard let h = ciHalfWidth, h.isFinite else { return nil }
        return (mean - h)...(mean + h)
    }

    /// Whether the two 95 % intervals share a point; nil when either has none (one seed).
    public func ciOverlaps(_ other: Stat) -> Bool? {
        guard let a = ci, let b = other.ci else { return nil }
        return a.overlaps(b)
    }
}

/// Mean ± sample standard deviation of the finite values (non-finite ones count as missing);
/// nil when none is left.
public func describe(_ values: [Double]) -> Stat? {
    let xs = values.filter(\.isFinite)
    guard !xs.isEmpty else { return nil }
    let n = Double(xs.count)
    let mean = xs.reduce(0, +) / n
    guard xs.count > 1 else { return Stat(n: 1, mean: mean, std: nil) }
    // Two-pass formula: no cancellation for values close to each other (accuracies).
    let ss = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
    return Stat(n: xs.count, mean: mean, std: (ss / (n - 1)).squareRoot())
}

/// P(|T| ≤ t) for Student's t with `df` degrees of freedom (t ≥ 0), by the finite series for an
/// integer df (Abramowitz & Stegun 26.7.3–4), with θ = atan(t / √df):
/// odd df: (2/π)(θ + sin θ cos θ · [1 + (2/3) cos²θ + … + (2·4⋯(df−3))/(1·3⋯(df−2)) cos^(df−3) θ]);
/// even df: sin θ · [1 + (1/2) cos²θ + … + (1·3⋯(df−3))/(2·4⋯(df−2)) cos^(df−2) θ].
/// Exact up to rounding for every df.
public func studentTTwoSided(_ t: Double, df: Int) -> Double {
    precondition(df >= 1, "degrees of freedom must be ≥ 1")
    guard t > 0 else { return 0 }
    guard t.isFinite else { return 1 }
    let theta = atan(t / Double(df).squareRoot())
    let c2 = cos(theta) * cos(theta)
    if df % 2 == 1 {
        var sum = 0.0
        if df > 1 {
            var term = 1.0
            sum = 1
            var k = 2
            while k <= df - 3 {                 // term ratio (k / (k + 1)) cos²θ, k = 2, 4, …
                term *= Double(k) / Double(k + 1) * c2
                sum += term
                k += 2
            }
        }
        return min(1, 2 / Double.pi * (theta + (df > 1 ? sin(theta) * cos(theta) * sum : 0)))
    } else {
        var term = 1.0, sum = 1.0
        var k = 1
        while k <= df - 3 {                     // term ratio (k / (k + 1)) cos²θ, k = 1, 3, …
            term *= Double(k) / Double(k + 1) * c2
            sum += term
            k += 2
        }
        return min(1, sin(theta) * sum)
    }
}

/// The p-quantile of Student's t with `df` degrees of freedom (0 < p < 1), e.g.
/// `studentTQuantile(0.975, df: 4)` = 2.776: bisection on the exact distribution function
/// (`studentTTwoSided`) to full double precision.
public func studentTQuantile(_ p: Double, df: Int) -> Double {
    precondition(p > 0 && p < 1, "p must lie in (0, 1)")
    precondition(df >= 1, "degrees of freedom must be ≥ 1")
    if p == 0.5 { return 0 }
    if p < 0.5 { return -studentTQuantile(1 - p, df: df) }
    let target = 2 * p - 1                      // P(|T| ≤ t)
    var lo = 0.0, hi = 1.0
    while studentTTwoSided(hi, df: df) < target && hi < 1e300 { lo = hi; hi *= 2 }
    for _ in 0..<200 {
        let mid = (lo + hi) / 2
        if mid <= lo || mid >= hi { break }
        if studentTTwoSided(mid, df: df) < target { lo = mid } else { hi = mid }
    }
    return (lo + hi) / 2
}

// MARK: - Fields and metrics

/// Run settings other than method, ρ and seed; a series is split by those that vary within its method.
public enum ConfigField: String, CaseIterable, Sendable {
    case pipeline, subtask
    case studentArch = "student_arch"
    case teacherObjective = "teacher_objective"
    case studentObjective = "student_objective"
    case beta, imbalance
    case lambdaLayer = "lambda_layer"
    case basisSplit = "basis_split"
    /// Whether the student saw the calibrated teacher (last, so that older
    /// orders of the fields are kept).
    case calibratedTeacher = "calibrated_teacher"

    /// The value as text (nil when absent).
    public func value(_ r: RunInfo) -> String? {
        switch self {
        case .pipeline: return r.pipeline
        case .subtask: return r.subtask
        case .studentArch: return r.studentArch
        case .teacherObjective: return r.teacherObjective
        case .studentObjective: return r.studentObjective
        case .beta: return r.beta.map(numberText)
        case .imbalance: return r.imbalance.map(numberText)
        case .lambdaLayer: return r.lambdaLayer.map(numberText)
        case .basisSplit: return r.basisSplit
        // Absent (metrics.json written before the field) counts as false, so that
        // re-evaluated and older runs of one sweep stay in one series.
        case .calibratedTeacher: return r.calibratedTeacher == true ? "true" : "false"
        }
    }

    /// Short name used in series names ("kd [student=dro, imb=10]").
    public var short: String {
        switch self {
        case .pipeline: return "pipeline"
        case .subtask: return "subtask"
        case .studentArch: return "arch"
        case .teacherObjective: return "teacher"
        case .studentObjective: return "student"
        case .beta: return "β"
        case .imbalance: return "imb"
        case .lambdaLayer: return "λ"
        case .basisSplit: return "basis"
        case .calibratedTeacher: return "cal"
        }
    }

    /// Settings that can change the teacher's numbers (the teacher ignores the student's settings).
    static let teacherRelevant: [ConfigField] = [.pipeline, .subtask, .teacherObjective, .imbalance]
}

/// Shortest round-trip text of a number ("0.5", "100", "1e-05").
public func numberText(_ v: Double) -> String {
    if v.isFinite, v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    // A value stored as Float32 (λ_layer in the students' metadata) reads
    // back as 0.10000000149011612; its shortest Float text is what was set.
    if v.isFinite, Double(Float(v)) == v { return "\(Float(v))" }
    return "\(v)"
}

/// A quantity tabulated in `summary.md` (student and, where meaningful, teacher).
public enum Metric: String, CaseIterable, Sendable {
    case accTest = "acc_test"
    case accClean = "acc_clean"
    case accConflict = "acc_conflict"
    case shortcutGap = "shortcut_gap"
    case worstGroup = "worst_group"
    case worstClass = "worst_class"
    case agreement
    case relevanceGxi = "relevance_gxi"
    case relevanceLrp = "relevance_lrp"
    case deadChannels = "dead_channels"

    public var title: String {
        switch self {
        case .accTest: return "Test accuracy (published metric)"
        case .accClean: return "Clean accuracy (no artifact)"
        case .accConflict: return "Conflict accuracy (digit ≠ label on every image)"
        case .shortcutGap: return "Shortcut reliance: clean − conflict accuracy"
        case .worstGroup: return "Worst-group accuracy (class × artifact state)"
        case .worstClass: return "Worst-class accuracy"
        case .agreement: return "Agreement with the teacher's argmax"
        case .relevanceGxi: return "Relevance share in the artifact patch (gradient × input)"
        case .relevanceLrp: return "Relevance share in the artifact patch (LRP-ε)"
        case .deadChannels: return "Dead channels (total over paired layers)"
        }
    }

    /// Fractions are shown in percent; counts as they are.
    public var isFraction: Bool { self != .deadChannels }

    /// Unit shown in table headers.
    public var unit: String {
        switch self {
        case .shortcutGap: return "percentage points"
        case .deadChannels: return "channels"
        default: return "%"
        }
    }

    /// Whether a teacher row is informative (the teacher's agreement with itself is 1 by definition).
    public var hasTeacherRow: Bool { self != .agreement }

    public func value(_ m: ModelMetrics) -> Double? {
        switch self {
        case .accTest: return m.accTest
        case .accClean: return m.accClean
        case .accConflict: return m.accConflict
        case .shortcutGap: return m.shortcutGap
        case .worstGroup: return m.worstGroup
        case .worstClass: return m.worstClassOrDerived
        case .agreement: return m.agreement
        case .relevanceGxi: return m.relevanceGxi
        case .relevanceLrp: return m.relevanceLrp
        case .deadChannels: return m.deadChannelsTotal
        }
    }
}

// MARK: - Series

/// A line in the figures and a row in the tables: one method, plus the settings that vary within it.
public struct SeriesInfo: Equatable, Sendable {
    /// Unique, stable identifier (usable in SVG ids after `svgIdentifier`).
    public var id: String
    /// Display name: the method, followed by the distinguishing settings in brackets.
    public var name: String
    public var method: String
    /// (field, value) pairs that distinguish this series from others of the same method.
    public var settings: [(ConfigField, String?)]
    /// Indices into `Dataset.runs`.
    public var runIndices: [Int]

    public static func == (a: SeriesInfo, b: SeriesInfo) -> Bool {
        a.id == b.id && a.name == b.name && a.method == b.method && a.runIndices == b.runIndices
            && a.settings.map(\.0) == b.settings.map(\.0) && a.settings.map(\.1) == b.settings.map(\.1)
    }
}

/// All runs of a report, grouped.
public struct Dataset: Sendable {
    public let runs: [LoadedRun]
    /// Student series in display order (`--methods` order first, then order of first appearance).
    public let series: [SeriesInfo]
    /// Teacher series (usually one; split by teacher-relevant settings that vary).
    public let teacherSeries: [SeriesInfo]
    /// Distinct ρ values, ascending.
    public let rhos: [Double]
    /// Methods in display order.
    public let methods: [String]
    /// Notes about the data (duplicate runs, ...), for stderr and summary.md.
    public let warnings: [String]

    public init(runs: [LoadedRun], methodOrder: [String] = []) {
        self.runs = runs
        rhos = Array(Set(runs.map(\.metrics.run.rho))).sorted()

        var appearance: [String] = []
        for r in runs where !appearance.contains(r.metrics.run.method) { appearance.append(r.metrics.run.method) }
        let present = Set(appearance)
        var order = methodOrder.filter { present.contains($0) }
        var seenOrder = Set<String>()
        order = order.filter { seenOrder.insert($0).inserted }
        order += appearance.filter { !seenOrder.contains($0) }
        methods = order

        var series: [SeriesInfo] = []
        var warnings: [String] = []
        for method in order {
            let idx = runs.indices.filter { runs[$0].metrics.run.method == method }
            let fields = ConfigField.allCases.filter { f in
                Set(idx.map { OptionalKey(f.value(runs[$0].metrics.run)) }).count > 1
            }
            series += Dataset.split(runs: runs, indices: idx, by: fields, base: method, prefix: method)
        }
        self.series = series

        // Duplicates: the same series, ρ and seed read from two files would be counted twice.
        for s in series {
            var seen: [String: String] = [:]
            for i in s.runIndices {
                let key = "\(runs[i].metrics.run.rho)|\(runs[i].metrics.run.seed)"
                if let other = seen[key] {
                    warnings.append("duplicate run \(s.name), ρ = \(numberText(runs[i].metrics.run.rho)), seed \(runs[i].metrics.run.seed): \(other) and \(runs[i].path) (both counted)")
                } else {
                    seen[key] = runs[i].path
                }
            }
        }

        let withTeacher = runs.indices.filter { runs[$0].metrics.teacher != nil }
        let tFields = ConfigField.teacherRelevant.filter { f in
            Set(withTeacher.map { OptionalKey(f.value(runs[$0].metrics.run)) }).count > 1
        }
        teacherSeries = withTeacher.isEmpty ? [] :
            Dataset.split(runs: runs, indices: withTeacher, by: tFields, base: "teacher", prefix: "teacher")
        self.warnings = warnings
    }

    /// Splits `indices` by the values of `fields`, in order of first appearance.
    private static func split(runs: [LoadedRun], indices: [Int], by fields: [ConfigField],
                              base: String, prefix: String) -> [SeriesInfo] {
        var keys: [[OptionalKey]] = []
        var members: [[Int]] = []
        for i in indices {
            let k = fields.map { OptionalKey($0.value(runs[i].metrics.run)) }
            if let j = keys.firstIndex(of: k) { members[j].append(i) } else { keys.append(k); members.append([i]) }
        }
        return zip(keys, members).map { key, idx in
            let settings = zip(fields, key).map { ($0, $1.value) }
            let suffix = settings.map { "\($0.short)=\($1 ?? "–")" }.joined(separator: ", ")
            let name = suffix.isEmpty ? base : "\(base) [\(suffix)]"
            let id = suffix.isEmpty ? prefix : "\(prefix)__" + settings.map { "\($0.rawValue)-\($1 ?? "none")" }.joined(separator: "__")
            return SeriesInfo(id: id, name: name, method: base, settings: settings, runIndices: idx)
        }
    }

    /// Runs of a series at one ρ.
    public func runs(of s: SeriesInfo, rho: Double) -> [LoadedRun] {
        s.runIndices.map { runs[$0] }.filter { $0.metrics.run.rho == rho }
    }

    /// Student statistic over the seeds of one cell.
    public func studentStat(_ s: SeriesInfo, rho: Double, _ metric: Metric) -> Stat? {
        describe(runs(of: s, rho: rho).compactMap { metric.value($0.metrics.student) })
    }

    /// Seeds with a value of `metric` in a cell (sorted, duplicates kept).
    public func seeds(_ s: SeriesInfo, rho: Double, _ metric: Metric, teacher: Bool = false) -> [Int] {
        runs(of: s, rho: rho).filter { r in
            let m = teacher ? r.metrics.teacher : r.metrics.student
            return m.flatMap { metric.value($0) }.map(\.isFinite) ?? false
        }.map(\.metrics.run.seed).sorted()
    }

    /// Teacher statistic at one ρ: every student run repeats the teacher's numbers, so values are
    /// first averaged per seed (one teacher evaluation per seed), then summarised over seeds.
    public func teacherStat(_ s: SeriesInfo, rho: Double, _ metric: Metric) -> Stat? {
        var perSeed: [Int: [Double]] = [:]
        for r in runs(of: s, rho: rho) {
            if let v = r.metrics.teacher.flatMap({ metric.value($0) }), v.isFinite {
                perSeed[r.metrics.run.seed, default: []].append(v)
            }
        }
        let means = perSeed.keys.sorted().map { k in perSeed[k]!.reduce(0, +) / Double(perSeed[k]!.count) }
        return describe(means)
    }

    /// Distinct seeds of the teacher in a cell.
    public func teacherSeeds(_ s: SeriesInfo, rho: Double, _ metric: Metric) -> [Int] {
        Array(Set(seeds(s, rho: rho, metric, teacher: true))).sorted()
    }

    /// K, the number of subtask classes: the most frequent value over runs (ties: the smaller).
    public var numClasses: Int? {
        var count: [Int: Int] = [:]
        for r in runs { if let k = r.metrics.classCount { count[k, default: 0] += 1 } }
        return count.max { a, b in a.value != b.value ? a.value < b.value : a.key > b.key }?.key
    }

    /// Whether any run has a value for `metric` (student or teacher).
    public func has(_ metric: Metric, teacher: Bool = false) -> Bool {
        runs.contains { r in
            let m = teacher ? r.metrics.teacher : r.metrics.student
            return m.flatMap { metric.value($0) }.map(\.isFinite) ?? false
        }
    }

    /// Distinct values of a setting over all runs, in order of first appearance (nil = absent).
    public func values(of field: ConfigField) -> [String?] {
        var out: [OptionalKey] = []
        for r in runs {
            let k = OptionalKey(field.value(r.metrics.run))
            if !out.contains(k) { out.append(k) }
        }
        return out.map(\.value)
    }

    /// The companion study applies when the teacher's or the student's objective varies.
    public var hasObjectiveStudy: Bool {
        values(of: .teacherObjective).count > 1 || values(of: .studentObjective).count > 1
    }

    /// Whether the method name tells apart runs that the settings do not: the
    /// companion views split by method only then. A pipeline that names each
    /// objective variant (`kd-dro-b0.5`, `kd-std-cal`) repeats in the name what
    /// student_objective, β and calibrated_teacher already say; split by it,
    /// every variant would be a view of its own and no view would compare
    /// objectives. Two methods run on one configuration (kd and fitnet, both
    /// under every objective) do split.
    public var methodDistinguishesRuns: Bool {
        var methodOf: [[String]: String] = [:]
        for r in runs {
            let run = r.metrics.run
            let key = ConfigField.allCases.map { $0.value(run) ?? "\u{0}" } + [numberText(run.rho), String(run.seed)]
            if let m = methodOf[key], m != run.method { return true }
            methodOf[key] = run.method
        }
        return false
    }
}

/// `String?` as a hashable key (nil is a value of its own: "absent").
struct OptionalKey: Hashable, Sendable {
    var value: String?
    init(_ v: String?) { value = v }
}

// MARK: - Comparisons at the largest ρ

/// The methods of one problem (subtask, teacher, ...) at one ρ, for one metric: which 95 % intervals
/// of the mean overlap. Higher is better (accuracies).
public struct Comparison: Sendable {
    /// One series with a value in the cell.
    public struct Entry: Sendable {
        public var series: SeriesInfo
        /// The series' name without the settings that the comparison's title states.
        public var name: String
        public var stat: Stat
    }

    /// The settings shared by the compared series ("subtask = gratings, teacher = dro"); nil when the
    /// runs have one problem only.
    public var title: String?
    public var metric: Metric
    public var rho: Double
    /// Series with a value, in display order.
    public var entries: [Entry]

    /// Entries with an interval (at least two seeds), in display order.
    public var compared: [Entry] { entries.filter { $0.stat.ci != nil } }

    /// Entries without an interval (one seed).
    public var uncompared: [Entry] { entries.filter { $0.stat.ci == nil } }

    /// Ids of the series with the highest mean among those with an interval (ties: all); empty when
    /// fewer than two series have an interval (nothing to compare).
    public var best: [String] {
        let c = compared
        guard c.count >= 2, let top = c.map(\.stat.mean).max() else { return [] }
        return c.filter { $0.stat.mean == top }.map(\.series.id)
    }

    /// For a compared entry, the other compared entries whose interval overlaps its own, by descending mean.
    public func overlapping(_ e: Entry) -> [Entry] {
        Comparison.byMean(compared).filter { $0.series.id != e.series.id && e.stat.ciOverlaps($0.stat) == true }
    }

    /// Ids of the series, not the best, whose interval overlaps a best one's.
    public var overlapsBest: [String] {
        let b = Set(best)
        let bests = compared.filter { b.contains($0.series.id) }
        return compared.filter { e in
            !b.contains(e.series.id) && bests.contains { e.stat.ciOverlaps($0.stat) == true }
        }.map(\.series.id)
    }

    /// Entries by descending mean (ties keep display order).
    static func byMean(_ es: [Entry]) -> [Entry] {
        es.enumerated().sorted { a, b in
            a.element.stat.mean != b.element.stat.mean ? a.element.stat.mean > b.element.stat.mean : a.offset < b.offset
        }.map(\.element)
    }
}

extension Dataset {
    /// Settings that define the problem a method is compared on rather than the method itself.
    public static let comparisonContext: [ConfigField] = [.pipeline, .subtask, .studentArch, .teacherObjective, .imbalance]

    /// Context fields that vary over the runs (the split of the comparisons).
    public var comparisonSplit: [ConfigField] {
        Dataset.comparisonContext.filter { values(of: $0).count > 1 }
    }

    /// Metrics compared between methods: test accuracy, and conflict accuracy when measured.
    public var comparedMetrics: [Metric] { has(.accConflict) ? [.accTest, .accConflict] : [.accTest] }

    /// Student series compared at `rho` (default: the largest ρ of the runs) for `metric`, one
    /// `Comparison` per problem (value of the varying context fields) in order of first appearance.
    /// Problems where no series has a value are left out.
    public func comparisons(_ metric: Metric, rho: Double? = nil) -> [Comparison] {
        guard let rho = rho ?? rhos.last else { return [] }
        let split = comparisonSplit
        var keys: [[OptionalKey]] = []
        var members: [[SeriesInfo]] = []
        for s in series {
            guard let first = s.runIndices.first else { continue }
            let k = split.map { OptionalKey($0.value(runs[first].metrics.run)) }
            if let j = keys.firstIndex(of: k) { members[j].append(s) } else { keys.append(k); members.append([s]) }
        }
        return zip(keys, members).compactMap { key, ss in
            let entries = ss.compactMap { s -> Comparison.Entry? in
                guard let st = studentStat(s, rho: rho, metric) else { return nil }
                let rest = s.settings.filter { !Dataset.comparisonContext.contains($0.0) }
                let name = rest.isEmpty ? s.method : "\(s.method) [" + rest.map { "\($0.0.short)=\($0.1 ?? "–")" }.joined(separator: ", ") + "]"
                return Comparison.Entry(series: s, name: name, stat: st)
            }
            guard !entries.isEmpty else { return nil }
            let title = split.isEmpty ? nil : zip(split, key).map { "\($0.short) = \($1.value ?? "–")" }.joined(separator: ", ")
            return Comparison(title: title, metric: metric, rho: rho, entries: entries)
        }
    }
}
