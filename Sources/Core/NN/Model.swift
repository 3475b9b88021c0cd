/// A sequential CNN described by a short architecture string, with named
/// taps at the end of each stage (the paired layers of layer-wise
/// distillation, docs/protocol.md, "Models and paired layers").
///
/// Grammar (comma-separated tokens, spaces ignored):
/// - `c<N>`: conv 3×3, stride 1, padding 1 → BN → ReLU (the conv has no bias
///   when BN follows). Suffixes `k<K>` kernel (padding ⌊(K−1)/2⌋) and
///   `s<S>` stride, in any order: `c16k1`, `c32s2`, `c64k5s2`.
///   With `batchNorm: false`: conv (with bias) → ReLU.
/// - `p`: max-pool 2×2 stride 2; `a`: average-pool 2×2 stride 2. Each ends
///   a stage; its output is tap `stage1`, `stage2`, … in order.
/// - `gap`: global average pool (B×H×W×C → B×C).
/// - `fc<N>`: linear layer to N features (a spatial input is flattened
///   first, NHWC order).
/// Token i's layers are named `l<i>.conv`, `l<i>.bn`, `l<i>.relu`,
/// `l<i>.pool`, `l<i>.gap`, `l<i>.flatten`, `l<i>.fc`; parameters
/// `l<i>.conv.weight`, `l<i>.bn.weight`, `l<i>.bn.bias`, `l<i>.fc.weight`,
/// `l<i>.fc.bias`, …; buffers `l<i>.bn.running_mean`, `l<i>.bn.running_var`.
///
/// Shapes: input B×H×W×C (NHWC); logits B×classes; taps NHWC, and
/// `tapShape` gives the per-sample [H, W, C].
/// Initialisation: `weightInit` (PyTorch's default U(±1/√fan_in) unless
/// told `.he`; batch norm γ = 1, β = 0); layer i draws from `RNG(seed: seed, stream: i)`, so the
/// same seed gives identical weights and editing one token leaves the other
/// layers' draws unchanged.
public final class Model {
    public typealias StateEntry = (name: String, shape: [Int], values: [Float])

    public let architecture: String
    /// Per-sample input shape [H, W, C].
    public let inputShape: [Int]
    public let batchNorm: Bool
    public let layers: [Layer]
    /// Per-sample output shape of each layer.
    public let layerShapes: [[Int]]
    /// Per-sample output shape of the model.
    public var outputShape: [Int] { layerShapes.last ?? inputShape }
    public let parameters: [Parameter]
    public let buffers: [Buffer]
    /// `stage1`, `stage2`, …: one per pooling token (the default paired layers).
    public let tapNames: [String]
    /// The name of the penultimate embedding's tap: the input of the last
    /// linear layer (the global-average-pool output in the default networks),
    /// B×C. Readable with `activation(tap:)`, `tapShape`, `tapGradient` and
    /// `backward(_:tapGradients:)` like a stage, but not among `tapNames`.
    public static let embeddingTap = "embedding"
    /// `tapNames`, then `embeddingTap` when the network ends in a linear layer.
    private let allTapNames: [String]
    /// Index in `layers` of the layer whose output is each tap (of `allTapNames`).
    private let tapLayers: [Int]
    /// Tap number whose output is layer i's output, or -1.
    private let tapOfLayer: [Int]
    /// Total dL/d(tap) of the last backward, one per tap.
    private var tapGrads: [Tensor]
    /// Layer i when it is a batch norm followed by a ReLU: in training mode
    /// the two run as one pass forward and one backward
    /// (`BatchNorm.forward(_:training:relu:)`), same results as separately,
    /// two memory passes fewer each way. (Evaluation keeps them apart: LRP
    /// reads the batch norm's output, the pre-activations.)
    private let fusedBatchNorm: [BatchNorm?]

