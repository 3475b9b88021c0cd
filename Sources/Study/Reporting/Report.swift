import Foundation
import TensorIO

// The report stage: gather every metrics.json under a root, say what is
// missing, and write results.csv, summary.md and the figures atomically.

public struct ReportOptions: Sendable {
    /// Folder searched recursively for `metrics.json`.
    public var root: String
    /// Output folder (created if needed).
    public var out: String
    /// Display order of methods; methods not listed follow in order of first appearance.
    public var methodOrder: [String]
    /// File listing expected metrics.json paths, one per line (blank lines and `#` comments ignored).
    public var expectFile: String?

    public init(root: String, out: String, methodOrder: [String] = [], expectFile: String? = nil) {
        self.root = root
        self.out = out
        self.methodOrder = methodOrder
        self.expectFile = expectFile
    }
}

public struct ReportResult: Sendable {
    public var dataset: Dataset
    public var gaps: Gaps
    /// Number of paths in the `--expect` file, if one was given.
    public var expectedCount: Int?
    /// Files written, in order.
    public var written: [String]
    /// Stale output removed (worst-vs-overall.svg when objectives no longer vary).
    public var removed: [String]
}

public enum ReportStage {
    public static let csvName = "results.csv"
    public static let summaryName = "summary.md"
    public static let accuracyFigure = "accuracy-vs-rho.svg"
    public static let relevanceFigure = "relevance-vs-rho.svg"
    public static let objectiveFigure = "worst-vs-overall.svg"

