import Foundation
import StageKit
import TensorIO

/// A hyper-parameter the tuning protocol may choose (docs/methods.md,
/// "Tuning protocol"): its `distill` option and its key in a student's
/// metadata and in the tuning artifact.
public enum Hyperparameter: String, CaseIterable, Sendable {
    case lambdaLayer = "lambda_layer"
    case temperature
    case dkdBeta = "dkd_beta"

    /// The `distill` option that sets it.
    public var option: String {
        switch self {
        case .lambdaLayer: return "--lambda-layer"
        case .temperature: return "--temperature"
        case .dkdBeta: return "--dkd-beta"
        }
    }

    public func apply(_ v: Float, to c: inout DistillConfig) {
        switch self {
        case .lambdaLayer: c.lambdaLayers = [v]
        case .temperature: c.temperature = v
        case .dkdBeta: c.dkdBeta = v
        }
    }
}

/// The grid a method is tuned over: one axis per hyper-parameter.
public struct TuningGrid: Sendable, Equatable {
    public var axes: [(Hyperparameter, [Float])]

    public init(_ axes: [(Hyperparameter, [Float])] = []) { self.axes = axes }

    public static func == (a: TuningGrid, b: TuningGrid) -> Bool {
        a.axes.map(\.0) == b.axes.map(\.0) && a.axes.map(\.1) == b.axes.map(\.1)
    }

    /// Every combination, the first axis slowest.
    public var points: [TuningPoint] {
        var out: [[(Hyperparameter, Float)]] = [[]]
        for (h, values) in axes {
            out = out.flatMap { p in values.map { p + [(h, $0)] } }
        }
        return axes.isEmpty ? [] : out.map(TuningPoint.init)
    }

    /// λ_layer ∈ {0.1, 1, 10, 100}: every method with a layer term.
    public static let lambdaLayer = TuningGrid([(.lambdaLayer, [0.1, 1, 10, 100])])
    /// T ∈ {1, 2, 4, 8}: the KD methods.
    public static let temperature = TuningGrid([(.temperature, [1, 2, 4, 8])])
}

/// One candidate of a grid.
public struct TuningPoint: Sendable, Equatable {
    public var values: [(Hyperparameter, Float)]

    public init(_ values: [(Hyperparameter, Float)]) { self.values = values }

    public static func == (a: TuningPoint, b: TuningPoint) -> Bool {
        a.values.map(\.0) == b.values.map(\.0) && a.values.map(\.1) == b.values.map(\.1)
    }

    /// A path-safe name, e.g. `lambda_layer-10` or `temperature-4_dkd_beta-0.5`.
    public var slug: String { values.map { "\($0.0.rawValue)-\(Self.format($0.1))" }.joined(separator: "_") }
    /// The `distill` options, e.g. `--temperature 4 --dkd-beta 0.5`.
    public var arguments: String { values.map { "\($0.0.option) \(Self.format($0.1))" }.joined(separator: " ") }

    static func format(_ v: Float) -> String { String(format: "%g", Double(v)) }
}

/// The tuning artifact of one (method, subtask): every candidate's mean best
/// validation accuracy over the tuning seeds, and the choice. JSON, stage
/// `select-hparams`:
///
///     {"stage": "select-hparams", "method": "fitnet",
///      "candidates": [{"values": {"lambda_layer": 0.1}, "val_accuracy": [..per seed..],
///                      "mean_val_accuracy": 0.91, "students": [...]}, ...],
///      "chosen": {"lambda_layer": 10}, "chosen_mean_val_accuracy": 0.95, "inputs": {...digests}}
public struct TuningResult: Equatable {
    public struct Candidate: Equatable {
        public var point: TuningPoint
        /// Best validation accuracy per tuning student, in the order given.
        public var accuracies: [Double]
        public var students: [String]
        public var mean: Double { accuracies.reduce(0, +) / Double(max(accuracies.count, 1)) }
    }

    public var method: String
    public var candidates: [Candidate]
    /// Index of the chosen candidate: the highest mean, the first in grid order on ties.
    public var chosen: Int

    public var choice: TuningPoint { candidates[chosen].point }

