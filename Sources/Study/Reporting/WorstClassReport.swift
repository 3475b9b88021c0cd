import Foundation

// Rendering of the worst-class study (WorstClass.swift): the summary.md
// sections and the figures pareto-*.svg, reliability-*.svg and
// dro-trajectory.svg. Written only for a companion study (objectives vary).

public enum WorstClassReport {
    /// File names: one Pareto figure per panel, one reliability figure per teacher, one DRO figure.
    public static let paretoPrefix = "pareto-"
    public static let reliabilityPrefix = "reliability-"
    public static let droFigure = "dro-trajectory.svg"

    /// Whether a name is one of the figures this module writes (stale ones are removed).
    public static func isOwnFigure(_ name: String) -> Bool {
        name == droFigure || ((name.hasPrefix(paretoPrefix) || name.hasPrefix(reliabilityPrefix)) && name.hasSuffix(".svg"))
    }

    static func paretoName(_ p: StudyPanel) -> String { paretoPrefix + svgIdentifier(p.title) + ".svg" }
    static func reliabilityName(_ t: TeacherSummary) -> String {
        reliabilityPrefix + svgIdentifier(t.config.label.replacingOccurrences(of: "teacher ", with: "")) + ".svg"
    }

    // MARK: Figures

    /// Every figure of the study, by file name, in a fixed order; empty when
    /// the objectives do not vary. `d` holds the companion runs.
    public static func figures(_ d: Dataset) -> [(String, String)] {
        guard d.hasObjectiveStudy else { return [] }
        var out = d.studyPanels.map { (paretoName($0), pareto($0)) }
        out += d.teacherSummaries.compactMap { t in reliabilityFigure(t).map { (reliabilityName(t), $0) } }
        if let dro = droFigure(d) { out.append((droFigure, dro)) }
        return out
    }

    /// Colour of a student objective, marker of the teacher as seen; baselines black with their own markers.
    static func paretoStyle(_ p: StudyPoint, teacherKeys: [String], studentObjectives: [String]) -> SeriesStyle {
        switch p.baseline {
        case .plain?: return SeriesStyle(colour: "#000000", marker: .square)
        case .logitAdjusted?: return SeriesStyle(colour: "#000000", marker: .diamond)
        case .reweighted?: return SeriesStyle(colour: "#000000", marker: .triangleDown)
        case nil:
            let markers = MarkerShape.allCases
            // Robust points avoid black (kept for the baselines).
            let colours = Palette.okabeIto.filter { $0 != "#000000" }
            let t = teacherKeys.firstIndex(of: p.combo.teacherKey) ?? 0
            let s = studentObjectives.firstIndex(of: p.combo.studentObjective ?? "–") ?? 0
            return SeriesStyle(colour: colours[s % colours.count], marker: markers[t % markers.count])
        }
    }