    /// Every `metrics.json` under `root` (recursive, sorted by path), read; files that fail to parse
    /// are returned with their error instead of stopping the report. Paths are `root/relative`.
    public static func collect(root: String) throws -> (runs: [LoadedRun], unreadable: [(String, String)]) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            throw ReportError.rootMissing(root)
        }
        let base = trimmedRoot(root)
        var rels: [String] = []
        if let e = FileManager.default.enumerator(atPath: root) {
            while let rel = e.nextObject() as? String {
                if (rel as NSString).lastPathComponent == "metrics.json" { rels.append(rel) }
            }
        }
        // Sort on the UTF-8 bytes: the same order on every machine and locale.
        rels.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        var runs: [LoadedRun] = []
        var unreadable: [(String, String)] = []
        for rel in rels {
            let path = base + "/" + rel
            var d: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &d), d.boolValue { continue }
            do {
                runs.append(LoadedRun(path: path, metrics: try RunMetrics.load(path: path)))
            } catch let e as ReportError {
                unreadable.append((path, e.description))
            } catch {
                unreadable.append((path, "\(error)"))
            }
        }
        return (runs, unreadable)
    }

    /// Paths listed in an `--expect` file.
    public static func readExpectFile(_ path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReportError.badExpectFile("cannot read '\(path)'")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ReportError.badExpectFile("'\(path)' is not UTF-8 text")
        }
        return text.split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    /// Expected paths with no metrics.json among `found` (the paths read, readable or not: the
    /// unreadable ones are reported separately). A relative expected path matches when it names the
    /// same file relative to the current folder (how Make writes it) or relative to the root.
    public static func missing(expected: [String], found foundPaths: [String], root: String) -> [String] {
        let found = Set(foundPaths.map { absolute($0) })
        return expected.filter { e in
            if found.contains(absolute(e)) { return false }
            if !e.hasPrefix("/") && found.contains(absolute(trimmedRoot(root) + "/" + e)) { return false }
            return true
        }
    }

    static func absolute(_ p: String) -> String {
        URL(fileURLWithPath: p).standardizedFileURL.path
    }

    static func trimmedRoot(_ root: String) -> String {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        return r
    }

    /// "runs per method × ρ" as aligned text lines (for stderr).
    public static func countLines(_ d: Dataset) -> [String] {
        let header = ["method"] + d.rhos.map { "ρ=" + numberText($0) }
        let rows = d.series.map { s in [s.name] + d.rhos.map { String(d.runs(of: s, rho: $0).count) } }
        let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max() ?? 0 }
        func line(_ r: [String]) -> String {
            r.enumerated().map { c, v in
                c == 0 ? v.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                       : String(repeating: " ", count: widths[c] - v.count) + v
            }.joined(separator: "  ")
        }
        return ([header] + rows).map(line)
    }

    /// Runs the whole stage. Progress and findings go to `log` (the CLI sends them to stderr).
    /// Throws `ReportError.noRuns` (writing nothing) when no run could be read.
    @discardableResult
    public static func run(_ o: ReportOptions, log: (String) -> Void = { _ in }) throws -> ReportResult {
        let (runs, unreadable) = try collect(root: o.root)
        log("found \(runs.count + unreadable.count) metrics.json under \(o.root)"
            + (unreadable.isEmpty ? "" : " (\(unreadable.count) unreadable)"))
        for (p, m) in unreadable { log("unreadable: \(p): \(m)") }

        var gaps = Gaps(unreadable: unreadable)
        var expectedCount: Int?
        if let f = o.expectFile {
            let expected = try readExpectFile(f)
            expectedCount = expected.count
            gaps.missing = missing(expected: expected, found: runs.map(\.path) + unreadable.map(\.0), root: o.root)
            log("\(expected.count - gaps.missing.count) of \(expected.count) expected metrics.json present"
                + (gaps.missing.isEmpty ? "" : "; missing:"))
            for p in gaps.missing { log("  missing: \(p)") }
        }
        guard !runs.isEmpty else { throw ReportError.noRuns(root: o.root, unreadable: unreadable.count) }

        let d = Dataset(runs: runs, methodOrder: o.methodOrder)
        let unknown = o.methodOrder.filter { !d.methods.contains($0) }
        if !unknown.isEmpty { log("--methods lists methods with no run: \(unknown.joined(separator: ", "))") }
        log("runs per method × ρ:")
        for l in countLines(d) { log("  " + l) }
        for w in d.warnings { log("warning: " + w) }

        // Everything is rendered before anything is written.
        var files: [(String, String)] = [
            (csvName, ResultsCSV.render(runs)),
            (summaryName, SummaryMarkdown.render(d, root: o.root, gaps: gaps, expected: expectedCount)),
            (accuracyFigure, Figures.accuracyVsRho(d)),
            (relevanceFigure, Figures.relevanceVsRho(d)),
        ]
        let companion = d.hasObjectiveStudy ? Dataset(runs: d.companionRuns, methodOrder: d.methods) : d
        let objective = Figures.worstVsOverall(companion)
        if let objective { files.append((objectiveFigure, objective)) }
        files += WorstClassReport.figures(companion)

        do {
            try FileManager.default.createDirectory(atPath: o.out, withIntermediateDirectories: true)
        } catch {
            throw ReportError.writeFailed("cannot create folder '\(o.out)': \(error.localizedDescription)")
        }
        var written: [String] = []
        for (name, text) in files {
            let path = trimmedRoot(o.out) + "/" + name
            try writeAtomically(Data(text.utf8), to: path)
            written.append(path)
            log("wrote \(path)")
        }
        var removed: [String] = []
        // Figures of the worst-class study left from an earlier report (a panel, teacher or DRO
        // configuration that no longer exists) would no longer match the data.
        let writtenNames = Set(files.map(\.0))
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: o.out)) ?? []
        for name in existing.sorted() where WorstClassReport.isOwnFigure(name) && !writtenNames.contains(name) {
            let stale = trimmedRoot(o.out) + "/" + name
            if (try? FileManager.default.removeItem(atPath: stale)) != nil {
                removed.append(stale)
                log("removed stale \(stale)")
            }
        }
        if objective == nil {
            // A figure left from an earlier run with varying objectives would no longer match the data.
            let stale = trimmedRoot(o.out) + "/" + objectiveFigure
            if FileManager.default.fileExists(atPath: stale) {
                try? FileManager.default.removeItem(atPath: stale)
                removed.append(stale)
                log("removed stale \(stale) (objectives do not vary)")
            }
        }
        return ReportResult(dataset: d, gaps: gaps, expectedCount: expectedCount, written: written, removed: removed)
    }

    /// Writes `data` atomically (TensorIO's temporary file + fsync + rename in the destination's
    /// folder), so readers (and Make) never see a half-written file.
    public static func writeAtomically(_ data: Data, to path: String) throws {
        do {
            try atomicWrite([UInt8](data), to: path)
        } catch {
            throw ReportError.writeFailed("\(error)")
        }
    }
}
