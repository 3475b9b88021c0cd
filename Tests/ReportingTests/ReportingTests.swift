import Foundation
import Testing
@testable import Reporting
#if canImport(FoundationXML)
import FoundationXML
#endif

// MARK: - Helpers

/// A run with the given student numbers (other fields left absent unless given).
func makeRun(_ method: String, rho: Double, seed: Int, acc: Double? = nil, clean: Double? = nil,
             teacherAcc: Double? = nil, lambda: Double? = nil, tObj: String? = nil, sObj: String? = nil,
             imbalance: Double? = nil, worst: Double? = nil, gxi: Double? = nil, path: String? = nil) -> LoadedRun {
    let run = RunInfo(method: method, rho: rho, seed: seed, teacherObjective: tObj, studentObjective: sObj,
                      imbalance: imbalance, lambdaLayer: lambda)
    let student = ModelMetrics(accTest: acc, accClean: clean, worstClass: worst, relevanceGxi: gxi)
    let teacher = teacherAcc.map { ModelMetrics(accTest: $0, worstClass: 0.5) }
    return LoadedRun(path: path ?? "r/\(method)/\(rho)/\(seed)/metrics.json",
                     metrics: RunMetrics(run: run, student: student, teacher: teacher, numClasses: 5))
}

/// Minimal RFC 4180 parser (quoted fields, doubled quotes), to read back results.csv.
func parseCSV(_ text: String) -> [[String]] {
    var rows: [[String]] = [], row: [String] = [], field = ""
    var quoted = false
    let chars = Array(text)
    var i = 0
    while i < chars.count {
        let c = chars[i]
        if quoted {
            if c == "\"" {
                if i + 1 < chars.count && chars[i + 1] == "\"" { field.append("\""); i += 1 } else { quoted = false }
            } else { field.append(c) }
        } else if c == "\"" {
            quoted = true
        } else if c == "," {
            row.append(field); field = ""
        } else if c == "\n" {
            row.append(field); rows.append(row); row = []; field = ""
        } else {
            field.append(c)
        }
        i += 1
    }
    if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
    return rows
}

/// Element names with their attributes, in document order.
final class ElementCollector: NSObject, XMLParserDelegate {
    var elements: [(String, [String: String])] = []
    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        elements.append((elementName, attributeDict))
    }
}

/// Elements of an XML text; nil when it is not well-formed.
func parseXML(_ text: String) -> [(String, [String: String])]? {
    let p = XMLParser(data: Data(text.utf8))
    let c = ElementCollector()
    p.delegate = c
    return p.parse() ? c.elements : nil
}

/// Number of `g class=<cls>` groups inside each panel, in panel order.
func seriesPerPanel(_ elements: [(String, [String: String])], cls: String = "series") -> [Int] {
    var counts: [Int] = []
    for (name, attrs) in elements {
        if name == "g" && attrs["class"] == "panel" { counts.append(0) }
        if name == "g" && attrs["class"] == cls && !counts.isEmpty { counts[counts.count - 1] += 1 }
    }
    return counts
}

