import Foundation

// The report's figures, built on SVG.swift. Every data series is an SVG
// group with class="series" (reference curves such as the teacher have
// class="reference"), so a reader or a test can count methods per panel.

public enum Figures {
    /// Share of the image covered by the artifact patch: a quarter of the side, so 1/16 of the area
    /// (docs/protocol.md, "Spurious artifact and ρ"). Uniformly spread relevance would put this share inside the patch.
    public static let patchAreaShare = 1.0 / 16.0

    /// x axis shared by the ρ figures: the measured ρ values as ticks when there are few.
    static func rhoAxis(_ d: Dataset) -> (domain: (Double, Double)?, ticks: [Double]?) {
        guard let lo = d.rhos.first, let hi = d.rhos.last else { return (nil, nil) }
        let domain = hi > lo ? (lo, hi) : (lo - 0.5, lo + 0.5)
        return (domain, d.rhos.count <= 8 ? d.rhos : nil)
    }

    static let rhoLabel = "ρ (fraction of distillation images with the artifact)"

    /// Rows of the ρ figures: one per subtask when the runs span several (the curves of an easy and
    /// a hard subtask in one panel cross and crowd it), else one row of all series (nil).
    struct Rows {
        let subtasks: [String?]
        /// Whether a row's name leaves out the student architecture (one architecture per subtask).
        let dropsArch: Bool
        /// Subtasks of each series' runs (a method run on one subtask only is not split by it).
        let seriesSubtasks: [String: Set<String>]
        var faceted: Bool { subtasks.count > 1 }

        init(_ d: Dataset) {
            var seen: [String] = []
            for r in d.runs { if let s = r.metrics.run.subtask, !seen.contains(s) { seen.append(s) } }
            subtasks = seen.count > 1 ? seen : [nil]
            dropsArch = seen.allSatisfy { sub in
                Set(d.runs.filter { $0.metrics.run.subtask == sub }.map { OptionalKey($0.metrics.run.studentArch) }).count <= 1
            }
            var map: [String: Set<String>] = [:]
            for s in d.series + d.teacherSeries {
                map[s.id] = Set(s.runIndices.compactMap { d.runs[$0].metrics.run.subtask })
            }
            seriesSubtasks = map
        }

        func contains(_ s: SeriesInfo, row: String?) -> Bool {
            guard let row else { return true }
            return seriesSubtasks[s.id]?.contains(row) ?? false
        }

        /// The series' name without what the row states (its subtask, and the architecture that goes
        /// with it), so a method keeps one name, colour and legend entry across rows.
        func name(_ s: SeriesInfo) -> String {
            guard faceted else { return s.name }
            let rest = s.settings.filter { $0.0 != .subtask && !(dropsArch && $0.0 == .studentArch) }
            return rest.isEmpty ? s.method : "\(s.method) [" + rest.map { "\($0.0.short)=\($0.1 ?? "–")" }.joined(separator: ", ") + "]"
        }
    }

    /// Student series of one metric vs ρ in one row, in percent, with error bars of the 95 %
    /// confidence interval of the mean (none for one seed); the colour
    /// follows the row-free name.
    static func studentSeries(_ d: Dataset, _ metric: Metric, rows: Rows, row: String?) -> [ChartSeries] {
        var names: [String] = []
        for s in d.series where !names.contains(rows.name(s)) { names.append(rows.name(s)) }
        return d.series.filter { rows.contains($0, row: row) }.map { s in
            let pts = d.rhos.compactMap { r -> DataPoint? in
                guard let st = d.studentStat(s, rho: r, metric) else { return nil }
                return DataPoint(x: r, y: st.mean * 100, yErr: st.ciHalfWidth.map { $0 * 100 })
            }
            let name = rows.name(s)
            return ChartSeries(id: s.id, name: name, style: Palette.style(names.firstIndex(of: name) ?? 0), points: pts)
        }
    }

    /// Teacher curves (grey, dotted) of one row as reference series.
    static func teacherSeries(_ d: Dataset, _ metric: Metric, rows: Rows, row: String?) -> [ChartSeries] {
        d.teacherSeries.enumerated().compactMap { i, t in
            guard rows.contains(t, row: row) else { return nil }
            let pts = d.rhos.compactMap { r -> DataPoint? in
                guard let st = d.teacherStat(t, rho: r, metric) else { return nil }
                return DataPoint(x: r, y: st.mean * 100, yErr: st.ciHalfWidth.map { $0 * 100 })
            }
            if pts.isEmpty { return nil }
            let markers = MarkerShape.allCases
            return ChartSeries(id: t.id, name: rows.name(t), cssClass: "reference",
                               style: SeriesStyle(colour: Palette.neutral, marker: markers[((rows.faceted ? 0 : i) + 1) % markers.count],
                                                  dash: "2,3"),
                               points: pts)
        }
    }