    /// Groups tuning students by their grid point (read from each student's
    /// metadata), averages their best validation accuracies, picks the best.
    /// Every grid point must have the same number of students, at least one.
    public static func select(method: DistillMethod, grid: TuningGrid, students paths: [String]) throws -> TuningResult {
        let points = grid.points
        guard !points.isEmpty else { throw DistillError("\(method.name) has no hyper-parameter to tune") }
        var acc = [[Double]](repeating: [], count: points.count)
        var names = [[String]](repeating: [], count: points.count)
        for path in paths {
            let meta: ArtifactMeta
            do {
                guard let m = try NPZ.read(path, entries: []).meta else { throw DistillError("'\(path)' has no metadata") }
                meta = m
            } catch let e as TensorIOError {
                throw DistillError("cannot read tuning student '\(path)': \(e.message)")
            }
            guard meta.stage == "distill", meta.parameters["method"]?.string == method.name else {
                throw DistillError("'\(path)' is not a \(method.name) student (stage \(meta.stage), method \(meta.parameters["method"]?.string ?? "none"))")
            }
            let values: [(Hyperparameter, Float)] = try grid.axes.map { h, _ in
                guard let v = meta.parameters[h.rawValue]?.number else {
                    throw DistillError("'\(path)' records no \(h.rawValue)")
                }
                return (h, Float(v))
            }
            guard let i = points.firstIndex(of: TuningPoint(values)) else {
                throw DistillError("'\(path)' was trained at \(TuningPoint(values).arguments), not a point of the grid")
            }
            guard let a = meta.extra["best_val_accuracy"]?.number, a.isFinite else {
                throw DistillError("'\(path)' records no best_val_accuracy")
            }
            acc[i].append(a)
            names[i].append(path)
        }
        let counts = Set(acc.map(\.count))
        guard counts.count == 1, let n = counts.first, n > 0 else {
            let missing = points.indices.filter { acc[$0].isEmpty }.map { points[$0].arguments }
            throw DistillError("every grid point needs the same number (≥ 1) of tuning students; got \(acc.map(\.count))\(missing.isEmpty ? "" : "; none for: " + missing.joined(separator: ", "))")
        }
        let candidates = points.indices.map { Candidate(point: points[$0], accuracies: acc[$0], students: names[$0]) }
        var best = 0
        for i in candidates.indices where candidates[i].mean > candidates[best].mean { best = i }
        return TuningResult(method: method.name, candidates: candidates, chosen: best)
    }

    public func json(inputs: [String: String]) -> JSON {
        // Values as written in the grid (0.1, not 0.10000000149 from float32).
        func values(_ p: TuningPoint) -> JSON {
            .object(Dictionary(uniqueKeysWithValues: p.values.map { ($0.0.rawValue, JSON.number(Double(TuningPoint.format($0.1))!)) }))
        }
        return .object([
            "stage": "select-hparams",
            "method": .string(method),
            "candidates": .array(candidates.map { c in
                .object(["values": values(c.point), "val_accuracy": .array(c.accuracies.map { .number($0) }),
                         "mean_val_accuracy": .number(c.mean), "students": .array(c.students.map { .string($0) })])
            }),
            "chosen": values(choice),
            "chosen_mean_val_accuracy": .number(candidates[chosen].mean),
            "inputs": .object(inputs.mapValues { .string($0) }),
        ])
    }

    /// The chosen values of a tuning artifact written by `json(inputs:)`.
    public static func chosenValues(path: String) throws -> (method: String, values: [(Hyperparameter, Float)]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DistillError("cannot read tuning artifact '\(path)'")
        }
        let j: JSON
        do { j = try JSONDecoder().decode(JSON.self, from: data) } catch {
            throw DistillError("tuning artifact '\(path)' is not JSON: \(error)")
        }
        guard j["stage"]?.string == "select-hparams", let m = j["method"]?.string, let chosen = j["chosen"]?.object else {
            throw DistillError("'\(path)' is not a tuning artifact (select-hparams): no method or chosen values")
        }
        let values: [(Hyperparameter, Float)] = try chosen.keys.sorted().map { k in
            guard let h = Hyperparameter(rawValue: k), let v = chosen[k]?.number else {
                throw DistillError("tuning artifact '\(path)': unknown or non-numeric hyper-parameter '\(k)'")
            }
            return (h, Float(v))
        }
        return (m, values)
    }
}