    /// `pareto-<panel>.svg`: overall (x) against worst-class (y) student
    /// accuracy, one point per combination with 95 % intervals over seeds;
    /// baselines in black (class "baseline"), the Pareto front of the means
    /// as a dashed line (class "pareto-front").
    public static func pareto(_ p: StudyPanel) -> String {
        var teacherKeys: [String] = [], students: [String] = []
        for q in p.points where q.baseline == nil {
            if !teacherKeys.contains(q.combo.teacherKey) { teacherKeys.append(q.combo.teacherKey) }
            if !students.contains(q.combo.studentObjective ?? "–") { students.append(q.combo.studentObjective ?? "–") }
        }
        var series: [ChartSeries] = []
        let front = p.points.filter(\.onFront).sorted { $0.overall.mean < $1.overall.mean }
        if front.count > 1 {
            series.append(ChartSeries(id: "pareto-front", name: "Pareto front (non-dominated means)", cssClass: "pareto-front",
                                      style: SeriesStyle(colour: "#999999", marker: .circle, dash: "4,3"),
                                      points: front.map { DataPoint(x: $0.overall.mean * 100, y: $0.worst.mean * 100) },
                                      markers: false))
        }
        // β paths: the points of one teacher → student pair at several β, joined in β order
        // (dotted, in the objective's colour), so that the trade-off curve reads off the figure.
        var pathKeys: [String] = []
        var pathPoints: [String: [StudyPoint]] = [:]
        for q in p.points where q.baseline == nil && q.combo.beta != nil {
            let k = q.combo.teacherKey + " → " + (q.combo.studentObjective ?? "–")
            if pathPoints[k] == nil { pathKeys.append(k) }
            pathPoints[k, default: []].append(q)
        }
        for k in pathKeys {
            let qs = pathPoints[k]!.sorted { $0.combo.beta! < $1.combo.beta! }
            guard qs.count > 1, let first = qs.first?.combo.beta, let last = qs.last?.combo.beta else { continue }
            let style = paretoStyle(qs[0], teacherKeys: teacherKeys, studentObjectives: students)
            series.append(ChartSeries(id: "beta-path-" + k, name: "\(k): β = \(numberText(first)) → \(numberText(last))",
                                      cssClass: "beta-path",
                                      style: SeriesStyle(colour: style.colour, marker: style.marker, dash: "1.5,2.5"),
                                      points: qs.map { DataPoint(x: $0.overall.mean * 100, y: $0.worst.mean * 100) },
                                      markers: false, connectInGivenOrder: true))
        }
        for q in p.points {
            let style = paretoStyle(q, teacherKeys: teacherKeys, studentObjectives: students)
            // Only the front and the baselines are labelled: with every combination of a study
            // (twenty and more) labels would cover the points; marker and colour name the rest.
            let label: String? = q.onFront ? "★ " + q.label : q.baseline != nil ? q.label : nil
            series.append(ChartSeries(
                id: "combo-" + q.label, name: q.baseline.map { "baseline: \($0.rawValue)" } ?? q.label,
                cssClass: q.baseline == nil ? "series" : "baseline", style: style,
                points: [DataPoint(x: q.overall.mean * 100, y: q.worst.mean * 100, yErr: q.worst.ciHalfWidth.map { $0 * 100 },
                                   xErr: q.overall.ciHalfWidth.map { $0 * 100 }, label: label)],
                connect: false))
        }
        let pts = series.flatMap(\.points)
        let xs = pts.flatMap { [$0.x - ($0.xErr ?? 0), $0.x + ($0.xErr ?? 0)] }
        let ys = pts.flatMap { [$0.y - ($0.yErr ?? 0), $0.y + ($0.yErr ?? 0)] }
        let xd = niceDomain(max(0, (xs.min() ?? 0) - 2), min(100, (xs.max() ?? 100) + 2))
        let yd = niceDomain(max(0, (ys.min() ?? 0) - 2), min(100, (ys.max() ?? 100) + 4))
        let panel = Panel(title: p.title, xLabel: "overall (test) accuracy (%)", yLabel: "worst-class accuracy (%)",
                          xDomain: xd, yDomain: yd, series: series)
        let hasPaths = series.contains { $0.cssClass == "beta-path" }
        let markers = MarkerShape.allCases
        let colours = Palette.okabeIto.filter { $0 != "#000000" }
        let legend = [
            LegendSection(title: "teacher as the student sees it (marker)", entries: teacherKeys.enumerated().map {
                LegendEntry(name: $1, colour: Palette.neutral, marker: markers[$0 % markers.count], line: false)
            }),
            LegendSection(title: "student objective (colour)", entries: students.enumerated().map {
                LegendEntry(name: $1, colour: colours[$0 % colours.count], marker: .circle, line: false)
            }),
            LegendSection(title: "baselines (black)", entries: [
                LegendEntry(name: BaselineKind.plain.rawValue, colour: "#000000", marker: .square, line: false),
                LegendEntry(name: BaselineKind.logitAdjusted.rawValue, colour: "#000000", marker: .diamond, line: false),
                LegendEntry(name: BaselineKind.reweighted.rawValue, colour: "#000000", marker: .triangleDown, line: false),
            ]),
            LegendSection(entries: [LegendEntry(name: "Pareto front (★: on it)", colour: "#999999", marker: nil, dash: "4,3")]
                          + (hasPaths
                             ? [LegendEntry(name: "one teacher → student over β (joined in β order)", colour: Palette.neutral,
                                            marker: nil, dash: "1.5,2.5")] : [])),
        ]
        let n = p.points.map(\.n)
        let seeds = (n.min() == n.max()) ? "n = \(n.first ?? 0) seeds per point" : "n = \(n.min() ?? 0)–\(n.max() ?? 0) seeds per point"
        return Figure(title: "Worst-class vs overall student accuracy: \(p.title)",
                      subtitle: "mean ± 95 % confidence interval of the mean over seeds (Student t; \(seeds)); dashed: Pareto front of the means; \(hasPaths ? "dotted: one pair over β; " : "")labels (teacher → student): the front (★) and the baselines",
                      panels: [panel], legend: legend, columns: 1, panelWidth: 560, panelHeight: 460).render()
    }

