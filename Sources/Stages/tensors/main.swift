// tensors: inspect and compare .npz artifacts.
import ArgumentParser
import CLIKit
import Foundation
import TensorIO

struct Tensors: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tensors",
        abstract: "Inspect and compare .npz artifacts (NumPy-compatible: one .npy per array plus meta.json).",
        discussion: """
        Exit status: 0 success (for diff: the files match), 2 diff found differences, 64 usage \
        error, 65 a file is not a readable artifact, 74 a file is missing or cannot be opened \
        (docs/stages.md, "Exit status").
        """,
        version: toolVersion,
        subcommands: [Show.self, Diff.self])
}

/// JSON can carry neither NaN nor infinities; they become strings.
func jsonNumber(_ x: Double?) -> JSON {
    guard let x = x else { return .null }
    if x.isNaN { return "nan" }
    if x.isInfinite { return x > 0 ? "inf" : "-inf" }
    return .number(x)
}

func fmt(_ x: Double?) -> String {
    guard let x = x else { return "-" }
    return String(format: "%.6g", x)
}

func shapeText(_ s: [Int]) -> String { "(" + s.map(String.init).joined(separator: ", ") + (s.count == 1 ? ",)" : ")") }

func printJSON(_ value: JSON) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    FileHandle.standardOutput.write(try enc.encode(value))
    FileHandle.standardOutput.write(Data("\n".utf8))
}

func metaJSON(_ m: ArtifactMeta?) throws -> JSON {
    guard let m = m else { return .null }
    return try JSONDecoder().decode(JSON.self, from: JSONEncoder().encode(m))
}

/// Left-aligned table with columns sized to their widest cell.
func table(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    var widths = [Int](repeating: 0, count: first.count)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    return rows.map { r in
        r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }.joined(separator: "\n")
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every entry (dtype, shape, min, max, mean, std; NaNs are counted and skipped) and print the metadata.")

    @Argument(help: "The .npz file.")
    var file: String

    @Flag(help: "Machine-readable output (non-finite numbers as \"nan\", \"inf\", \"-inf\").")
    var json = false

    func run() throws {
        let art = try NPZ.read(file)
        if json {
            let entries: [JSON] = art.names.map { n in
                let a = art[n]!
                let s = a.stats()
                return .object([
                    "name": .string(n), "dtype": .string(a.dtype.rawValue),
                    "shape": .array(a.shape.map { .number(Double($0)) }), "count": .number(Double(s.count)),
                    "nan_count": .number(Double(s.nanCount)), "min": jsonNumber(s.min), "max": jsonNumber(s.max),
                    "mean": jsonNumber(s.mean), "std": jsonNumber(s.std),
                ])
            }
            try printJSON(.object(["file": .string(file), "entries": .array(entries), "meta": try metaJSON(art.meta)]))
            return
        }
        var rows = [["entry", "dtype", "shape", "min", "max", "mean", "std", "nan"]]
        for n in art.names {
            let a = art[n]!
            let s = a.stats()
            rows.append([n, a.dtype.rawValue, shapeText(a.shape), fmt(s.min), fmt(s.max), fmt(s.mean), fmt(s.std), String(s.nanCount)])
        }
        print("\(file): \(art.names.count) arrays")
        print(table(rows))
        if let m = art.meta {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print("meta.json:")
            print(String(decoding: try enc.encode(m), as: UTF8.self))
        } else {
            print("meta.json: (none)")
        }
    }
}

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two artifacts entry by entry: max |a - b|, entries present in one file only, dtype or shape mismatches.",
        discussion: """
        Exits 2 if any entry's max absolute difference exceeds --tol, or the entry \
        sets, dtypes or shapes differ; 0 otherwise; 65 or 74 if a file cannot be read. \
        NaN matches NaN; NaN against a number is an infinite difference. \
        Metadata differences are reported but do not count.
        """)

    @Argument(help: "First .npz file.")
    var a: String

    @Argument(help: "Second .npz file.")
    var b: String

    @Option(help: "Largest allowed absolute difference per element.")
    var tol: Double = 0

    @Flag(help: "Machine-readable output.")
    var json = false

    func validate() throws {
        guard tol.isFinite, tol >= 0 else { throw ValidationError("--tol must be a finite number >= 0") }
    }

    func run() throws {
        let x = try NPZ.read(a)
        let y = try NPZ.read(b)
        var rows = [["entry", "status", "max|a-b|", "n>tol"]]
        var report: [JSON] = []
        var differing = 0
        let names = x.names + y.names.filter { x[$0] == nil }
        for n in names {
            var status = "ok", maxAbs: Double? = nil, over: Int? = nil
            switch (x[n], y[n]) {
            case (let p?, let q?):
                if p.dtype != q.dtype { status = "dtype \(p.dtype.rawValue) vs \(q.dtype.rawValue)" }
                else if p.shape != q.shape { status = "shape \(shapeText(p.shape)) vs \(shapeText(q.shape))" }
                else if let c = p.compare(q, tolerance: tol) {
                    maxAbs = c.maxAbsDifference; over = c.countOverTolerance
                    if c.countOverTolerance > 0 { status = "DIFFERENT" }
                }
            case (_?, nil): status = "only in A"
            default: status = "only in B"
            }
            if status != "ok" { differing += 1 }
            rows.append([n, status, fmt(maxAbs), over.map(String.init) ?? "-"])
            report.append(.object(["name": .string(n), "status": .string(status), "max_abs_diff": jsonNumber(maxAbs),
                                   "count_over_tol": over.map { .number(Double($0)) } ?? .null]))
        }
        let metaDiff = metaDifferences(x.meta, y.meta)
        if json {
            try printJSON(.object([
                "a": .string(a), "b": .string(b), "tol": .number(tol), "entries": .array(report),
                "differing_entries": .number(Double(differing)), "equal": .bool(differing == 0),
                "meta_differences": .array(metaDiff.map { .string($0) }),
            ]))
        } else {
            print("A: \(a)\nB: \(b)")
            print(table(rows))
            if !metaDiff.isEmpty { print("meta differs in: \(metaDiff.joined(separator: ", ")) (not counted)") }
            print(differing == 0 ? "equal within tol \(fmt(tol))" : "\(differing) of \(names.count) entries differ (tol \(fmt(tol)))")
        }
        if differing > 0 { throw ExitCode(2) }
    }

    /// Top-level metadata fields that differ, leaving out the creation time.
    func metaDifferences(_ p: ArtifactMeta?, _ q: ArtifactMeta?) -> [String] {
        switch (p, q) {
        case (nil, nil): return []
        case (_?, nil), (nil, _?): return ["presence of meta.json"]
        case (let p?, let q?):
            var d: [String] = []
            if p.formatVersion != q.formatVersion { d.append("formatVersion") }
            if p.stage != q.stage { d.append("stage") }
            if p.toolVersion != q.toolVersion { d.append("toolVersion") }
            if p.toolCommit != q.toolCommit { d.append("toolCommit") }
            if p.parameters != q.parameters { d.append("parameters") }
            if p.inputs != q.inputs { d.append("inputs") }
            if p.seed != q.seed { d.append("seed") }
            if p.extra != q.extra { d.append("extra") }
            return d
        }
    }
}

runMain(Tensors.self)
