import Foundation

// results.csv (one row per run) and summary.md (methods × ρ tables of the
// mean and its 95 % confidence interval over seeds, the methods that cannot be
// told apart at the largest ρ, plus the companion-study grids).

// MARK: - results.csv

public enum ResultsCSV {
    /// Column names, in order. The first block is the published column list; `student_arch`,
    /// `pipeline`, `teacher_worst_class`, `num_classes` and `label` are extra, `path` stays last.
    public static let columns = [
        "method", "rho", "seed", "subtask", "student_objective", "teacher_objective", "beta", "imbalance",
        "lambda_layer", "basis_split", "acc_test", "acc_clean", "acc_conflict", "worst_group", "worst_class",
        "agreement", "relevance_gxi", "relevance_lrp", "teacher_acc_test", "teacher_acc_clean",
        "teacher_acc_conflict", "student_arch", "pipeline", "teacher_worst_class", "num_classes", "label", "path",
    ]

    /// Extra columns of the artifact probe (`RunMetrics.probe`), sorted, for the layers and bases
    /// any run has: `probe_student_<layer>`, `probe_teacher_<layer>` (artifact share of the layer's
    /// variance) and `probe_basis_<layer>_<basis>` (share of the teacher's artifact-driven variance
    /// inside the basis), and `probe_{student,teacher,basis}_digit_…` for the digit-driven part.
    /// Empty when no run has a probe, so older reports keep their header.
    public static func probeColumns(_ runs: [LoadedRun]) -> [String] {
        var names = Set<String>()
        for r in runs {
            guard let p = r.metrics.probe else { continue }
            for k in (p.studentArtifactShare ?? [:]).keys { names.insert(probeColumn("student", k)) }
            for k in (p.teacherArtifactShare ?? [:]).keys { names.insert(probeColumn("teacher", k)) }
            for k in (p.teacherBasisShare ?? [:]).keys { names.insert(probeColumn("basis", k)) }
            for k in (p.studentDigitShare ?? [:]).keys { names.insert(probeColumn("student_digit", k)) }
            for k in (p.teacherDigitShare ?? [:]).keys { names.insert(probeColumn("teacher_digit", k)) }
            for k in (p.teacherBasisDigitShare ?? [:]).keys { names.insert(probeColumn("basis_digit", k)) }
        }
        return names.sorted()
    }

    static func probeColumn(_ kind: String, _ key: String) -> String {
        "probe_\(kind)_" + key.replacingOccurrences(of: "/", with: "_")
    }

    /// The probe value of one run for a column of `probeColumns`.
    static func probeValue(_ p: ProbeMetrics?, _ column: String) -> Double? {
        guard let p else { return nil }
        for (kind, values) in [("student", p.studentArtifactShare), ("teacher", p.teacherArtifactShare),
                               ("basis", p.teacherBasisShare), ("student_digit", p.studentDigitShare),
                               ("teacher_digit", p.teacherDigitShare), ("basis_digit", p.teacherBasisDigitShare)] {
            for (k, v) in values ?? [:] where probeColumn(kind, k) == column { return v }
        }
        return nil
    }

    /// Extra columns of the worst-class study, present only when some run has the values (so
    /// older reports keep their header): `calibrated_teacher` (when a run used the calibrated
    /// teacher), `la_acc_test`, `la_worst_class` (the student's post-hoc logit adjustment), and the
    /// per-class ECE mean/max and top-label ECE of the student, of the teacher and of the teacher
    /// with its shift removed (`*_cal_*`).
    public static func worstClassColumns(_ runs: [LoadedRun]) -> [String] {
        var out: [String] = []
        if runs.contains(where: { $0.metrics.run.calibratedTeacher == true }) { out.append("calibrated_teacher") }
        if runs.contains(where: { $0.metrics.student.logitAdjusted != nil }) { out += ["la_acc_test", "la_worst_class"] }
        if runs.contains(where: { $0.metrics.student.calibration != nil || $0.metrics.teacher?.calibration != nil }) {
            out += ["student_ece_classwise_mean", "student_ece_classwise_max", "student_ece_top_label",
                    "teacher_ece_classwise_mean", "teacher_ece_classwise_max", "teacher_ece_top_label",
                    "teacher_cal_ece_classwise_mean", "teacher_cal_ece_classwise_max", "teacher_cal_worst_class"]
        }
        return out
    }

