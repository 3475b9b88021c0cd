import TensorIO

/// The per-epoch log of a training run, shared by every training stage:
/// named series of Double, one value per epoch, in a fixed order (the
/// first epoch's order). Values are Double (stored as float64), so a
/// resumed run's log is bit-equal to an uninterrupted one.
///
/// The stages' series:
/// - `distill` (one log per λ_layer candidate): each loss term separately
///   (`loss_task`, `loss_kd`, `loss_dkd/tckd`, `loss_dkd/nckd` (unweighted;
///   the total weights them by α, β), `loss_layer/<pair>`), the weighted
///   total, the dead student channels per paired layer
///   (`dead_channels/<pair>`), train/validation accuracy (`val_accuracy`)
///   and the learning rate; written as float64 entries `log/<name>`.
/// - `train-teacher`: `epoch` (from 1), `loss`, `train_acc`, `val_acc`,
///   `val_worst_class`, `lr` and the wall time `seconds`; written as
///   `log/epoch` (int64) and float64 entries, `seconds` in meta.json only
///   (tensors must be identical between two runs of one seed).
/// Both keep the whole log in meta.json (`json`) too.
public struct TrainingLog: Equatable, Sendable {
    public private(set) var names: [String] = []
    public private(set) var series: [String: [Double]] = [:]

    public init() {}

    /// Number of epochs recorded.
    public var epochs: Int { names.first.map { series[$0]!.count } ?? 0 }

    public subscript(name: String) -> [Double]? { series[name] }

    /// Appends one epoch; the first call fixes the names and their order.
    public mutating func append(_ values: [(String, Double)]) {
        if names.isEmpty {
            names = values.map(\.0)
            for n in names { series[n] = [] }
        }
        precondition(values.map(\.0) == names, "TrainingLog: epoch entries \(values.map(\.0)) differ from \(names)")
        for (n, v) in values { series[n]!.append(v) }
    }

    /// Best validation accuracy (series `val_accuracy`) and its epoch (first
    /// on ties), nil before any epoch or without that series.
    public var best: (accuracy: Double, epoch: Int)? { best(by: "val_accuracy") }

    /// The highest value of `series` and its epoch (first on ties), nil
    /// before any epoch or without that series.
    public func best(by name: String) -> (accuracy: Double, epoch: Int)? { best(by: [name]) }

    /// The epoch whose values of `names` are lexicographically highest (the
    /// first series decides, the next breaks its ties, ...; first epoch on a
    /// full tie) and the first series' value there; nil before any epoch or
    /// without one of the series.
    public func best(by names: [String]) -> (accuracy: Double, epoch: Int)? {
        guard let first = names.first, let v = series[first], !v.isEmpty,
              names.allSatisfy({ series[$0] != nil }) else { return nil }
        var b = 0
        for i in v.indices where scores(at: b, names).lexicographicallyPrecedes(scores(at: i, names)) { b = i }
        return (v[b], b)
    }

    /// The values of `names` at the epoch `best(by: names)` keeps, for
    /// comparing logs the way `best(by:)` compares epochs within one.
    public func bestScores(by names: [String]) -> [Double]? {
        best(by: names).map { scores(at: $0.epoch, names) }
    }

    /// The values of `names` at `epoch`, in that order.
    public func scores(at epoch: Int, _ names: [String]) -> [Double] {
        names.map { series[$0]![epoch] }
    }

    /// `{name: [values]}` for meta.json.
    public var json: JSON {
        .object(Dictionary(uniqueKeysWithValues: names.map { ($0, JSON.array(series[$0]!.map { .number($0) })) }))
    }

    /// Reads back what `json` wrote: exactly the series `names`, in that
    /// order (a JSON object has none); nil when one is missing, not numeric,
    /// or the lengths differ.
    public init?(json: JSON?, series names: [String]) {
        guard let o = json?.object else { return nil }
        for n in names {
            guard let a = o[n]?.array else { return nil }
            let v = a.compactMap { $0.number }
            guard v.count == a.count else { return nil }
            self.names.append(n)
            series[n] = v
        }
        guard Set(names.map { series[$0]!.count }).count <= 1 else { return nil }
    }

    /// Writes every series as `<prefix><name>`, one value per epoch: float64,
    /// int64 for the names in `integers`; the names in `skipping` are left
    /// out (they stay in meta.json).
    public func write(into artifact: inout Artifact, prefix: String, integers: Set<String> = [], skipping: Set<String> = []) {
        for n in names where !skipping.contains(n) {
            let v = series[n]!
            if integers.contains(n) {
                artifact.set(prefix + n, NDArray(v.map { Int64($0) }, shape: [v.count]))
            } else {
                artifact.set(prefix + n, NDArray(v, shape: [v.count]))
            }
        }
    }

    /// Reads back the float64 series under `prefix` (in entry order).
    public init(from artifact: Artifact, prefix: String) throws {
        for key in artifact.names where key.hasPrefix(prefix) {
            let a = try artifact.array(key)
            guard a.dtype == .float64, a.shape.count == 1 else {
                throw StageError("log entry '\(key)' must be a 1-d float64 array, is \(a.dtype.rawValue) \(a.shape)")
            }
            let n = String(key.dropFirst(prefix.count))
            names.append(n)
            series[n] = try a.doubles()
        }
        let lengths = Set(names.map { series[$0]!.count })
        guard lengths.count <= 1 else { throw StageError("log under '\(prefix)' has series of different lengths") }
    }
}