    /// Points of a reliability diagram in percent (empty bins left out).
    static func reliabilityPoints(_ b: ReliabilityBins) -> [DataPoint] {
        b.count.indices.compactMap { i in
            b.count[i] > 0 ? DataPoint(x: b.confidence[i] * 100, y: b.accuracy[i] * 100) : nil
        }
    }

    /// `reliability-<teacher>.svg`: the teacher's top-label and class-wise
    /// (one-vs-rest, pooled over classes) reliability diagrams on test, bins
    /// pooled over seeds, raw and (when it differs) with its logit shift
    /// removed; the diagonal is perfect calibration. nil without bins.
    public static func reliabilityFigure(_ t: TeacherSummary) -> String? {
        guard let raw = t.reliability else { return nil }
        func panel(_ title: String, _ a: ReliabilityBins?, _ b: ReliabilityBins?) -> Panel {
            var series = [ChartSeries(id: "diagonal", name: "perfect calibration", cssClass: "reference",
                                      style: SeriesStyle(colour: "#999999", marker: .circle, dash: "4,3"),
                                      points: [DataPoint(x: 0, y: 0), DataPoint(x: 100, y: 100)], markers: false)]
            if let a { series.append(ChartSeries(id: "raw", name: "raw scores softmax(z)", style: Palette.style(0), points: reliabilityPoints(a))) }
            if t.shiftMatters, let b {
                series.append(ChartSeries(id: "shift-removed", name: "shift removed softmax(z − log w)",
                                          style: SeriesStyle(colour: Palette.okabeIto[3], marker: .square, dash: "6,3"),
                                          points: reliabilityPoints(b)))
            }
            return Panel(title: title, xLabel: "mean confidence in bin (%)", yLabel: "accuracy in bin (%)",
                         xDomain: (0, 100), yDomain: (0, 100), xTicks: [0, 20, 40, 60, 80, 100], yTicks: [0, 20, 40, 60, 80, 100],
                         series: series)
        }
        let panels = [panel("top label", raw, t.reliabilityShiftRemoved),
                      panel("class-wise (one-vs-rest, all classes)", t.classwiseReliability, t.classwiseReliabilityShiftRemoved)]
        let all = panels.flatMap(\.series)
        var seen = Set<String>()
        let entries = Figure.legendEntries(for: all.filter { seen.insert($0.id).inserted })
        let n = raw.count.reduce(0, +)
        return Figure(title: "Reliability of the \(t.config.label) on test",
                      subtitle: "10 equal-width bins, pooled over \(t.seeds.count) seed\(t.seeds.count == 1 ? "" : "s") (\(n) images)"
                          + (t.shiftMatters ? "" : "; no logit shift (raw = shift removed)"),
                      panels: panels, legend: [LegendSection(entries: entries)], columns: 2, panelWidth: 330, panelHeight: 300).render()
    }