    /// The value of one run for a column of `worstClassColumns`.
    static func worstClassValue(_ m: RunMetrics, _ column: String) -> String {
        let s = m.student, t = m.teacher, sc = s.calibration, tc = t?.calibration, tr = t?.calibrationShiftRemoved
        switch column {
        case "calibrated_teacher": return m.run.calibratedTeacher.map { $0 ? "true" : "false" } ?? ""
        case "la_acc_test": return num(s.logitAdjusted?.accTest)
        case "la_worst_class": return num(s.logitAdjusted?.worstClass)
        case "student_ece_classwise_mean": return num(sc?.classwiseEceMean)
        case "student_ece_classwise_max": return num(sc?.classwiseEceMax)
        case "student_ece_top_label": return num(sc?.topLabelEce)
        case "teacher_ece_classwise_mean": return num(tc?.classwiseEceMean)
        case "teacher_ece_classwise_max": return num(tc?.classwiseEceMax)
        case "teacher_ece_top_label": return num(tc?.topLabelEce)
        case "teacher_cal_ece_classwise_mean": return num(tr?.classwiseEceMean)
        case "teacher_cal_ece_classwise_max": return num(tr?.classwiseEceMax)
        case "teacher_cal_worst_class": return num(tr?.worstClass)
        default: return ""
        }
    }

    /// The CSV text: header plus one row per run, in the given order. Missing values are empty
    /// fields; numbers are printed with full (round-trip) precision. The worst-class study's
    /// columns (`worstClassColumns`) and then the probe columns (`probeColumns`) go just before `path`.
    public static func render(_ runs: [LoadedRun]) -> String {
        let probe = probeColumns(runs), worst = worstClassColumns(runs)
        var out = (columns.dropLast() + worst + probe + [columns.last!]).joined(separator: ",") + "\n"
        for r in runs {
            let m = r.metrics, run = m.run, s = m.student, t = m.teacher
            let fields: [String] = [
                run.method, num(run.rho), String(run.seed), run.subtask ?? "", run.studentObjective ?? "",
                run.teacherObjective ?? "", num(run.beta), num(run.imbalance), num(run.lambdaLayer),
                run.basisSplit ?? "", num(s.accTest), num(s.accClean), num(s.accConflict), num(s.worstGroup),
                num(s.worstClassOrDerived), num(s.agreement), num(s.relevanceGxi), num(s.relevanceLrp),
                num(t?.accTest), num(t?.accClean), num(t?.accConflict), run.studentArch ?? "", run.pipeline ?? "",
                num(t?.worstClassOrDerived), m.numClasses.map(String.init) ?? "", run.label ?? "",
            ] + worst.map { worstClassValue(m, $0) } + probe.map { num(probeValue(m.probe, $0)) } + [r.path]
            out += fields.map(escape).joined(separator: ",") + "\n"
        }
        return out
    }

    static func num(_ v: Double?) -> String {
        guard let v, v.isFinite else { return "" }
        return "\(v)"
    }

    /// RFC 4180 quoting: fields holding a comma, quote or line break are quoted, quotes doubled.
    static func escape(_ f: String) -> String {
        if f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return f
    }
}

// MARK: - summary.md

/// What the report could not find, reported in summary.md and on stderr.
public struct Gaps: Sendable {
    /// Paths listed in `--expect` with no readable metrics.json.
    public var missing: [String] = []
    /// metrics.json files that exist but could not be read: (path, message).
    public var unreadable: [(String, String)] = []
    public init(missing: [String] = [], unreadable: [(String, String)] = []) {
        self.missing = missing
        self.unreadable = unreadable
    }
}

