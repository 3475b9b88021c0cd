import COpenBLAS
import TensorIO

/// A network layer: forward and backward over a batch, parameters and named
/// non-trainable buffers.
///
/// Shapes: the first axis of every activation is the batch. Image
/// activations are NHWC (B×H×W×C); flat ones are B×F. `outputShape(for:)`
/// works on per-sample shapes (without the batch axis).
///
/// Contract of the workspaces (why layers never keep their input): each
/// layer writes its output and its input gradient into tensors it owns and
/// reuses from step to step, and keeps what its backward needs (im2col
/// patches, normalised values, argmax indices) in its own workspaces. It
/// never retains the caller's input tensor, so after a step every workspace
/// is uniquely referenced again and the next step writes in place without a
/// copy-on-write allocation. A caller that keeps a returned tensor across
/// steps still gets value semantics (the next write copies).
public protocol Layer: AnyObject {
    /// Prefix of parameter and buffer names, e.g. `l0.conv`.
    var name: String { get }
    /// Trainable arrays, gradients ACCUMULATE in `Parameter.grad`.
    var parameters: [Parameter] { get }
    /// Named non-trainable state (batch-norm running statistics) that a
    /// checkpoint must save.
    var buffers: [Buffer] { get }
    /// Per-sample output shape for a per-sample input shape (no batch axis);
    /// throws when the input does not fit the layer.
    func outputShape(for inputShape: [Int]) throws -> [Int]
    /// y = f(x). `training` selects batch statistics (batch norm).
    func forward(_ x: Tensor, training: Bool) -> Tensor
    /// Returns dL/dx for dL/dy of the LAST forward and adds dL/dθ into every
    /// parameter's `grad`.
    func backward(_ gradOutput: Tensor) -> Tensor
    /// Like `backward` but without dL/dx (the first layer of a network
    /// during training): only parameter gradients accumulate.
    func backwardParameters(_ gradOutput: Tensor)
    /// The output of the last forward (owned by the layer; valid until the
    /// next forward).
    var output: Tensor { get }
}

extension Layer {
    public var parameters: [Parameter] { [] }
    public var buffers: [Buffer] { [] }
    public func backwardParameters(_ gradOutput: Tensor) { _ = backward(gradOutput) }
    /// Forward in evaluation mode.
    public func callAsFunction(_ x: Tensor) -> Tensor { forward(x, training: false) }
    public func callAsFunction(_ x: Tensor, training: Bool) -> Tensor { forward(x, training: training) }
}

/// Layers whose forward keeps state only a backward needs (conv input
/// copies, batch-norm x̂). `Model.inference` turns it off for one
/// evaluation-mode forward; a backward after such a forward is a
/// programming error (precondition).
protocol RetainsBackwardState: AnyObject {
    var retainsBackwardState: Bool { get set }
}

/// An error in a model description or a layer configuration.
public struct NNError: MessageError, Equatable {
    public var message: String
    /// The exit status it causes: bad input data unless it says otherwise (`FailureKind`).
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .data) { self.message = message; self.kind = kind }
}

// MARK: - Workspace helpers

extension Tensor {
    /// Gives the tensor `newShape`, reusing the existing allocation whenever
    /// its capacity suffices (so alternating batch sizes do not reallocate).
    /// Contents are unspecified afterwards.
    @inlinable
    mutating func reuse(shape newShape: [Int]) {
        let n = newShape.reduce(1, *)
        if shape != newShape { shape = newShape }
        if data.count > n {
            data.removeLast(data.count - n)
        } else if data.count < n {
            data.append(contentsOf: repeatElement(0, count: n - data.count))
        }
    }
}

/// A grow-only scratch array of `T` owned by one layer (im2col patches,
/// argmax indices): allocated on first use, reused while sizes repeat.
public final class Workspace<T> {
    private(set) var pointer: UnsafeMutablePointer<T>
    private(set) var capacity: Int
    private(set) var count: Int = 0