    /// The runs the DRO figure shows: per panel of the study (imbalance
    /// factor) one dro student, the first configuration in the Pareto order
    /// (erm teacher first, uncalibrated first, smallest β), and every dro
    /// teacher; each at its smallest seed. The table lists them all.
    static func figureRecords(_ records: [DRORecord]) -> [DRORecord] {
        let first = firstSeedRecords(records)
        var panels: [String] = [], student: [String: DRORecord] = [:]
        for r in first where r.role == "student" {
            if let s = student[r.panel] {
                if r.rank.lexicographicallyPrecedes(s.rank) { student[r.panel] = r }
            } else {
                panels.append(r.panel)
                student[r.panel] = r
            }
        }
        return panels.map { student[$0]! } + first.filter { $0.role == "teacher" }
    }

    /// `dro-trajectory.svg`: log λ per group over the updates, one panel per
    /// run of `figureRecords`; nil without DRO records.
    public static func droFigure(_ d: Dataset) -> String? {
        let records = figureRecords(d.droRecords)
        guard !records.isEmpty else { return nil }
        let g = records.map(\.trajectory.groups).max() ?? 0
        let panels = records.map { r -> Panel in
            let t = r.trajectory
            let series = (0..<t.groups).map { k in
                ChartSeries(id: "group\(k)", name: "class / group \(k)", style: Palette.style(k),
                            points: t.history.enumerated().map { DataPoint(x: Double($0.offset + 1), y: $0.element[k]) },
                            markers: t.updates <= 30)
            }
            return Panel(title: "\(r.configuration), seed \(r.seed)", xLabel: "λ update (every \(t.every) steps, η = \(numberText(t.eta)))",
                         yLabel: "log λ", series: series, emptyMessage: "no update")
        }
        let legend = Figure.legendEntries(for: (0..<g).map {
            ChartSeries(id: "group\($0)", name: "class / group \($0)", style: Palette.style($0), points: [])
        })
        return Figure(title: "DRO group weights over training",
                      subtitle: "log λ of each class (or class × artifact group) after each update; per panel of the study one dro student (first configuration, erm teacher first) and each dro teacher, at the smallest seed; uniform start log(1/G)",
                      panels: panels, legend: [LegendSection(entries: legend)], columns: min(3, panels.count),
                      panelWidth: 380, panelHeight: 300).render()
    }

    /// Per configuration (order of first appearance) the record of the smallest seed.
    static func firstSeedRecords(_ records: [DRORecord]) -> [DRORecord] {
        var order: [String] = [], best: [String: DRORecord] = [:]
        for r in records {
            let key = r.role + "|" + r.configuration
            if let b = best[key] {
                if r.seed < b.seed { best[key] = r }
            } else {
                order.append(key)
                best[key] = r
            }
        }
        return order.map { best[$0]! }
    }

    // MARK: summary.md

    static func md(_ s: String) -> String { SummaryMarkdown.md(s) }
    static func pct(_ s: Stat) -> String { SummaryMarkdown.interval(s, .accTest) }

    /// ECE as a fraction with three decimals, "mean ± half-width" ("± –" for one seed).
    static func ece(_ s: Stat?) -> String {
        guard let s else { return "–" }
        let constant = s.std.map { $0 <= 1e-12 } ?? true
        return String(format: "%.3f", s.mean) + (constant && s.n > 1 ? "" : " ± " + (s.ciHalfWidth.map { String(format: "%.3f", $0) } ?? "–"))
    }

    static func corr(_ v: Double?) -> String { v.map { String(format: "%+.3f", $0) } ?? "–" }

    /// The study's sections of summary.md (nil when the objectives do not vary).
    public static func sections(_ d: Dataset) -> String? {
        guard d.hasObjectiveStudy else { return nil }
        var out = paretoSection(d)
        if let c = calibrationSection(d) { out += c }
        if let p = predictorSection(d) { out += p }
        if let r = droSection(d) { out += r }
        return out
    }