public enum SummaryMarkdown {
    /// "91.2 ± 1.3" (percent for fractions): the mean ± the half-width of its 95 % confidence
    /// interval over seeds (`Stat.ciHalfWidth`); "91.2 ± –" for a single seed (no interval); "–" when
    /// missing. With `showN`, the number of seeds is appended: "91.2 ± 1.3 (n=3)". `constantAsSingle`
    /// prints the mean alone when the values do not vary or there is one (the teacher: one network
    /// repeated in every run).
    public static func cell(_ s: Stat?, _ metric: Metric, showN: Bool, constantAsSingle: Bool = false) -> String {
        guard let s else { return "–" }
        let scale = metric.isFraction ? 100.0 : 1.0
        var text = String(format: "%.1f", s.mean * scale)
        // Rounding in the mean of identical values leaves a std of ~1e-17, not exactly 0.
        let constant = s.std.map { $0 <= 1e-9 * max(1, abs(s.mean)) } ?? true
        if !(constantAsSingle && constant) {
            text += " ± " + (s.ciHalfWidth.map { String(format: "%.1f", $0 * scale) } ?? "–")
        }
        if showN { text += " (n=\(s.n))" }
        return text
    }

    /// "71.2 [65.1, 77.3]": the mean and its 95 % interval (percent for fractions); "71.2 [–]" for a
    /// single seed.
    public static func interval(_ s: Stat, _ metric: Metric) -> String {
        let scale = metric.isFraction ? 100.0 : 1.0
        let mean = String(format: "%.1f", s.mean * scale)
        guard let ci = s.ci else { return mean + " [–]" }
        return mean + " [" + String(format: "%.1f", ci.lowerBound * scale) + ", " + String(format: "%.1f", ci.upperBound * scale) + "]"
    }

    /// Definition of the values in every table (summary.md's header).
    public static let statisticsDefinition =
        "Values are the mean over seeds ± the half-width of its 95 % confidence interval, "
        + "t(0.975, n − 1) · s / √n (the 97.5 % quantile of Student's t with n − 1 degrees of freedom, "
        + "s = sample standard deviation, n = seeds); with one seed there is no interval (`± –`); `–` = no value."

    /// ρ as a column header.
    static func rhoHeader(_ r: Double) -> String { "ρ = \(numberText(r))" }

