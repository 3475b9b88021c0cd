import TensorIO

/// Artifact layout of a basis, all under the prefix `<layer>/<kind>/`
/// (`/` is a plain character in zip entry names; NumPy's `np.load` gives
/// back keys like `layer2/prcaposdef/U`):
///
/// | entry | dtype | shape |
/// |---|---|---|
/// | `U` | float64 | [d, k], column j = direction j |
/// | `mu` | float64 | [d] |
/// | `sigma2` | float64 | [k] |
/// | `eigenvalues` | float64 | [d], or [0] for `random` |
/// | `context_rank` | int64 | [1] |
/// | `n_samples` | int64 | [1] |
extension SubspaceBasis {
    public static func entryPrefix(layer: String, kind: BasisKind) -> String { "\(layer)/\(kind.rawValue)/" }

    /// Adds (or replaces) this basis's entries in `artifact`.
    public func write(into artifact: inout Artifact) {
        let p = SubspaceBasis.entryPrefix(layer: layer, kind: kind)
        artifact.set(p + "U", NDArray(uk, shape: [channels, k]))
        artifact.set(p + "mu", NDArray(mean, shape: [channels]))
        artifact.set(p + "sigma2", NDArray(sigma2, shape: [k]))
        artifact.set(p + "eigenvalues", NDArray(eigenvalues, shape: [eigenvalues.count]))
        artifact.set(p + "context_rank", NDArray([Int64(contextRank)], shape: [1]))
        artifact.set(p + "n_samples", NDArray([Int64(sampleCount)], shape: [1]))
    }

    /// Reads the basis of `layer` and `kind` back, checking every shape.
    public init(from artifact: Artifact, layer: String, kind: BasisKind) throws {
        let p = SubspaceBasis.entryPrefix(layer: layer, kind: kind)
        let where_ = "\(artifact.path ?? "artifact"), basis \(p)"
        do {
            let u = try artifact.array(p + "U")
            guard u.shape.count == 2 else { throw SubspaceError("\(where_): U must be 2-d [d, k], has shape \(u.shape)") }
            let (d, k) = (u.shape[0], u.shape[1])
            let mu = try artifact.array(p + "mu"), s2 = try artifact.array(p + "sigma2")
            let ev = try artifact.array(p + "eigenvalues")
            let rank = try artifact.array(p + "context_rank"), n = try artifact.array(p + "n_samples")
            guard mu.shape == [d], s2.shape == [k], ev.shape == [d] || ev.shape == [0],
                  rank.count == 1, n.count == 1 else {
                throw SubspaceError("\(where_): inconsistent shapes U \(u.shape), mu \(mu.shape), sigma2 \(s2.shape), eigenvalues \(ev.shape), context_rank \(rank.shape), n_samples \(n.shape)")
            }
            try self.init(layer: layer, kind: kind, channels: d, k: k, uk: u.asDoubles(), mean: mu.asDoubles(),
                          sigma2: s2.asDoubles(), eigenvalues: ev.asDoubles(),
                          contextRank: rank.asInts()[0], sampleCount: n.asInts()[0])
        } catch let e as TensorIOError {
            throw SubspaceError("\(where_): \(e.message)", causedBy: e)
        }
    }

    /// Every (layer, kind) with a basis in `artifact`, in entry order. Layer
    /// names may themselves contain `/`: the kind is the second-to-last component.
    public static func stored(in artifact: Artifact) -> [(layer: String, kind: BasisKind)] {
        var out: [(layer: String, kind: BasisKind)] = []
        for name in artifact.names where name.hasSuffix("/U") {
            let parts = name.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count >= 3, let kind = BasisKind(rawValue: String(parts[parts.count - 2])) else { continue }
            let layer = parts[0..<(parts.count - 2)].joined(separator: "/")
            if !layer.isEmpty { out.append((layer, kind)) }
        }
        return out
    }
}