    public init(architecture: String, inputShape: [Int], batchNorm: Bool = true, seed: UInt64,
                weightInit: WeightInit = .pytorch) throws {
        guard inputShape.count == 3, inputShape.allSatisfy({ $0 > 0 }) else {
            throw NNError("model input shape must be [H, W, C] with positive sizes, got \(inputShape)")
        }
        self.architecture = architecture
        self.inputShape = inputShape
        self.batchNorm = batchNorm
        let tokens = architecture.split(separator: ",", omittingEmptySubsequences: false)
            .map { String($0.filter { !$0.isWhitespace }) }
        guard !architecture.allSatisfy(\.isWhitespace) else {
            throw NNError("empty architecture string")
        }
        var layers: [Layer] = [], shapes: [[Int]] = [], tapLayers: [Int] = [], tapNames: [String] = []
        var shape = inputShape
        func add(_ layer: Layer, _ token: String) throws {
            do { shape = try layer.outputShape(for: shape) } catch let e as NNError {
                throw NNError("architecture token '\(token)': \(e.message)")
            }
            layers.append(layer)
            shapes.append(shape)
        }
        for (i, token) in tokens.enumerated() {
            var rng = RNG(seed: seed, stream: UInt64(i))
            let prefix = "l\(i)"
            switch try ArchitectureToken(parsing: token) {
            case let .conv(out, k, s):
                guard shape.count == 3 else {
                    throw NNError("architecture token '\(token)': a convolution needs a spatial input, got \(shape)")
                }
                try add(Conv2D(name: prefix + ".conv", inChannels: shape[2], outChannels: out, kernel: k,
                               stride: s, padding: (k - 1) / 2, bias: !batchNorm, weightInit: weightInit, rng: &rng), token)
                if batchNorm { try add(BatchNorm(name: prefix + ".bn", channels: out), token) }
                try add(ReLU(name: prefix + ".relu"), token)
            case .maxPool:
                try add(MaxPool2D(name: prefix + ".pool", kernel: 2, stride: 2), token)
                tapLayers.append(layers.count - 1)
                tapNames.append("stage\(tapNames.count + 1)")
            case .avgPool:
                try add(AvgPool2D(name: prefix + ".pool", kernel: 2, stride: 2), token)
                tapLayers.append(layers.count - 1)
                tapNames.append("stage\(tapNames.count + 1)")
            case .globalAvgPool:
                try add(GlobalAvgPool(name: prefix + ".gap"), token)
            case let .linear(out):
                if shape.count != 1 { try add(Flatten(name: prefix + ".flatten"), token) }
                try add(Linear(name: prefix + ".fc", inFeatures: shape[0], outFeatures: out, weightInit: weightInit,
                               rng: &rng), token)
            }
        }
        self.layers = layers
        self.layerShapes = shapes
        self.tapNames = tapNames
        var allTapNames = tapNames
        if let last = layers.lastIndex(where: { $0 is Linear }), last > 0, !tapLayers.contains(last - 1) {
            allTapNames.append(Self.embeddingTap)
            tapLayers.append(last - 1)
        }
        self.allTapNames = allTapNames
        self.tapLayers = tapLayers
        var tapOf = [Int](repeating: -1, count: layers.count)
        for (t, l) in tapLayers.enumerated() { tapOf[l] = t }
        self.tapOfLayer = tapOf
        self.tapGrads = tapLayers.map { _ in Tensor(shape: [0]) }
        self.fusedBatchNorm = layers.indices.map { i in
            i + 1 < layers.count && layers[i + 1] is ReLU ? layers[i] as? BatchNorm : nil
        }
        self.parameters = layers.flatMap(\.parameters)
        self.buffers = layers.flatMap(\.buffers)
        let names = parameters.map(\.name) + buffers.map(\.name)
        precondition(Set(names).count == names.count, "Model: duplicate state names")
    }

    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    public func zeroGrad() {
        for p in parameters { p.zeroGrad() }
    }

    private func tapIndex(_ name: String) -> Int {
        guard let t = allTapNames.firstIndex(of: name) else {
            preconditionFailure("Model: no tap '\(name)'; taps are \(allTapNames)")
        }
        return t
    }