    /// Per panel: every combination with its means and intervals, whether it
    /// is on the Pareto front, and which baselines it dominates.
    static func paretoSection(_ d: Dataset) -> String {
        var out = "## Worst-class study: overall vs worst-class accuracy (Pareto view)\n\n"
        out += "Student accuracy on `test`, percent, mean [95 % interval] over seeds. Baselines, all from the erm teacher used as it is: "
        out += "a std student (plain distillation), the same student with post-hoc logit adjustment (`\(Dataset.logitAdjustedObjective)`, "
        out += "argmax_y z_y − log π_y with π the class frequencies of the student's training split), and a `reweighted` student. "
        out += "The same students of other teachers are combinations like the rest. "
        out += "On the front: no other combination has a higher or equal mean in both coordinates and a higher one in one of them "
        out += "(means only, the intervals are not taken into account). Dominates: the baselines whose two means it matches or beats, "
        out += "beating one. Figures: `\(paretoPrefix)<panel>.svg`.\n\n"
        for p in d.studyPanels {
            out += "### \(md(p.title))\n\n"
            let rows: [[String]] = p.points.map { q in
                let dom = p.dominatedBaselines(q).map { md($0.label) }
                return [md(q.label), q.baseline?.rawValue ?? "", pct(q.overall), pct(q.worst), String(q.n), q.onFront ? "yes" : "",
                        q.baseline != nil ? "" : (dom.isEmpty ? "none" : dom.joined(separator: ", "))]
            }
            out += SummaryMarkdown.table(header: ["teacher → student", "baseline", "overall %", "worst class %", "n", "on front", "dominates"],
                                         rows: rows, alignRight: false) + "\n"
            out += "Figure: `\(paretoName(p))`.\n\n"
        }
        return out
    }

    /// Per teacher configuration: its own subtask accuracies and per-class ECE, raw and with its shift removed.
    static func calibrationSection(_ d: Dataset) -> String? {
        let ts = d.teacherSummaries
        guard !ts.isEmpty else { return nil }
        var out = "## Teacher calibration on the subtask\n\n"
        out += "The teacher's softmax over the subtask's logits on `test`: raw, and with its training shift removed "
        out += "(softmax(z − log w), what a `--calibrated-teacher` student is distilled from; the same as raw for an erm teacher). "
        out += "Per-class ECE: one-vs-rest ECE of each class with 10 equal-width bins (docs/protocol.md, \"Metrics\"); its mean "
        out += "and maximum over the classes. Accuracies in percent, ECE as a fraction; mean ± 95 % interval over seeds "
        out += "(one teacher, evaluated on each seed's test split). Reliability diagrams: `\(reliabilityPrefix)<teacher>.svg`.\n\n"
        let rows: [[String]] = ts.map { t in
            [md(t.config.objective ?? "–"), t.config.imbalance.map(numberText) ?? "–"]
                + (t.config.context.isEmpty ? [] : [md(t.config.context)])
                + [SummaryMarkdown.cell(t.accuracy, .accTest, showN: false, constantAsSingle: true),
                   SummaryMarkdown.cell(t.worstClass, .worstClass, showN: false, constantAsSingle: true),
                   ece(t.eceMean), ece(t.eceMax), ece(t.eceMeanShiftRemoved), ece(t.eceMaxShiftRemoved),
                   SummaryMarkdown.cell(t.worstClassShiftRemoved, .worstClass, showN: false, constantAsSingle: true),
                   ece(t.topLabelEce), String(t.seeds.count), "`\(reliabilityName(t))`"]
        }
        let context = ts.contains { !$0.config.context.isEmpty }
        let header = ["teacher objective", "imbalance"] + (context ? ["setting"] : [])
            + ["overall %", "worst class %", "per-class ECE mean", "per-class ECE max", "mean, shift removed", "max, shift removed",
               "worst class %, shift removed", "top-label ECE", "seeds", "reliability diagram"]
        out += SummaryMarkdown.table(header: header, rows: rows) + "\n"
        return out
    }