    public init() {
        pointer = UnsafeMutablePointer<T>.allocate(capacity: 1)
        capacity = 1
    }

    deinit { pointer.deallocate() }

    /// Makes room for `n` elements (contents unspecified after growth).
    @discardableResult
    func reserve(_ n: Int) -> UnsafeMutableBufferPointer<T> {
        if n > capacity {
            pointer.deallocate()
            pointer = UnsafeMutablePointer<T>.allocate(capacity: n)
            capacity = n
        }
        count = n
        return UnsafeMutableBufferPointer(start: pointer, count: n)
    }

    var buffer: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: pointer, count: count) }
}

// MARK: - Initialisation

/// How convolutions and linear layers start (docs/methods.md, "Initialisation").
public enum WeightInit: String, CaseIterable, Sendable {
    /// PyTorch's default (`kaiming_uniform_(a = √5)` for the weight, the same
    /// bound for the bias): w, b ~ U(−1/√fan_in, 1/√fan_in). What
    /// PyTorch-based distillation code inherits, so results line up with that
    /// literature.
    case pytorch
    /// He/Kaiming normal (He et al. 2015, fan-in mode, ReLU gain):
    /// w ~ N(0, 2/fan_in), bias 0; about 2.45× PyTorch's scale.
    case he

    /// Weight values (count of them) for a layer of `fanIn` inputs per output.
    func weights(count: Int, fanIn: Int, rng: inout RNG) -> [Float] {
        switch self {
        case .pytorch: return uniformFanIn(count: count, fanIn: fanIn, rng: &rng)
        case .he: return heNormal(count: count, fanIn: fanIn, rng: &rng)
        }
    }

    /// Bias values, drawn after the weights.
    func bias(count: Int, fanIn: Int, rng: inout RNG) -> [Float] {
        switch self {
        case .pytorch: return uniformFanIn(count: count, fanIn: fanIn, rng: &rng)
        case .he: return [Float](repeating: 0, count: count)
        }
    }
}

/// U(−1/√fan_in, 1/√fan_in).
func uniformFanIn(count: Int, fanIn: Int, rng: inout RNG) -> [Float] {
    let bound = 1 / Double(max(fanIn, 1)).squareRoot()
    var w = [Float](repeating: 0, count: count)
    w.withUnsafeMutableBufferPointer { p in
        for i in 0..<count { p[i] = Float(rng.uniform(-bound, bound)) }
    }
    return w
}

/// He/Kaiming normal initialisation: w ~ N(0, 2 / fan_in).
func heNormal(count: Int, fanIn: Int, rng: inout RNG) -> [Float] {
    let std = (2.0 / Double(max(fanIn, 1))).squareRoot()
    var w = [Float](repeating: 0, count: count)
    w.withUnsafeMutableBufferPointer { p in
        for i in 0..<count { p[i] = Float(rng.normal() * std) }
    }
    return w
}

// MARK: - Small kernels shared by layers

/// C = alpha·op(A)·op(B) + beta·C for row-major float matrices.
/// OpenBLAS runs single-threaded (`ComputeThreads`); its bits depend on
/// the call's m, n, k, so callers take these from fixed shape-based chunks.
@inline(__always)
func sgemm(_ transA: Bool, _ transB: Bool, m: Int, n: Int, k: Int,
           alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
           b: UnsafePointer<Float>, ldb: Int,
           beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Column sums of a rows×cols row-major matrix added into `out` (bias
/// gradients), accumulated in Double (see `channelSum`).
func addColumnSums(_ m: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>) {
    let acc = UnsafeMutablePointer<Double>.allocate(capacity: cols)
    defer { acc.deallocate() }
    channelSum(m, count: rows * cols, tiling: ChannelTiling(channels: cols), sumA: acc)
    for c in 0..<cols { out[c] += Float(acc[c]) }
}