    /// Index in `layers` of the layer whose output is tap `name` (nil for an
    /// unknown tap): the layers after it are the rest of the network.
    public func tapLayerIndex(_ name: String) -> Int? {
        allTapNames.firstIndex(of: name).map { tapLayers[$0] }
    }

    /// Whether `name` is a tap of this network (a stage or the embedding).
    public func hasTap(_ name: String) -> Bool { allTapNames.contains(name) }

    /// Per-sample shape [H, W, C] (NHWC) of a tap ([C] for the embedding).
    public func tapShape(_ name: String) -> [Int] { layerShapes[tapLayers[tapIndex(name)]] }

    // x: B×H×W×C → logits B×classes
    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank == 4 && Array(x.shape.dropFirst()) == inputShape,
                     "Model: expects B×\(inputShape.map(String.init).joined(separator: "×")) input, got \(x.shape)")
        var h = x
        var i = 0
        while i < layers.count {
            if training, let bn = fusedBatchNorm[i] {
                h = bn.forward(h, training: training, relu: (layers[i + 1] as! ReLU))
                i += 2
            } else {
                h = layers[i].forward(h, training: training)
                i += 1
            }
        }
        return h
    }

    /// Evaluation-mode forward that keeps nothing for a backward (no conv
    /// input copies, no batch-norm x̂): for a frozen teacher's outputs.
    /// Same logits as `forward(x, training: false)`; `activation(tap:)`
    /// works afterwards, `backward` does not (precondition).
    public func inference(_ x: Tensor) -> Tensor {
        let retaining = layers.compactMap { $0 as? RetainsBackwardState }
        for l in retaining { l.retainsBackwardState = false }
        defer { for l in retaining { l.retainsBackwardState = true } }
        return forward(x, training: false)
    }

    /// A tap's activation (B×H×W×C) from the last forward.
    public func activation(tap name: String) -> Tensor { layers[tapLayers[tapIndex(name)]].output }

    /// Back-propagates dL/dlogits (B×classes) through the last forward and
    /// ACCUMULATES parameter gradients. `tapGradients[name]` (B×H×W×C) is
    /// added to the gradient arriving at that tap from above, i.e. the loss
    /// is L_logits + Σ L_tap and the tap's total gradient flows on. Pass zero
    /// logits gradients to propagate tap gradients alone. Returns dL/dx
    /// (B×H×W×C) when `inputGradient`, else nil (and skips that product).
    @discardableResult
    public func backward(_ gradLogits: Tensor, tapGradients: [String: Tensor] = [:],
                         inputGradient: Bool = false) -> Tensor? {
        precondition(layers.last.map { gradLogits.shape == $0.output.shape } ?? true,
                     "Model: logits gradient shape \(gradLogits.shape) ≠ logits shape \(layers.last?.output.shape ?? [])")
        var injected = [Tensor?](repeating: nil, count: allTapNames.count)
        for (name, g) in tapGradients { injected[tapIndex(name)] = g }
        var g = gradLogits
        for i in stride(from: layers.count - 1, through: 0, by: -1) {
            let t = tapOfLayer[i]
            if t >= 0 {
                let shape = layers[i].output.shape
                tapGrads[t].reuse(shape: shape)
                if let extra = injected[t] {
                    precondition(extra.shape == shape,
                                 "Model: tap \(allTapNames[t]) gradient shape \(extra.shape) ≠ activation shape \(shape)")
                    tapGrads[t].data.withUnsafeMutableBufferPointer { dst in
                        g.data.withUnsafeBufferPointer { a in
                            extra.data.withUnsafeBufferPointer { b in
                                copy(dst.baseAddress!, a.baseAddress!, dst.count)
                                addInto(dst.baseAddress!, b.baseAddress!, dst.count)
                            }
                        }
                    }
                } else {
                    tapGrads[t].data.withUnsafeMutableBufferPointer { dst in
                        g.data.withUnsafeBufferPointer { dst.baseAddress!.update(from: $0.baseAddress!, count: dst.count) }
                    }
                }
                g = tapGrads[t]
            }
            // The ReLU of a fused pair passes dL/d(its output) to its batch norm.
            if i > 0, let bn = fusedBatchNorm[i - 1], bn.fusedWithReLU { continue }
            if i == 0 && !inputGradient {
                layers[0].backwardParameters(g)
                return nil
            }
            g = layers[i].backward(g)
        }
        return inputGradient ? g : nil
    }

    /// Total dL/d(tap) (B×H×W×C) of the last backward: what flowed in from
    /// above plus any injected gradient (∂f/∂a for subspace extraction).
    public func tapGradient(_ name: String) -> Tensor { tapGrads[tapIndex(name)] }

    /// Parameters then buffers, in layer order, as (name, shape, values).
    public var state: [StateEntry] {
        parameters.map { ($0.name, $0.shape, $0.value) } + buffers.map { ($0.name, $0.shape, $0.value) }
    }

    /// Restores `state` (every parameter and buffer exactly once, shapes
    /// equal); on any mismatch throws and changes nothing.
    public func setState(_ entries: [StateEntry]) throws {
        var byName: [String: StateEntry] = [:]
        for e in entries {
            guard byName[e.name] == nil else { throw NNError("state: duplicate entry '\(e.name)'") }
            guard e.shape.reduce(1, *) == e.values.count else {
                throw NNError("state: entry '\(e.name)' has shape \(e.shape) but \(e.values.count) values")
            }
            byName[e.name] = e
        }
        let expected = parameters.map { ($0.name, $0.shape) } + buffers.map { ($0.name, $0.shape) }
        for (name, shape) in expected {
            guard let e = byName[name] else { throw NNError("state: missing entry '\(name)'") }
            guard e.shape == shape else {
                throw NNError("state: entry '\(name)' has shape \(e.shape), model expects \(shape)")
            }
        }
        if byName.count != expected.count {
            let known = Set(expected.map(\.0))
            let extra = byName.keys.filter { !known.contains($0) }.sorted()
            throw NNError("state: unknown entries \(extra) for architecture '\(architecture)'")
        }
        for p in parameters { p.value = byName[p.name]!.values }
        for b in buffers { b.value = byName[b.name]!.values }
    }
}