    static func md(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|") }

    static func row(_ cells: [String]) -> String { "| " + cells.joined(separator: " | ") + " |" }

    static func table(header: [String], rows: [[String]], alignRight: Bool = true) -> String {
        var out = row(header) + "\n"
        out += row(header.indices.map { $0 == 0 || !alignRight ? "---" : "---:" }) + "\n"
        for r in rows { out += row(r) + "\n" }
        return out
    }

    /// One methods × ρ table for `metric`, with a teacher row, or nil when no run has the metric.
    public static func metricTable(_ d: Dataset, _ metric: Metric) -> String? {
        guard d.has(metric) || (metric.hasTeacherRow && d.has(metric, teacher: true)) else { return nil }
        // When the seeds behind the cells differ, cells whose seeds are not the common set show n.
        var seedSetCount: [[Int]: Int] = [:]
        for s in d.series {
            for r in d.rhos {
                let seeds = d.seeds(s, rho: r, metric)
                if !seeds.isEmpty { seedSetCount[seeds, default: 0] += 1 }
            }
        }
        let common = seedSetCount.max { a, b in
            a.value != b.value ? a.value < b.value : (a.key.count != b.key.count ? a.key.count < b.key.count
                                                                                : b.key.lexicographicallyPrecedes(a.key))
        }?.key ?? []
        var marked = false
        // At the largest ρ, for the compared metrics: the best method (bold) and those whose interval
        // overlaps the best's (†), per problem.
        let comparisons = d.comparedMetrics.contains(metric) ? d.comparisons(metric) : []
        let best = Set(comparisons.flatMap(\.best)), tied = Set(comparisons.flatMap(\.overlapsBest))
        var rows: [[String]] = d.series.map { s in
            [md(s.name)] + d.rhos.map { r in
                let seeds = d.seeds(s, rho: r, metric)
                let showN = !seeds.isEmpty && seeds != common
                marked = marked || showN
                let text = cell(d.studentStat(s, rho: r, metric), metric, showN: showN)
                guard r == d.rhos.last else { return text }
                return best.contains(s.id) ? "**\(text)**" : tied.contains(s.id) ? text + " †" : text
            }
        }
        if metric.hasTeacherRow && d.has(metric, teacher: true) {
            for t in d.teacherSeries {
                rows.append(["*\(md(t.name))*"] + d.rhos.map { r in
                    let seeds = d.teacherSeeds(t, rho: r, metric)
                    let showN = !seeds.isEmpty && !common.isEmpty && seeds != Array(Set(common)).sorted()
                    marked = marked || showN
                    return cell(d.teacherStat(t, rho: r, metric), metric, showN: showN, constantAsSingle: true)
                })
            }
        }
        var out = "## \(metric.title)\n\n"
        out += "`\(metric.rawValue)`, \(metric.unit); mean ± 95 % confidence interval over seeds"
        if marked {
            out += "; cells marked (n=…) have other seeds than the rest, which have seeds {\(common.map(String.init).joined(separator: ", "))}"
        }
        out += ".\n\n"
        out += table(header: ["method"] + d.rhos.map(rhoHeader), rows: rows)
        if !best.isEmpty, let last = d.rhos.last {
            out += "\nAt ρ = \(numberText(last))\(perProblem(d)): **bold** = highest mean; † = its 95 % interval "
            out += "overlaps the best one's (cannot be told apart, see “\(overlapTitle(d))”).\n"
        }
        return out
    }

    /// Number of runs per series × ρ (all runs, whatever their metrics).
    public static func countTable(_ d: Dataset) -> String {
        let rows = d.series.map { s in [md(s.name)] + d.rhos.map { String(d.runs(of: s, rho: $0).count) } }
        return table(header: ["method"] + d.rhos.map(rhoHeader), rows: rows)
    }

    /// Companion study grids, or nil when neither objective varies.
    public static func companionSection(_ d: Dataset) -> String? {
        let groups = d.objectiveGroups
        guard !groups.isEmpty else { return nil }
        var out = "## Companion study: teacher objective × student objective\n\n"
        out += "Cells: student test accuracy / worst-class accuracy (%), mean ± 95 % confidence interval over seeds "
        out += "(n = runs); the last column is the teacher itself.\n\n"
        for g in groups {
            out += "### \(md(g.title))\n\n"
            let header = ["teacher objective ↓ / student objective →"] + g.studentObjectives.map { md($0 ?? "–") } + ["teacher itself"]
            let rows: [[String]] = g.teacherObjectives.map { t in
                var r = [md(t ?? "–")]
                for s in g.studentObjectives {
                    let st = g.studentStats(teacher: t, student: s)
                    r.append(st.n == 0 ? "–" : "\(cell(st.overall, .accTest, showN: false)) / \(cell(st.worst, .worstClass, showN: false)) (n=\(st.n))")
                }
                let ts = g.teacherStats(teacher: t)
                r.append(ts.overall == nil && ts.worst == nil ? "–" :
                    "\(cell(ts.overall, .accTest, showN: false, constantAsSingle: true)) / \(cell(ts.worst, .worstClass, showN: false, constantAsSingle: true))")
                return r
            }
            out += table(header: header, rows: rows) + "\n"
        }
        return out
    }

    /// Percent with one decimal, "mean ± 95 % interval half-width" over seeds ("± –" for one seed),
    /// "–" when missing.
    static func percent(_ s: Stat?) -> String { cell(s, .accTest, showN: false) }

    /// The artifact probe (`evaluate`, issue 11), or nil when no run has one.
    ///
    /// Students: per paired layer, tr Σ_digit / tr Σ_total of the student's
    /// activations — the variance that tells the digits apart, relative to
    /// the layer's natural variance on clean images: how much of the
    /// shortcut the method let into the student.
    /// Teacher bases: per layer, the share tr(U_kᵀ Σ_digit U_k) / tr Σ_digit
    /// of the teacher's digit-driven variance inside each basis, by the split
    /// the basis was estimated on (one value per seed: every run of a seed
    /// reads the same subspace file).
    public static func probeSection(_ d: Dataset) -> String? {
        let probed = d.runs.filter { $0.metrics.probe != nil }
        guard !probed.isEmpty else { return nil }
        var out = "## Artifact probe\n\n"
        let pairs = Set(probed.compactMap { $0.metrics.probe?.pairs }).sorted()
        out += "Image pairs that differ only in the corner patch"
        if !pairs.isEmpty { out += " (\(pairs.map { "`\(md($0))`" }.joined(separator: ", ")))" }
        out += "; Σ_digit = the part of the patch-driven covariance that differs between digits, "
        out += "Σ_total = the layer's covariance on clean images. Percent, mean ± 95 % confidence interval over seeds; "
        out += "every probe column is in `results.csv`.\n\n"

        let studentLayers = Set(probed.flatMap { ($0.metrics.probe?.studentDigitShare ?? [:]).keys }).sorted()
        for layer in studentLayers {
            out += "### Student \(md(layer)): digit-driven variance, tr Σ_digit / tr Σ_total\n\n"
            let rows: [[String]] = d.series.map { s in
                [md(s.name)] + d.rhos.map { r in
                    percent(describe(d.runs(of: s, rho: r).compactMap { $0.metrics.probe?.studentDigitShare?[layer] }))
                }
            }
            out += table(header: ["method"] + d.rhos.map(rhoHeader), rows: rows) + "\n"
        }

        // Teacher bases: key "layer/basis" → split → ρ → seed → share.
        var shares: [String: [String: [Double: [Int: Double]]]] = [:]
        for r in probed {
            guard let byKey = r.metrics.probe?.teacherBasisDigitShare else { continue }
            let split = r.metrics.run.basisSplit ?? "distill-train"
            for (key, v) in byKey { shares[key, default: [:]][split, default: [:]][r.metrics.run.rho, default: [:]][r.metrics.run.seed] = v }
        }
        let keys = shares.keys.sorted()
        let basisLayers = Array(Set(keys.compactMap { $0.split(separator: "/").first.map(String.init) })).sorted()
        for layer in basisLayers {
            out += "### Teacher \(md(layer)): share of its digit-driven variance inside the basis\n\n"
            var rows: [[String]] = []
            for key in keys where key.hasPrefix(layer + "/") {
                let basis = String(key.dropFirst(layer.count + 1))
                for split in (shares[key] ?? [:]).keys.sorted() {
                    let byRho = shares[key]?[split] ?? [:]
                    rows.append(["\(md(basis)) on `\(md(split))`"] + d.rhos.map { r in
                        percent(describe((byRho[r] ?? [:]).sorted { $0.key < $1.key }.map(\.value)))
                    })
                }
            }
            out += table(header: ["basis, estimated on"] + d.rhos.map(rhoHeader), rows: rows) + "\n"
        }
        return out
    }

    /// " (per subtask and teacher)": the split of the comparisons, or "" when there is one problem.
    static func perProblem(_ d: Dataset) -> String {
        let split = d.comparisonSplit
        return split.isEmpty ? "" : " (per " + split.map(\.short).joined(separator: " and ") + ")"
    }

    /// Title of the overlap section.
    static func overlapTitle(_ d: Dataset) -> String {
        "Methods that cannot be told apart at ρ = \(d.rhos.last.map(numberText) ?? "–")"
    }

    /// At the largest ρ, per problem and compared metric (test accuracy, conflict accuracy when
    /// measured): for each method, the methods whose 95 % interval overlaps its own. Nil without
    /// student values at that ρ.
    public static func overlapSection(_ d: Dataset) -> String? {
        guard let rho = d.rhos.last else { return nil }
        let blocks = d.comparedMetrics.map { ($0, d.comparisons($0, rho: rho)) }.filter { !$0.1.isEmpty }
        guard !blocks.isEmpty else { return nil }
        var out = "## \(overlapTitle(d))\n\n"
        let split = d.comparisonSplit
        out += "At ρ = \(numberText(rho)), the largest ρ of the runs"
        out += split.isEmpty ? "" : ", per " + split.map(\.short).joined(separator: " and ")
        out += ": for each method, the methods whose 95 % confidence interval of the mean overlaps its own, "
        out += "so that the two cannot be told apart; rows by descending mean. Overlapping intervals are a conservative heuristic: two methods whose "
        out += "95 % intervals overlap can still differ significantly (a test on their difference is sharper), "
        out += "while separate intervals do mean a difference.\n\n"
        for (metric, comparisons) in blocks {
            for c in comparisons {
                out += "### \(metric.title)" + (c.title.map { ": " + md($0) } ?? "") + "\n\n"
                let compared = Comparison.byMean(c.compared)
                if compared.count < 2 {
                    out += compared.isEmpty ? "No method has two or more seeds here: no intervals to compare.\n\n"
                                            : "Only \(md(compared[0].name)) has two or more seeds here: nothing to compare.\n\n"
                } else {
                    let best = Set(c.best)
                    let rows: [[String]] = compared.map { e in
                        let others = c.overlapping(e)
                        return [md(e.name) + (best.contains(e.series.id) ? " (best)" : ""),
                                interval(e.stat, metric), String(e.stat.n),
                                others.isEmpty ? "none" : others.map { md($0.name) }.joined(separator: ", ")]
                    }
                    out += table(header: ["method", "mean [95 % interval], \(metric.unit)", "seeds", "interval overlaps"],
                                 rows: rows, alignRight: false) + "\n"
                }
                let single = c.uncompared
                if !single.isEmpty && !compared.isEmpty {
                    out += "Not compared (one seed, no interval): " + single.map { "\(md($0.name)) \(interval($0.stat, metric))" }.joined(separator: ", ") + ".\n\n"
                }
            }
        }
        return out
    }

    /// The whole summary.md.
    public static func render(_ d: Dataset, root: String, gaps: Gaps, expected: Int?) -> String {
        var out = "# Report: `\(root)`\n\n"
        let seeds = Array(Set(d.runs.map(\.metrics.run.seed))).sorted()
        out += "\(d.runs.count) run\(d.runs.count == 1 ? "" : "s") read: \(d.methods.count) method\(d.methods.count == 1 ? "" : "s")"
        out += " (\(d.series.count) series), ρ ∈ {\(d.rhos.map(numberText).joined(separator: ", "))}, "
        out += "seeds {\(seeds.map(String.init).joined(separator: ", "))}"
        if let expected { out += "; \(expected) run\(expected == 1 ? "" : "s") expected" }
        out += ".\n"
        for f in [ConfigField.pipeline, .subtask, .studentArch] {
            let v = d.values(of: f).compactMap { $0 }
            if !v.isEmpty { out += "\(f.rawValue): \(v.map { "`\(md($0))`" }.joined(separator: ", ")).  \n" }
        }
        if let k = d.numClasses {
            out += "K = \(k) classes (chance accuracy \(String(format: "%.1f", 100 / Double(k))) %).  \n"
        }
        out += statisticsDefinition + " "
        out += "Series are methods, split by any setting that varies within a method (shown in brackets).\n\n"

        if !gaps.missing.isEmpty || !gaps.unreadable.isEmpty {
            out += "## Missing runs\n\n"
            if !gaps.missing.isEmpty {
                out += "\(gaps.missing.count) expected run\(gaps.missing.count == 1 ? " is" : "s are") absent:\n\n"
                for p in gaps.missing { out += "- `\(p)`\n" }
                out += "\n"
            }
            if !gaps.unreadable.isEmpty {
                out += "\(gaps.unreadable.count) metrics.json file\(gaps.unreadable.count == 1 ? "" : "s") could not be read (left out):\n\n"
                for (p, m) in gaps.unreadable { out += "- `\(p)`: \(m)\n" }
                out += "\n"
            }
        }
        if !d.warnings.isEmpty {
            out += "## Notes\n\n"
            for w in d.warnings { out += "- \(w)\n" }
            out += "\n"
        }
        out += "## Runs per method × ρ\n\n" + countTable(d) + "\n"
        for m in Metric.allCases {
            if let t = metricTable(d, m) { out += t + "\n" }
        }
        if let o = overlapSection(d) { out += o }
        // The companion study's runs include the derived logit-adjusted students (`companionRuns`).
        let companion = d.hasObjectiveStudy ? Dataset(runs: d.companionRuns, methodOrder: d.methods) : d
        if let c = companionSection(companion) { out += c }
        if let w = WorstClassReport.sections(companion) { out += w }
        if let p = probeSection(d) { out += p }
        while out.hasSuffix("\n\n") { out.removeLast() }
        return out
    }
}
