import TensorIO

/// Per-epoch series of one training run, in a fixed order: each loss term
/// separately (`loss_task`, `loss_kd`, `loss_dkd/tckd`, `loss_dkd/nckd` (unweighted;
/// the total weights them by α, β), `loss_layer/<pair>`), the
/// weighted total, the dead student channels per paired layer
/// (`dead_channels/<pair>`), train/validation accuracy and the learning rate.
/// Values are Double (stored as float64), so a resumed run's log is bit-equal.
public struct TrainingLog: Equatable {
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

    /// Best validation accuracy and its epoch (first on ties), nil before any epoch.
    public var best: (accuracy: Double, epoch: Int)? {
        guard let v = series["val_accuracy"], !v.isEmpty else { return nil }
        var b = 0
        for i in v.indices where v[i] > v[b] { b = i }
        return (v[b], b)
    }

    /// `{name: [values]}` for meta.json.
    public var json: JSON {
        .object(Dictionary(uniqueKeysWithValues: names.map { ($0, JSON.array(series[$0]!.map { .number($0) })) }))
    }

    /// Writes every series as `<prefix><name>` (float64, one value per epoch).
    public func write(into artifact: inout Artifact, prefix: String) {
        for n in names { artifact.set(prefix + n, NDArray(series[n]!, shape: [series[n]!.count])) }
    }

    /// Reads back the series under `prefix` (in entry order).
    public init(from artifact: Artifact, prefix: String) throws {
        for key in artifact.names where key.hasPrefix(prefix) {
            let a = try artifact.array(key)
            guard a.dtype == .float64, a.shape.count == 1 else {
                throw DistillError("log entry '\(key)' must be a 1-d float64 array, is \(a.dtype.rawValue) \(a.shape)")
            }
            let n = String(key.dropFirst(prefix.count))
            names.append(n)
            series[n] = try a.doubles()
        }
        let lengths = Set(names.map { series[$0]!.count })
        guard lengths.count <= 1 else { throw DistillError("log under '\(prefix)' has series of different lengths") }
    }
}