/// One token of an architecture string.
enum ArchitectureToken: Equatable {
    case conv(out: Int, kernel: Int, stride: Int)
    case maxPool, avgPool, globalAvgPool
    case linear(out: Int)

    init(parsing token: String) throws {
        func bad(_ why: String) -> NNError {
            NNError("bad architecture token '\(token)': \(why) (expected c<N>[k<K>][s<S>], p, a, gap or fc<N>)")
        }
        switch token {
        case "": throw bad("empty token")
        case "p": self = .maxPool; return
        case "a": self = .avgPool; return
        case "gap": self = .globalAvgPool; return
        default: break
        }
        let chars = Array(token)
        var i = 0
        func number() throws -> Int {
            let start = i
            while i < chars.count, chars[i].isASCII, chars[i].isNumber { i += 1 }
            guard i > start, let n = Int(String(chars[start..<i])), n > 0, n <= 1_000_000 else {
                throw bad("missing or invalid number at position \(start + 1)")
            }
            return n
        }
        if token.hasPrefix("fc") {
            i = 2
            let n = try number()
            guard i == chars.count else { throw bad("unexpected '\(String(chars[i...]))'") }
            self = .linear(out: n)
        } else if token.hasPrefix("c") {
            i = 1
            let n = try number()
            var k: Int?, s: Int?
            while i < chars.count {
                let option = chars[i]
                i += 1
                switch option {
                case "k" where k == nil: k = try number()
                case "s" where s == nil: s = try number()
                default: throw bad("unexpected '\(option)' (a suffix may be k<K> or s<S>, each once)")
                }
            }
            self = .conv(out: n, kernel: k ?? 3, stride: s ?? 1)
        } else {
            throw bad("unknown layer")
        }
    }
}