func tempDir() throws -> String {
    let d = NSTemporaryDirectory() + "report-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

func write(_ m: RunMetrics, under root: String, _ rel: String) throws {
    let dir = ((root + "/" + rel) as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try m.jsonData().write(to: URL(fileURLWithPath: root + "/" + rel))
}

// MARK: - Schema

@Test func metricsRoundTripUsesSnakeCaseAndOmitsAbsentFields() throws {
    let m = RunMetrics(
        run: RunInfo(pipeline: "quick", subtask: "gratings", method: "kd", rho: 0.5, seed: 1,
                     studentArch: "c8,p,c16,p,c16,p,gap,fc5", teacherObjective: "erm", studentObjective: "std",
                     beta: 0, imbalance: 1, lambdaLayer: 100, basisSplit: "distill-train"),
        student: ModelMetrics(accTest: 0.91, accClean: 0.95, accConflict: 0.8, worstGroup: 0.7, worstClass: 0.8,
                              perClassRecall: [0.8, 0.9, 1, 0.95, 0.9], agreement: 0.9, relevanceGxi: 0.1,
                              relevanceLrp: 0.12, deadChannels: [0, 0, 1]),
        teacher: ModelMetrics(accTest: 0.95, agreement: 1), numClasses: 5)
    let data = try m.jsonData()
    let text = String(decoding: data, as: UTF8.self)
    for key in ["\"student_arch\"", "\"teacher_objective\"", "\"lambda_layer\"", "\"basis_split\"", "\"acc_test\"",
                "\"per_class_recall\"", "\"relevance_lrp\"", "\"dead_channels\"", "\"num_classes\""] {
        #expect(text.contains(key), "missing \(key)")
    }
    #expect(!text.contains("\"label\""))          // absent optionals stay absent, not null
    #expect(!text.contains("null"))
    #expect(try RunMetrics.decode(data) == m)
    // A non-finite value survives the round trip.
    var n = m
    n.student.relevanceLrp = .nan
    #expect(try RunMetrics.decode(n.jsonData()).student.relevanceLrp?.isNaN == true)
}

@Test func minimalMetricsDecodeAndMissingKeysAreNamed() throws {
    let m = try RunMetrics.decode(Data(#"{"run": {"method": "kd", "rho": 0.25, "seed": 3}, "extra": 1}"#.utf8))
    #expect(m.run.method == "kd" && m.run.rho == 0.25 && m.run.seed == 3)
    #expect(m.student == ModelMetrics())
    #expect(m.teacher == nil && m.classCount == nil)
    #expect(throws: ReportError.badMetrics("missing key 'run.seed'")) {
        try RunMetrics.decode(Data(#"{"run": {"method": "kd", "rho": 0.25}}"#.utf8))
    }
    do {
        _ = try RunMetrics.decode(Data(#"{"run": {"method": "kd", "rho": "high", "seed": 1}}"#.utf8))
        Issue.record("a string ρ must not decode")
    } catch let e as ReportError {
        #expect(e.description.contains("run.rho"))
    }
}

@Test func derivedFields() {
    let m = ModelMetrics(accClean: 0.9, accConflict: 0.6, perClassRecall: [0.9, 0.4, 0.7], deadChannels: [1, 0, 2])
    #expect(m.worstClassOrDerived == 0.4)
    #expect(abs(m.shortcutGap! - 0.3) < 1e-12)
    #expect(m.deadChannelsTotal == 3)
    #expect(RunMetrics(run: RunInfo(method: "kd", rho: 0, seed: 1), student: m).classCount == 3)
}

// MARK: - Statistics

@Test func meanAndSampleStdByHand() throws {
    let s = try #require(describe([0.8, 0.9, 1.0]))
    #expect(s.n == 3)
    #expect(abs(s.mean - 0.9) < 1e-12)
    #expect(abs(s.std! - 0.1) < 1e-12)                              // sample std: √(0.02 / 2)
    let t = try #require(describe([1, 2, 3, 4]))
    #expect(abs(t.std! - (5.0 / 3.0).squareRoot()) < 1e-12)         // not the population √1.25
    let one = try #require(describe([0.7, .nan]))
    #expect(one.n == 1 && one.mean == 0.7 && one.std == nil)
    #expect(describe([]) == nil)
    #expect(describe([.nan, .infinity]) == nil)
}

// MARK: - Grouping

@Test func seriesSplitOnlyBySettingsVaryingWithinAMethod() {
    // λ differs between kd (0) and fitnet (100) but is constant within each: no split.
    // Within subdistill it varies: two series.
    let runs = [
        makeRun("kd", rho: 0, seed: 1, acc: 0.9, lambda: 0),
        makeRun("fitnet", rho: 0, seed: 1, acc: 0.8, lambda: 100),
        makeRun("subdistill", rho: 0, seed: 1, acc: 0.7, lambda: 100),
        makeRun("subdistill", rho: 0, seed: 1, acc: 0.6, lambda: 1),
    ]
    let d = Dataset(runs: runs)
    #expect(d.series.map(\.name) == ["kd", "fitnet", "subdistill [λ=100]", "subdistill [λ=1]"])
    #expect(Set(d.series.map(\.id)).count == 4)
    #expect(d.warnings.isEmpty)
    let ordered = Dataset(runs: runs, methodOrder: ["subdistill", "nosuch", "kd"])
    #expect(ordered.methods == ["subdistill", "kd", "fitnet"])
}

@Test func duplicateRunsAreReported() {
    let d = Dataset(runs: [makeRun("kd", rho: 0, seed: 1, acc: 0.9, path: "first"),
                           makeRun("kd", rho: 0, seed: 1, acc: 0.8, path: "second")])
    #expect(d.warnings.count == 1)
    #expect(d.warnings[0].contains("first") && d.warnings[0].contains("second"))
}

@Test func teacherAveragedPerSeedThenOverSeeds() throws {
    // Seed 1's teacher appears in three runs, seed 2's in one: each seed counts once.
    let runs = [
        makeRun("kd", rho: 0, seed: 1, acc: 0.9, teacherAcc: 0.90),
        makeRun("fitnet", rho: 0, seed: 1, acc: 0.9, teacherAcc: 0.90),
        makeRun("vid", rho: 0, seed: 1, acc: 0.9, teacherAcc: 0.90),
        makeRun("kd", rho: 0, seed: 2, acc: 0.9, teacherAcc: 0.80),
    ]
    let d = Dataset(runs: runs)
    #expect(d.teacherSeries.count == 1)
    let t = try #require(d.teacherStat(d.teacherSeries[0], rho: 0, .accTest))
    #expect(t.n == 2)
    #expect(abs(t.mean - 0.85) < 1e-12)
    #expect(abs(t.std! - (0.005).squareRoot()) < 1e-12)
}

// MARK: - results.csv

@Test func csvHasOneRowPerRunWithExactNumbers() throws {
    var a = makeRun("kd", rho: 0.5, seed: 1, acc: 0.91, clean: 0.95, teacherAcc: 0.97)
    a.metrics.run.studentArch = "c8,p,c16,p,gap,fc5"        // commas: must be quoted
    a.metrics.run.label = "say \"hi\""
    let b = makeRun("subdistill", rho: 0.125, seed: 2, acc: 0.123456789012345)
    let c = makeRun("kd", rho: 1, seed: 3)                   // nothing measured
    let rows = parseCSV(ResultsCSV.render([a, b, c]))
    #expect(rows.count == 4)
    #expect(rows[0] == ResultsCSV.columns)
    #expect(rows.allSatisfy { $0.count == ResultsCSV.columns.count })
    func col(_ r: [String], _ name: String) -> String { r[ResultsCSV.columns.firstIndex(of: name)!] }
    #expect(col(rows[1], "method") == "kd" && col(rows[1], "rho") == "0.5" && col(rows[1], "seed") == "1")
    #expect(Double(col(rows[1], "acc_test")) == 0.91)
    #expect(Double(col(rows[1], "acc_clean")) == 0.95)
    #expect(Double(col(rows[1], "teacher_acc_test")) == 0.97)
    #expect(col(rows[1], "student_arch") == "c8,p,c16,p,gap,fc5")
    #expect(col(rows[1], "label") == "say \"hi\"")
    #expect(Double(col(rows[2], "acc_test")) == 0.123456789012345)   // full precision
    #expect(Double(col(rows[2], "rho")) == 0.125)
    #expect(col(rows[3], "acc_test") == "" && col(rows[3], "teacher_acc_test") == "" && col(rows[3], "subtask") == "")
    #expect(col(rows[3], "path") == c.path)
    #expect(ResultsCSV.columns.first == "method" && ResultsCSV.columns.last == "path")
}

// MARK: - summary.md

@Test func summaryTableShowsMeanStdMissingAndN() throws {
    let runs = [
        makeRun("kd", rho: 0, seed: 1, acc: 0.50), makeRun("kd", rho: 0, seed: 2, acc: 0.60),
        makeRun("kd", rho: 0, seed: 3, acc: 0.70),
        makeRun("kd", rho: 0.5, seed: 1, acc: 0.8, teacherAcc: 0.9), makeRun("kd", rho: 0.5, seed: 2, acc: 0.9, teacherAcc: 0.9),
        makeRun("kd", rho: 0.5, seed: 3, acc: 1.0, teacherAcc: 0.9),
        makeRun("subdistill", rho: 0.5, seed: 1, acc: 0.75), makeRun("subdistill", rho: 0.5, seed: 2, acc: 0.85),
    ]
    let d = Dataset(runs: runs)
    let table = try #require(SummaryMarkdown.metricTable(d, .accTest))
    let lines = table.split(separator: "\n").map(String.init)
    #expect(lines.contains("| method | ρ = 0 | ρ = 0.5 |"))
    // 95 % interval half-widths: t(0.975, 2) · 0.1 / √3 = 24.8; t(0.975, 1) · 0.0707 / √2 = 63.5.
    // At the largest ρ kd is the best (bold) and subdistill's interval overlaps it (†).
    #expect(lines.contains("| kd | 60.0 ± 24.8 | **90.0 ± 24.8** |"))
    #expect(lines.contains("| subdistill | – | 80.0 ± 63.5 (n=2) † |"))   // other seeds than {1,2,3}: n shown
    #expect(lines.contains("| *teacher* | – | 90.0 |"))                   // one network: no "± 0.0"
    #expect(table.contains("seeds {1, 2, 3}"))
    // A metric nobody measured has no table.
    #expect(SummaryMarkdown.metricTable(d, .relevanceLrp) == nil)
    let summary = SummaryMarkdown.render(d, root: "r", gaps: Gaps(missing: ["r/x/metrics.json"]), expected: 9)
    #expect(summary.contains("| kd | 3 | 3 |"))                 // runs per method × ρ
    #expect(summary.contains("| subdistill | 0 | 2 |"))
    #expect(summary.contains("- `r/x/metrics.json`"))
    #expect(summary.contains("9 runs expected"))
    #expect(summary.contains("chance accuracy 20.0 %"))
    #expect(!summary.contains("Companion"))
}

@Test func uniformSeedsShowNoN() throws {
    let d = Dataset(runs: [makeRun("kd", rho: 0, seed: 1, acc: 0.5), makeRun("kd", rho: 0, seed: 2, acc: 0.7),
                           makeRun("vid", rho: 0, seed: 1, acc: 0.4), makeRun("vid", rho: 0, seed: 2, acc: 0.4)])
    let table = try #require(SummaryMarkdown.metricTable(d, .accTest))
    #expect(!table.contains("n="))
    #expect(table.contains("| kd | **60.0 ± 127.1** |"))     // t(0.975, 1) · 0.1414 / √2
    #expect(table.contains("| vid | 40.0 ± 0.0 † |"))        // a student's zero spread is shown
}

@Test func companionGridPerImbalance() throws {
    var runs: [LoadedRun] = []
    for imb in [1.0, 10.0] {
        for t in ["dro", "erm"] {
            for s in ["dro", "std"] {
                for seed in [1, 2] {
                    let acc = 0.8 + (s == "dro" ? 0.02 : 0) + Double(seed) * 0.01
                    runs.append(makeRun("kd", rho: 0, seed: seed, acc: acc, teacherAcc: 0.9, tObj: t, sObj: s,
                                        imbalance: imb, worst: acc - 0.2))
                }
            }
        }
    }
    let d = Dataset(runs: runs)
    #expect(d.hasObjectiveStudy)
    let groups = d.objectiveGroups
    #expect(groups.map(\.title) == ["imbalance = 1", "imbalance = 10"])
    #expect(groups[0].teacherObjectives == ["erm", "dro"])     // baseline first
    #expect(groups[0].studentObjectives == ["std", "dro"])
    let st = groups[0].studentStats(teacher: "erm", student: "dro")
    #expect(st.n == 2 && abs(st.overall!.mean - 0.835) < 1e-12 && abs(st.worst!.mean - 0.635) < 1e-12)
    let md = try #require(SummaryMarkdown.companionSection(d))
    #expect(md.contains("### imbalance = 10"))
    #expect(md.contains("| erm | 81.5 ± 6.4 / 61.5 ± 6.4 (n=2) | 83.5 ± 6.4 / 63.5 ± 6.4 (n=2) | 90.0 / 50.0 |"))
    // Objectives and imbalance vary within kd, so its series split by them.
    #expect(d.series.count == 8)
}

// MARK: - SVG

@Test func niceTicksAndLabels() {
    let unit = niceTicks(0, 1)
    #expect(unit.count == 6 && zip(unit, [0, 0.2, 0.4, 0.6, 0.8, 1]).allSatisfy { abs($0 - $1) < 1e-12 })
    #expect(niceTicks(0, 87) == [0, 20, 40, 60, 80])
    #expect(niceTicks(-3, 3) == [-2, 0, 2])
    #expect(niceTicks(13, 47, maxTicks: 5) == [20, 30, 40])
    let dom = niceDomain(13, 47, maxTicks: 5)
    #expect(dom.0 == 10 && dom.1 == 50)
    #expect(tickLabel(0.125) == "0.125" && tickLabel(20) == "20" && tickLabel(0.5) == "0.5")
    #expect(escapeXML("a<b & \"c\"") == "a&lt;b &amp; &quot;c&quot;")
    let s = LinearScale(domain: (0, 100), range: (200, 0))
    #expect(s.map(25) == 150)
}

@Test func accuracyFigureParsesAndHasOneSeriesPerMethodPerPanel() throws {
    var runs: [LoadedRun] = []
    for m in ["kd", "kd+ce", "sub<distill>"] {
        for rho in [0.0, 0.5, 1.0] {
            for seed in [1, 2] {
                runs.append(makeRun(m, rho: rho, seed: seed, acc: 0.5 + 0.1 * Double(seed), clean: 0.7, teacherAcc: 0.9))
            }
        }
    }
    runs.append(makeRun("vid", rho: 0.5, seed: 1))   // a method without numbers still gets an (empty) series
    let d = Dataset(runs: runs)
    let svg = Figures.accuracyVsRho(d)
    let els = try #require(parseXML(svg), "accuracy-vs-rho.svg is not well-formed XML")
    #expect(els.first?.0 == "svg")
    #expect(seriesPerPanel(els) == [4, 4])                       // test and clean; no conflict data
    #expect(seriesPerPanel(els, cls: "reference") == [1, 0])     // the teacher (its clean accuracy is absent)
    let ids = els.compactMap { $0.1["id"] }
    #expect(Set(ids).count == ids.count)                          // ids unique
    let names = els.filter { $0.0 == "g" && $0.1["class"] == "series" }.compactMap { $0.1["data-name"] }
    #expect(Array(names.prefix(4)) == ["kd", "kd+ce", "sub<distill>", "vid"])
    #expect(svg.contains("chance (20 %)"))
    #expect(svg.contains("ρ (fraction") && svg.contains("accuracy (%)"))
    // Error bars (95 % intervals): in the test panel each of the 3 methods × 3 ρ has two seeds
    // (0.6, 0.7) → one bar each; clean accuracy is constant (std 0) → none there.
    #expect(els.filter { $0.1["class"] == "error-bar" }.count == 3 * 3)
    #expect(Figures.accuracyVsRho(Dataset(runs: runs)) == svg)   // deterministic bytes
    #expect(svg.contains("95 % confidence interval of the mean"))
    // Bar half-width: t(0.975, 1) · 0.0707 / √2 = 63.5 points, not the sample std (7.1).
    let kd = try #require(Figures.studentSeries(d, .accTest, rows: Figures.Rows(d), row: nil).first)
    #expect(kd.points.count == 3)
    #expect(kd.points.allSatisfy { abs(($0.yErr ?? 0) - 12.706204736174705 * 0.1 / 2.0.squareRoot() * 100 / 2.0.squareRoot()) < 1e-6 })
}

@Test func relevanceAndObjectiveFigures() throws {
    let plain = Dataset(runs: [makeRun("kd", rho: 0, seed: 1, gxi: 0.1), makeRun("subdistill", rho: 1, seed: 1, gxi: 0.05)])
    let rel = try #require(parseXML(Figures.relevanceVsRho(plain)))
    #expect(seriesPerPanel(rel) == [2, 2])
    #expect(Figures.worstVsOverall(plain) == nil)                // objectives do not vary

    var runs: [LoadedRun] = []
    for t in ["erm", "dro"] {
        for s in ["std", "dro", "tilted"] {
            runs.append(makeRun("kd", rho: 0, seed: 1, acc: 0.8, teacherAcc: 0.9, tObj: t, sObj: s, imbalance: 10, worst: 0.6))
        }
    }
    let svg = try #require(Figures.worstVsOverall(Dataset(runs: runs)))
    let els = try #require(parseXML(svg))
    #expect(seriesPerPanel(els) == [6])                          // one point per teacher × student objective
    #expect(seriesPerPanel(els, cls: "reference") == [2])        // the two teachers
    #expect(els.filter { $0.1["class"] == "point-label" }.count == 8)
}

// MARK: - The stage end to end

@Test func stageWritesReportOverPartialRunsAndListsMissing() throws {
    let root = try tempDir()
    defer { try? FileManager.default.removeItem(atPath: root) }
    try write(makeRun("kd", rho: 0, seed: 1, acc: 0.9).metrics, under: root, "kd/rho0/seed1/metrics.json")
    try write(makeRun("kd", rho: 0, seed: 2, acc: 0.8).metrics, under: root, "kd/rho0/seed2/metrics.json")
    try write(makeRun("vid", rho: 0.5, seed: 1).metrics, under: root, "vid/rho0.5/seed1/metrics.json")
    try Data("{not json".utf8).write(to: URL(fileURLWithPath: root + "/other.json"))   // other names ignored
    try FileManager.default.createDirectory(atPath: root + "/bad", withIntermediateDirectories: true)
    try Data("{not json".utf8).write(to: URL(fileURLWithPath: root + "/bad/metrics.json"))
    let expect = root + "/expected.txt"
    try Data("""
        # expected runs
        \(root)/kd/rho0/seed1/metrics.json
        kd/rho0/seed2/metrics.json
        kd/rho0/seed3/metrics.json

        """.utf8).write(to: URL(fileURLWithPath: expect))
    // A stale objective figure from an earlier report must go.
    let out = root + "/report"
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    try Data("old".utf8).write(to: URL(fileURLWithPath: out + "/worst-vs-overall.svg"))

    var log: [String] = []
    let r = try ReportStage.run(ReportOptions(root: root, out: out, expectFile: expect)) { log.append($0) }
    #expect(r.dataset.runs.count == 3)
    #expect(r.expectedCount == 3)
    #expect(r.gaps.missing == ["kd/rho0/seed3/metrics.json"])
    #expect(r.gaps.unreadable.map(\.0) == [root + "/bad/metrics.json"])
    #expect(r.written.map { ($0 as NSString).lastPathComponent } ==
            ["results.csv", "summary.md", "accuracy-vs-rho.svg", "relevance-vs-rho.svg"])
    #expect(r.removed == [out + "/worst-vs-overall.svg"])
    #expect(!FileManager.default.fileExists(atPath: out + "/worst-vs-overall.svg"))
    let hidden = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix(".") }
    #expect(hidden.isEmpty)                                       // no temporary files left
    let rows = parseCSV(try String(contentsOfFile: out + "/results.csv", encoding: .utf8))
    #expect(rows.count == 4)
    #expect(rows[1].last == root + "/kd/rho0/seed1/metrics.json")   // sorted paths
    #expect(rows[3].last == root + "/vid/rho0.5/seed1/metrics.json")
    let summary = try String(contentsOfFile: out + "/summary.md", encoding: .utf8)
    #expect(summary.contains("kd/rho0/seed3/metrics.json"))
    #expect(summary.contains("bad/metrics.json"))
    #expect(summary.contains("| vid | 0 | 1 |"))
    #expect(log.contains { $0.contains("missing: kd/rho0/seed3/metrics.json") })
    #expect(ReportStage.countLines(r.dataset) == ["method  ρ=0  ρ=0.5", "kd        2      0", "vid       0      1"])
    for f in ["accuracy-vs-rho.svg", "relevance-vs-rho.svg"] {
        let svg = try String(contentsOfFile: out + "/" + f, encoding: .utf8)
        #expect(parseXML(svg) != nil, "\(f) is not well-formed")
    }
}

@Test func emptyRootFailsClearlyAndWritesNothing() throws {
    let root = try tempDir()
    defer { try? FileManager.default.removeItem(atPath: root) }
    try FileManager.default.createDirectory(atPath: root + "/kd/rho0", withIntermediateDirectories: true)
    let out = root + "/report"
    do {
        try ReportStage.run(ReportOptions(root: root, out: out))
        Issue.record("an empty root must fail")
    } catch let e as ReportError {
        #expect(e == .noRuns(root: root, unreadable: 0))
        #expect(e.description.contains("no runs found") && e.description.contains(root))
    }
    #expect(!FileManager.default.fileExists(atPath: out))
    #expect(throws: ReportError.rootMissing(root + "/nope")) {
        try ReportStage.run(ReportOptions(root: root + "/nope", out: out))
    }
    #expect(throws: ReportError.badExpectFile("cannot read '\(root)/no-such-list'")) {
        try ReportStage.run(ReportOptions(root: root, out: out, expectFile: root + "/no-such-list"))
    }
}

@Test func atomicWriteReplacesContent() throws {
    let dir = try tempDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let p = dir + "/x.txt"
    try ReportStage.writeAtomically(Data("one".utf8), to: p)
    try ReportStage.writeAtomically(Data("two".utf8), to: p)
    #expect(try String(contentsOfFile: p, encoding: .utf8) == "two")
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["x.txt"])
    #expect(throws: ReportError.self) { try ReportStage.writeAtomically(Data(), to: dir + "/no/such/dir/x") }
}

@Test func cellFormatting() {
    #expect(SummaryMarkdown.cell(nil, .accTest, showN: true) == "–")
    // ± the 95 % half-width: 4.303 · 1.23 / √3 = 3.06; 12.706 · 1.23 / √2 = 11.05.
    #expect(SummaryMarkdown.cell(Stat(n: 3, mean: 0.915, std: 0.0123), .accTest, showN: false) == "91.5 ± 3.1")
    #expect(SummaryMarkdown.cell(Stat(n: 2, mean: 0.915, std: 0.0123), .accTest, showN: true) == "91.5 ± 11.1 (n=2)")
    #expect(SummaryMarkdown.cell(Stat(n: 1, mean: 0.5, std: nil), .accTest, showN: false) == "50.0 ± –")
    #expect(SummaryMarkdown.cell(Stat(n: 3, mean: 1.5, std: 0.5), .deadChannels, showN: false) == "1.5 ± 1.2")
    // The teacher: identical values up to rounding, or one seed, print without an interval; a real spread stays.
    #expect(SummaryMarkdown.cell(Stat(n: 3, mean: 0.915, std: 1.4e-17), .accTest, showN: false, constantAsSingle: true) == "91.5")
    #expect(SummaryMarkdown.cell(Stat(n: 1, mean: 0.915, std: nil), .accTest, showN: false, constantAsSingle: true) == "91.5")
    #expect(SummaryMarkdown.cell(Stat(n: 3, mean: 0.915, std: 0.01), .accTest, showN: false, constantAsSingle: true) == "91.5 ± 2.5")
}

// MARK: - Artifact probe in summary.md

/// Student digit shares are averaged per method × ρ over seeds; teacher basis
/// shares are grouped by the split the basis was estimated on, one value per
/// seed however many runs read the same subspace.
@Test func summaryShowsTheArtifactProbe() {
    func probed(_ method: String, rho: Double, seed: Int, student: Double, basis: Double, split: String?) -> LoadedRun {
        var r = makeRun(method, rho: rho, seed: seed, acc: 0.5)
        r.metrics.run.basisSplit = split
        r.metrics.probe = ProbeMetrics(pairs: "test-clean/test-conflict",
                                       teacherBasisDigitShare: ["stage3/prcaposdef": basis],
                                       studentDigitShare: ["stage3": student])
        return r
    }
    let runs = [
        probed("subdistill", rho: 1, seed: 1, student: 0.2, basis: 0.9, split: nil),
        probed("subdistill", rho: 1, seed: 2, student: 0.4, basis: 0.8, split: nil),
        // A second method reading the same subspaces: must not count twice.
        probed("subdistill-x", rho: 1, seed: 1, student: 0.1, basis: 0.9, split: nil),
        probed("subdistill-x", rho: 1, seed: 2, student: 0.1, basis: 0.8, split: nil),
        probed("subdistill-clean", rho: 1, seed: 1, student: 0.05, basis: 0.25, split: "distill-train-clean"),
        makeRun("label-only", rho: 1, seed: 1, acc: 0.2),
    ]
    let d = Dataset(runs: runs, methodOrder: ["label-only", "subdistill", "subdistill-x", "subdistill-clean"])
    let text = SummaryMarkdown.render(d, root: "r", gaps: Gaps(), expected: nil)
    #expect(text.contains("## Artifact probe"))
    #expect(text.contains("`test-clean/test-conflict`"))
    // Student: mean 30.0, sample std 14.1 over the two seeds → 95 % half-width 127.1; label-only has no probe.
    #expect(text.contains("| subdistill | 30.0 ± 127.1 |"))
    #expect(text.contains("| label-only | – |"))
    // Teacher basis: seeds {0.9, 0.8} → 85.0 ± 63.5 (std 7.1) once, not four values.
    #expect(text.contains("| prcaposdef on `distill-train` | 85.0 ± 63.5 |"))
    #expect(text.contains("| prcaposdef on `distill-train-clean` | 25.0 ± – |"))
    // No probe anywhere: no section.
    let plain = Dataset(runs: [makeRun("kd", rho: 0, seed: 1, acc: 0.9)], methodOrder: ["kd"])
    #expect(!SummaryMarkdown.render(plain, root: "r", gaps: Gaps(), expected: nil).contains("Artifact probe"))
}

/// Runs over two subtasks (each with its own student): one row of panels per subtask, each panel
/// with that subtask's series only, and one legend entry and colour per method across rows.
@Test func accuracyFigureHasOneRowPerSubtask() throws {
    var runs: [LoadedRun] = []
    for (sub, arch) in [("gratings", "c8,p,fc5"), ("stars", "c16,p,fc5")] {
        for m in sub == "gratings" ? ["kd", "subdistill", "vid"] : ["kd", "subdistill"] {
            for rho in [0.0, 1.0] {
                var r = makeRun(m, rho: rho, seed: 1, acc: sub == "gratings" ? 0.9 : 0.4, teacherAcc: 0.95)
                r.metrics.run.subtask = sub
                r.metrics.run.studentArch = arch
                runs.append(r)
            }
        }
    }
    let d = Dataset(runs: runs)
    #expect(d.series.count == 5)                                  // kd and subdistill split by subtask
    let svg = Figures.accuracyVsRho(d)
    let els = try #require(parseXML(svg))
    #expect(seriesPerPanel(els) == [3, 3, 2, 2])                 // rows gratings, stars × test, clean
    #expect(seriesPerPanel(els, cls: "reference") == [1, 0, 1, 0])
    #expect(svg.contains("Test (published metric): gratings") && svg.contains("Clean (no artifact): stars"))
    let legend = els.filter { $0.0 == "g" && $0.1["class"] == "legend-entry" }
    #expect(legend.count == 4)                                    // kd, subdistill, vid, teacher
    // kd is drawn in the same colour in both rows.
    let kd = els.filter { $0.0 == "g" && $0.1["class"] == "series" && $0.1["data-name"] == "kd" }
    #expect(kd.count == 4)
    let ids = els.compactMap { $0.1["id"] }
    #expect(Set(ids).count == ids.count)
    let rel = try #require(parseXML(Figures.relevanceVsRho(d)))
    #expect(seriesPerPanel(rel).count == 4)
}

// MARK: - 95 % confidence intervals and overlaps

@Test func studentTQuantilesMatchTables() {
    // Two-sided 95 % critical values, as printed in t tables (3 decimals).
    for (df, t) in [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (29, 2.045), (30, 2.042)] {
        #expect(abs(studentTQuantile(0.975, df: df) - t) < 5e-4, "df \(df)")
    }
    // Closed forms: df 1 is Cauchy, tan(π(p − ½)); df 2: (2p − 1) / √(2p(1 − p)).
    #expect(abs(studentTQuantile(0.975, df: 1) - tan(Double.pi * 0.475)) < 1e-9)
    #expect(abs(studentTQuantile(0.975, df: 2) - 0.95 / (2 * 0.975 * 0.025).squareRoot()) < 1e-12)
    // More digits (R's qt): df 4 2.776445105, df 9 2.262157163; large df tends to the normal 1.959964.
    #expect(abs(studentTQuantile(0.975, df: 4) - 2.776445105) < 1e-8)
    #expect(abs(studentTQuantile(0.975, df: 9) - 2.262157163) < 1e-8)
    #expect(abs(studentTQuantile(0.975, df: 1000) - 1.962339) < 1e-6)
    #expect(abs(studentTQuantile(0.975, df: 20000) - 1.960083) < 1e-6)   // 1.959964 + (z³ + z) / 4df
    // Other levels and symmetry.
    #expect(abs(studentTQuantile(0.95, df: 5) - 2.015048) < 1e-6)
    #expect(abs(studentTQuantile(0.025, df: 4) + studentTQuantile(0.975, df: 4)) < 1e-12)
    #expect(studentTQuantile(0.5, df: 7) == 0)
    #expect(abs(studentTTwoSided(2.776445105, df: 4) - 0.95) < 1e-9)
}

@Test func intervalsByHandForThreeAndFiveSeeds() throws {
    // 3 seeds: mean 0.85, s = 0.05; half-width t(0.975, 2) · 0.05 / √3 = 4.302653 · 0.028868 = 0.124207.
    let three = try #require(describe([0.80, 0.85, 0.90]))
    #expect(abs(three.std! - 0.05) < 1e-12)
    #expect(abs(three.ciHalfWidth! - 0.1242070) < 1e-6)
    #expect(abs(three.ci!.lowerBound - 0.7257930) < 1e-6 && abs(three.ci!.upperBound - 0.9742070) < 1e-6)
    #expect(SummaryMarkdown.cell(three, .accTest, showN: false) == "85.0 ± 12.4")
    #expect(SummaryMarkdown.interval(three, .accTest) == "85.0 [72.6, 97.4]")
    // 5 seeds: mean 0.74, s = √0.001 = 0.0316228; t(0.975, 4) · s / √5 = 2.776445 · 0.0141421 = 0.0392644.
    let five = try #require(describe([0.70, 0.72, 0.74, 0.76, 0.78]))
    #expect(abs(five.mean - 0.74) < 1e-12)
    #expect(abs(five.ciHalfWidth! - 0.0392644) < 1e-6)
    #expect(SummaryMarkdown.cell(five, .accTest, showN: false) == "74.0 ± 3.9")
    #expect(SummaryMarkdown.interval(five, .accTest) == "74.0 [70.1, 77.9]")
    // Overlap: [0.726, 0.974] and [0.701, 0.779] share [0.726, 0.779].
    #expect(three.ciOverlaps(five) == true)
    let far = try #require(describe([0.50, 0.51, 0.52]))
    #expect(far.ciOverlaps(five) == false && five.ciOverlaps(far) == false)
}

@Test func oneSeedHasNoInterval() throws {
    let one = try #require(describe([0.9]))
    #expect(one.ciHalfWidth == nil && one.ci == nil)
    #expect(one.ciOverlaps(try #require(describe([0.8, 0.9]))) == nil)
    #expect(SummaryMarkdown.cell(one, .accTest, showN: false) == "90.0 ± –")
    #expect(SummaryMarkdown.interval(one, .accTest) == "90.0 [–]")
    // A one-seed report: no marks, no comparison, no error bars.
    let d = Dataset(runs: [makeRun("kd", rho: 0, seed: 1, acc: 0.9, teacherAcc: 0.95),
                           makeRun("kd", rho: 1, seed: 1, acc: 0.6, teacherAcc: 0.95),
                           makeRun("subdistill", rho: 0, seed: 1, acc: 0.9, teacherAcc: 0.95),
                           makeRun("subdistill", rho: 1, seed: 1, acc: 0.8, teacherAcc: 0.95)])
    let table = try #require(SummaryMarkdown.metricTable(d, .accTest))
    #expect(table.contains("| kd | 90.0 ± – | 60.0 ± – |"))
    #expect(table.contains("| *teacher* | 95.0 | 95.0 |"))
    #expect(!table.contains("†") && !table.contains("**"))
    #expect(d.comparisons(.accTest).map(\.best) == [[]])
    let summary = SummaryMarkdown.render(d, root: "r", gaps: Gaps(), expected: nil)
    #expect(summary.contains("## Methods that cannot be told apart at ρ = 1"))
    #expect(summary.contains("No method has two or more seeds here: no intervals to compare."))
    #expect(summary.contains("95 % confidence interval"))
    #expect(!summary.contains("sample standard deviation over seeds"))
    let svg = Figures.accuracyVsRho(d)
    #expect(!svg.contains("class=\"error-bar\""))
    #expect(svg.contains("n = 1 seed per point: no intervals"))
}

/// Two subtasks, three seeds at ρ ∈ {0, 1}: at ρ = 1 on gratings, kd and fitnet overlap, label-only
/// is apart and vid (one seed) is not compared; on stars all three overlap. Conflict accuracy is
/// measured, so it is compared too.
@Test func overlapSectionPerSubtaskAtTheLargestRho() throws {
    // (subtask, method) → test accuracy per seed at ρ = 1; conflict = test − 0.3 except label-only.
    let acc: [String: [String: [Double]]] = [
        "gratings": ["label-only": [0.50, 0.51, 0.52], "kd": [0.88, 0.89, 0.90], "fitnet": [0.90, 0.91, 0.92],
                     "vid": [0.95]],
        "stars": ["label-only": [0.40, 0.45, 0.50], "kd": [0.42, 0.44, 0.46], "fitnet": [0.41, 0.45, 0.48]],
    ]
    var runs: [LoadedRun] = []
    for sub in ["gratings", "stars"] {
        for m in ["label-only", "kd", "fitnet", "vid"] {
            guard let xs = acc[sub]?[m] else { continue }
            for rho in [0.0, 1.0] {
                for (i, a) in xs.enumerated() {
                    var r = makeRun(m, rho: rho, seed: i + 1, acc: rho == 0 ? 0.95 : a, teacherAcc: 0.97,
                                    path: "\(sub)/\(m)/\(rho)/\(i + 1)/metrics.json")
                    r.metrics.run.subtask = sub
                    r.metrics.student.accConflict = rho == 0 ? 0.9 : (m == "label-only" ? a : a - 0.3)
                    runs.append(r)
                }
            }
        }
    }
    let d = Dataset(runs: runs)
    #expect(d.comparisonSplit == [.subtask])
    #expect(d.comparedMetrics == [.accTest, .accConflict])
    let cs = d.comparisons(.accTest)
    #expect(cs.map(\.title) == ["subtask = gratings", "subtask = stars"])
    #expect(cs[0].entries.map(\.name) == ["label-only", "kd", "fitnet", "vid"])
    #expect(cs[0].best == ["fitnet__subtask-gratings"])
    #expect(cs[0].overlapsBest == ["kd__subtask-gratings"])
    #expect(cs[0].uncompared.map(\.name) == ["vid"])

    // The main table: bold best and † at ρ = 1 only, per subtask, with a legend line.
    let table = try #require(SummaryMarkdown.metricTable(d, .accTest))
    let lines = table.split(separator: "\n").map(String.init)
    // t(0.975, 2) · 0.01 / √3 = 0.0248 → ± 2.5
    #expect(lines.contains("| fitnet [subtask=gratings] | 95.0 ± 0.0 | **91.0 ± 2.5** |"))
    #expect(lines.contains("| kd [subtask=gratings] | 95.0 ± 0.0 | 89.0 ± 2.5 † |"))
    #expect(lines.contains("| label-only [subtask=gratings] | 95.0 ± 0.0 | 51.0 ± 2.5 |"))
    #expect(lines.contains("| vid | 95.0 ± – (n=1) | 95.0 ± – (n=1) |"))   // gratings only: not split
    // stars: label-only is best; the other two overlap it.
    #expect(lines.contains("| label-only [subtask=stars] | 95.0 ± 0.0 | **45.0 ± 12.4** |"))
    #expect(lines.contains("| fitnet [subtask=stars] | 95.0 ± 0.0 | 44.7 ± 8.7 † |"))
    #expect(lines.contains("| kd [subtask=stars] | 95.0 ± 0.0 | 44.0 ± 5.0 † |"))
    #expect(table.contains("At ρ = 1 (per subtask): **bold** = highest mean; † = its 95 % interval overlaps the best one's"))
    // Tables of other metrics carry no marks.
    let clean = try #require(SummaryMarkdown.metricTable(d, .worstClass))   // the teacher's
    #expect(!clean.contains("†") && !clean.contains("**"))

    let section = try #require(SummaryMarkdown.overlapSection(d))
    #expect(section.hasPrefix("## Methods that cannot be told apart at ρ = 1\n"))
    #expect(section.contains("conservative heuristic"))
    #expect(section.contains("At ρ = 1, the largest ρ of the runs, per subtask: for each method"))
    #expect(section.contains("### Test accuracy (published metric): subtask = gratings"))
    #expect(section.contains("| method | mean [95 % interval], % | seeds | interval overlaps |\n| --- | --- | --- | --- |"))
    #expect(section.contains("| fitnet (best) | 91.0 [88.5, 93.5] | 3 | kd |"))
    #expect(section.contains("| kd | 89.0 [86.5, 91.5] | 3 | fitnet |"))
    #expect(section.contains("| label-only | 51.0 [48.5, 53.5] | 3 | none |"))
    #expect(section.contains("Not compared (one seed, no interval): vid 95.0 [–]."))
    #expect(section.contains("### Test accuracy (published metric): subtask = stars"))
    #expect(section.contains("| label-only (best) | 45.0 [32.6, 57.4] | 3 | fitnet, kd |"))
    #expect(section.contains("| fitnet | 44.7 [35.9, 53.4] | 3 | label-only, kd |"))
    #expect(section.contains("| kd | 44.0 [39.0, 49.0] | 3 | label-only, fitnet |"))
    // Conflict accuracy (test − 30 points except label-only): on gratings fitnet 61, kd 59, label-only 51.
    #expect(section.contains("### Conflict accuracy (digit ≠ label on every image): subtask = gratings"))
    #expect(section.contains("| fitnet (best) | 61.0 [58.5, 63.5] | 3 | kd |"))
    #expect(section.contains("| label-only | 51.0 [48.5, 53.5] | 3 | none |"))
    let order = ["### Test accuracy (published metric): subtask = gratings", "### Test accuracy (published metric): subtask = stars",
                 "### Conflict accuracy (digit ≠ label on every image): subtask = gratings"]
    let positions = order.compactMap { section.range(of: $0)?.lowerBound }
    #expect(positions.count == 3 && positions == positions.sorted())
    // In summary.md: after the metric tables, with the definition in the header.
    let summary = SummaryMarkdown.render(d, root: "r", gaps: Gaps(), expected: nil)
    #expect(summary.contains(SummaryMarkdown.statisticsDefinition))
    #expect(summary.contains(section.trimmingCharacters(in: .newlines)))
}