    /// Legend entries of all rows, one per name.
    static func legend(_ series: [ChartSeries]) -> [LegendEntry] {
        var seen = Set<String>()
        return Figure.legendEntries(for: series.filter { seen.insert($0.name).inserted })
    }

    static func seedNote(_ d: Dataset) -> String {
        let perCell = d.series.flatMap { s in d.rhos.map { d.runs(of: s, rho: $0).count } }.filter { $0 > 0 }
        guard let lo = perCell.min(), let hi = perCell.max() else { return "" }
        if hi == 1 { return "n = 1 seed per point: no intervals" }
        return lo == hi ? "n = \(lo) seeds per point" : "n = \(lo)–\(hi) seeds per point"
    }

    /// `accuracy-vs-rho.svg`: test (published), clean and (when measured) conflict accuracy vs ρ.
    public static func accuracyVsRho(_ d: Dataset) -> String {
        let axis = rhoAxis(d)
        var metrics: [(Metric, String)] = [(.accTest, "Test (published metric)"), (.accClean, "Clean (no artifact)")]
        if d.has(.accConflict) || d.has(.accConflict, teacher: true) {
            metrics.append((.accConflict, "Conflict (digit ≠ label)"))
        }
        var chance: [ReferenceLine] = []
        if let k = d.numClasses {
            // Left end: at small ρ accuracies are high, so the label is clear of the curves there.
            chance = [ReferenceLine(y: 100 / Double(k), label: "chance (\(String(format: "%.0f", 100 / Double(k))) %)",
                                    labelAtStart: true)]
        }
        let rows = Rows(d)
        let panels = rows.subtasks.flatMap { row in
            metrics.map { m, title in
                Panel(title: row.map { "\(title): \($0)" } ?? title, xLabel: rhoLabel, yLabel: "accuracy (%)",
                      xDomain: axis.domain, yDomain: (0, 100), xTicks: axis.ticks, yTicks: [0, 20, 40, 60, 80, 100],
                      series: teacherSeries(d, m, rows: rows, row: row) + studentSeries(d, m, rows: rows, row: row),
                      referenceLines: chance, dodge: 12)
            }
        }
        let legendSeries = rows.subtasks.flatMap {
            studentSeries(d, .accTest, rows: rows, row: $0) + teacherSeries(d, .accTest, rows: rows, row: $0)
        }
        return Figure(title: "Student accuracy vs ρ",
                      subtitle: "mean ± 95 % confidence interval of the mean over seeds (error bars, Student t; \(seedNote(d))); dashed: chance = 1/K"
                          + (rows.faceted ? "; one row per subtask" : ""),
                      panels: panels, legend: [LegendSection(title: "method", entries: legend(legendSeries))],
                      columns: metrics.count, panelWidth: 340).render()
    }

    /// `relevance-vs-rho.svg`: share of input relevance inside the artifact patch vs ρ (gxi, LRP).
    public static func relevanceVsRho(_ d: Dataset) -> String {
        let axis = rhoAxis(d)
        let metrics: [(Metric, String)] = [(.relevanceGxi, "Gradient × input"), (.relevanceLrp, "LRP-ε")]
        let patch = ReferenceLine(y: patchAreaShare * 100, label: "patch area (\(String(format: "%.2f", patchAreaShare * 100)) %)")
        // One y range for all panels, so the two attribution methods compare at a glance.
        let rows = Rows(d)
        let cells = rows.subtasks.flatMap { row in
            metrics.map { m, title in
                (row.map { "\(title): \($0)" } ?? title,
                 teacherSeries(d, m, rows: rows, row: row) + studentSeries(d, m, rows: rows, row: row))
            }
        }
        let top = cells.flatMap { $0.1.flatMap(\.points) }.map { $0.y + ($0.yErr ?? 0) }.max() ?? 0
        let yDomain = niceDomain(0, min(100, max(top, patchAreaShare * 100) * 1.08))
        let panels = cells.map { title, series -> Panel in
            Panel(title: title, xLabel: rhoLabel, yLabel: "relevance in artifact patch (%)",
                  xDomain: axis.domain, yDomain: yDomain, xTicks: axis.ticks,
                  series: series, referenceLines: [patch], dodge: 12,
                  emptyMessage: "not measured")
        }
        let legendSeries = rows.subtasks.flatMap {
            studentSeries(d, .relevanceGxi, rows: rows, row: $0) + teacherSeries(d, .relevanceGxi, rows: rows, row: $0)
        }
        return Figure(title: "Share of relevance (logit margin) inside the artifact patch vs ρ",
                      subtitle: "mean ± 95 % confidence interval of the mean over seeds (error bars, Student t; \(seedNote(d))); dashed: share under uniform relevance"
                          + (rows.faceted ? "; one row per subtask" : ""),
                      panels: panels, legend: [LegendSection(title: "method", entries: legend(legendSeries))],
                      columns: metrics.count, panelWidth: 340).render()
    }