    /// Which of the teacher's per-class ECE and its own worst-class accuracy
    /// better predicts the student's worst-class accuracy.
    static func predictorSection(_ d: Dataset) -> String? {
        let cells = d.predictorCells
        guard !cells.isEmpty else { return nil }
        var out = "## Does the teacher's calibration or its worst-class accuracy predict the student's worst-class accuracy?\n\n"
        out += "One point per teacher as the student saw it (objective, imbalance, calibrated or not) and student objective: "
        out += "the teacher's per-class ECE mean and its worst-class accuracy, both of the scores the student was distilled from "
        out += "(with the shift removed for a calibrated teacher), each a mean over seeds, against the student's mean worst-class "
        out += "accuracy over seeds. Spearman's ρ (average ranks for ties) and Pearson's r over the n points; a better-calibrated "
        out += "teacher has a lower ECE, so a helpful calibration shows as a negative coefficient. The better predictor is the one "
        out += "with the larger |Spearman ρ|; with n this small these are descriptions of these runs, not tests. "
        out += "Across imbalance factors both predictors mostly follow r; rows named `imbalance r` compare teachers at one "
        out += "factor only.\n\n"
        let rows: [[String]] = d.predictorComparisons.map { c in
            [md(c.name), String(c.n), corr(c.spearmanEce), corr(c.spearmanWorst), corr(c.pearsonEce), corr(c.pearsonWorst),
             c.n < 3 ? "– (n < 3)" : (c.winner ?? "– (undefined: a constant variable)")]
        }
        out += SummaryMarkdown.table(header: ["student objective", "n", "Spearman: ECE", "Spearman: teacher worst class",
                                              "Pearson: ECE", "Pearson: teacher worst class", "better predictor"], rows: rows) + "\n"
        out += "The points:\n\n"
        let pointRows: [[String]] = cells.map { c in
            [md(c.teacher.label + (c.calibrated ? " (calibrated)" : "")), md(c.studentObjective), String(format: "%.3f", c.teacherEce),
             String(format: "%.1f", c.teacherWorstClass * 100), String(format: "%.1f", c.studentWorstClass * 100), String(c.n)]
        }
        out += SummaryMarkdown.table(header: ["teacher (as seen)", "student objective", "teacher per-class ECE mean",
                                              "teacher worst class %", "student worst class %", "student runs"], rows: pointRows) + "\n"
        return out
    }

    /// Per dro configuration: runs, updates and the range of log λ.
    static func droSection(_ d: Dataset) -> String? {
        let records = d.droRecords
        guard !records.isEmpty else { return nil }
        var out = "## DRO group weights\n\n"
        out += "Per dro configuration, over its runs (students) or its records (teachers: one per seed, each student run repeats it): "
        out += "the number of λ updates and the smallest and largest log λ of any group during training (uniform start: log(1/G)); "
        out += "final: the largest final λ of a group, mean over runs. Figure: `\(droFigure)` (per imbalance factor one dro student, the first configuration with the erm teacher first, and each dro teacher; smallest seed).\n\n"
        var order: [String] = [], members: [String: [DRORecord]] = [:]
        for r in records {
            let key = r.role + "|" + r.configuration
            if members[key] == nil { order.append(key) }
            members[key, default: []].append(r)
        }
        let rows: [[String]] = order.map { key in
            let rs = members[key]!
            let ups = rs.map(\.trajectory.updates)
            let lo = rs.map(\.trajectory.logLambdaMin).min()!, hi = rs.map(\.trajectory.logLambdaMax).max()!
            let finalMax = rs.map { exp($0.trajectory.finalLogLambda.max() ?? 0) }.reduce(0, +) / Double(rs.count)
            let t = rs[0].trajectory
            return [md(rs[0].configuration), String(rs.count), ups.min() == ups.max() ? String(ups[0]) : "\(ups.min()!)–\(ups.max()!)",
                    String(t.groups), String(format: "[%.3f, %.3f]", lo, hi), String(format: "%.3f", finalMax),
                    String(t.every), numberText(t.eta)]
        }
        out += SummaryMarkdown.table(header: ["configuration", "runs", "updates", "groups G", "log λ range", "final max λ", "every K", "η"],
                                     rows: rows) + "\n"
        return out
    }
}