    /// `worst-vs-overall.svg`: one panel per companion-study group; one point per teacher × student
    /// objective (marker = teacher objective, colour = student objective), grey points for the teachers.
    /// Nil when neither objective varies.
    public static func worstVsOverall(_ d: Dataset) -> String? {
        let groups = d.objectiveGroups
        guard !groups.isEmpty else { return nil }
        let tAll = d.teacherObjectives, sAll = d.studentObjectives
        let markers = MarkerShape.allCases
        func marker(_ t: String?) -> MarkerShape { markers[(tAll.firstIndex(of: t) ?? 0) % markers.count] }
        func colour(_ s: String?) -> String { Palette.okabeIto[(sAll.firstIndex(of: s) ?? 0) % Palette.okabeIto.count] }

        let panels = groups.map { g -> Panel in
            var series: [ChartSeries] = []
            for t in g.teacherObjectives {
                let ts = g.teacherStats(teacher: t)
                if let o = ts.overall, let w = ts.worst {
                    series.append(ChartSeries(
                        id: "teacher-\(t ?? "none")", name: "teacher \(t ?? "–")", cssClass: "reference",
                        style: SeriesStyle(colour: Palette.neutral, marker: marker(t)),
                        points: [DataPoint(x: o.mean * 100, y: w.mean * 100, yErr: w.ciHalfWidth.map { $0 * 100 },
                                           xErr: o.ciHalfWidth.map { $0 * 100 }, label: "teacher \(t ?? "–")")],
                        connect: false))
                }
                for s in g.studentObjectives {
                    let st = g.studentStats(teacher: t, student: s)
                    guard let o = st.overall, let w = st.worst else { continue }
                    series.append(ChartSeries(
                        id: "t-\(t ?? "none")__s-\(s ?? "none")", name: "\(t ?? "–") → \(s ?? "–")",
                        style: SeriesStyle(colour: colour(s), marker: marker(t)),
                        points: [DataPoint(x: o.mean * 100, y: w.mean * 100, yErr: w.ciHalfWidth.map { $0 * 100 },
                                           xErr: o.ciHalfWidth.map { $0 * 100 }, label: "\(t ?? "–") → \(s ?? "–")")],
                        connect: false))
                }
            }
            let pts = series.flatMap(\.points)
            let xs = pts.flatMap { [$0.x - ($0.xErr ?? 0), $0.x + ($0.xErr ?? 0)] }
            let ys = pts.flatMap { [$0.y - ($0.yErr ?? 0), $0.y + ($0.yErr ?? 0)] }
            // Room above the highest point for its label.
            let xd = niceDomain(max(0, (xs.min() ?? 0) - 2), min(100, (xs.max() ?? 100) + 2))
            let yd = niceDomain(max(0, (ys.min() ?? 0) - 2), min(100, (ys.max() ?? 100) + 4))
            return Panel(title: g.title, xLabel: "overall (test) accuracy (%)", yLabel: "worst-class accuracy (%)",
                         xDomain: xd, yDomain: yd, series: series)
        }
        let tEntries = tAll.map { LegendEntry(name: $0 ?? "–", colour: Palette.neutral, marker: marker($0), line: false) }
        let sEntries = sAll.map { LegendEntry(name: $0 ?? "–", colour: colour($0), marker: .circle, line: false) }
        return Figure(title: "Worst-class vs overall student accuracy",
                      subtitle: "labels: teacher objective → student objective; mean ± 95 % confidence interval of the mean over seeds (error bars, Student t); grey: the teacher itself",
                      panels: panels,
                      legend: [LegendSection(title: "teacher objective (marker)", entries: tEntries),
                               LegendSection(title: "student objective (colour)", entries: sEntries)],
                      columns: min(3, panels.count), panelWidth: 380, panelHeight: 320).render()
    }
}
