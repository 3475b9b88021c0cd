import COpenBLAS
import NN
import TensorIO

/// A distillation term L_l(t_l, s_l) on one paired layer (docs/methods.md,
/// "Methods"), with its own learned parts (regressors, rotations) and state
/// (running statistics, orthogonal bases).
///
/// Maps are NHWC: the student map `s` is B×H×W×k (B×k for the embedding).
/// The teacher side arrives as the loss caches it: the teacher map, pooled to
/// the student's H×W unless the method says otherwise (as in the authors'
/// `LayerPolicy.align_spatial_dimensions`), then put through
/// `teacherTransform` (identity for most; a projection, an attention map or
/// a summary for the others). The student map is never resized.
public protocol LayerLoss: AnyObject {
    /// Trainable parameters owned by the loss; `forwardBackward` ACCUMULATES into their `grad`.
    var parameters: [Parameter] { get }
    /// Named non-trainable state (name, shape, values) for checkpoints.
    var stateBuffers: [(String, [Int], [Float])] { get }
    /// Restores `stateBuffers`; throws on missing names or wrong shapes.
    func loadStateBuffers(_ buffers: [(String, [Int], [Float])]) throws
    /// Values derived from the state that the student artifact records for a
    /// reader (`method/<pair>.<name>`): VID's variances, SubDistill's Q, VkD's P.
    var exportedValues: [(String, [Int], [Float])] { get }
    /// The fixed teacher side: raw teacher map → what `forwardBackward` reads.
    var teacherTransform: any TeacherTransform { get }
    /// Checks the cached teacher side's and the student map's shapes once,
    /// with a readable error (batch included: B×…).
    func validate(cachedTeacherShape: [Int], studentShape: [Int]) throws
    /// Loss value and, if `computeGradient`, ∂L/∂s (same shape as `s`);
    /// parameter gradients are accumulated when `computeGradient` is true.
    /// `training` selects batch statistics (and updates running ones) where
    /// the loss has any.
    func forwardBackward(cachedTeacher t: Tensor, student s: Tensor, training: Bool,
                         computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?)
}

extension LayerLoss {
    public var stateBuffers: [(String, [Int], [Float])] { [] }
    public func loadStateBuffers(_ buffers: [(String, [Int], [Float])]) throws {
        guard buffers.isEmpty else {
            throw LayerLossError("\(type(of: self)) has no state buffers, got \(buffers.map { $0.0 })")
        }
    }
    public var exportedValues: [(String, [Int], [Float])] { [] }
    public var teacherTransform: any TeacherTransform { IdentityTransform() }

    /// The loss on a raw (pooled) teacher map: its teacher side computed on the fly.
    // t: B×H×W×d, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    public func forwardBackward(teacher t: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        forwardBackward(cachedTeacher: teacherTransform(t), student: s, training: training,
                        computeGradient: computeGradient)
    }

    /// `validate(cachedTeacherShape:studentShape:)` for a raw teacher map (B×H×W×d).
    public func validate(teacherShape: [Int], studentShape: [Int]) throws {
        guard teacherShape.count >= 2 else {
            throw LayerLossError("teacher map must have a batch axis, got \(teacherShape)")
        }
        let item = Array(teacherShape.dropFirst())
        try validate(cachedTeacherShape: [teacherShape[0]] + teacherTransform.outputShape(item), studentShape: studentShape)
    }
}

/// A readable error for bad loss configuration or checkpoint state.
public struct LayerLossError: MessageError {
    public var message: String
    /// The exit status it causes: an internal failure (`FailureKind`).
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .failure) { self.message = message; self.kind = kind }
}

/// Shared shape check: rank-4 NHWC maps with equal batch (and, if `sameSpatial`,
/// equal H×W) and the channel counts the loss was built for.
func checkMaps(_ what: String, teacher t: [Int], student s: [Int], d: Int, k: Int,
               sameSpatial: Bool = true) throws {
    guard t.count == 4, s.count == 4 else {
        throw LayerLossError("\(what): maps must be NHWC rank 4, got teacher \(t) student \(s)")
    }
    guard t[0] == s[0], t[0] > 0 else {
        throw LayerLossError("\(what): batch sizes differ or are zero: teacher \(t) student \(s)")
    }
    if sameSpatial && (t[1] != s[1] || t[2] != s[2]) {
        throw LayerLossError("\(what): teacher map \(t) is not at the student's spatial size \(s); pool it with adaptiveAvgPoolNHWC")
    }
    guard t[3] == d, s[3] == k else {
        throw LayerLossError("\(what): built for teacher d=\(d), student k=\(k) channels, got teacher \(t) student \(s)")
    }
}

/// Adaptive average pooling of an NHWC map to toH×toW with PyTorch's bin rule:
/// output row i averages input rows ⌊i·H/toH⌋ ..< ⌈(i+1)·H/toH⌉ (same for columns).
/// Used once per paired layer to bring the teacher map to the student's size;
/// no backward (the teacher is frozen), so NN's `AdaptiveAvgPool2D` forward
/// serves. Shapes: B×H×W×C → B×toH×toW×C.
public func adaptiveAvgPoolNHWC(_ t: Tensor, toH: Int, toW: Int) -> Tensor {
    precondition(t.rank == 4, "adaptiveAvgPoolNHWC: expected an NHWC rank-4 tensor, got \(t.shape)")
    if t.shape[1] == toH && t.shape[2] == toW { return t }
    return AdaptiveAvgPool2D(outHeight: toH, outWidth: toW).forward(t, training: false)
}

/// Dead-channel counter: the number of channels of an NHWC map (B×H×W×k)
/// whose activation is zero (|x| ≤ `threshold`, default 1e-8) at every
/// position of every image of the batch. Logged per paired layer because the
/// SubDistill scale trap (docs/methods.md, "SubDistill layer loss") shows up as dead student channels.
public func deadChannelCount(_ s: Tensor, threshold: Float = 1e-8) -> Int {
    var meter = DeadChannelMeter(channels: s.shape.last ?? 0)
    meter.observe(s, threshold: threshold)
    return meter.deadCount
}

/// Dead-channel counter accumulated over several batches (e.g. an epoch):
/// a channel is dead if it was zero everywhere in every observed map.
public struct DeadChannelMeter {
    public let channels: Int
    /// alive[c] is true once channel c was seen non-zero.
    public private(set) var alive: [Bool]
    public private(set) var observed = false
    private var aliveCount = 0

    public init(channels: Int) {
        self.channels = channels
        alive = [Bool](repeating: false, count: channels)
    }

    /// Records one B×H×W×k map. Once every channel has been seen alive the
    /// map is not scanned any more (the common case during training).
    public mutating func observe(_ s: Tensor, threshold: Float = 1e-8) {
        precondition(s.shape.last == channels, "DeadChannelMeter: map \(s.shape) has not \(channels) channels")
        observed = true
        if aliveCount == channels { return }
        let rows = channels == 0 ? 0 : s.count / channels
        let k = channels
        var count = aliveCount
        s.data.withUnsafeBufferPointer { p in
            alive.withUnsafeMutableBufferPointer { a in
                for r in 0..<rows {
                    let o = r * k
                    for c in 0..<k where !a[c] && abs(p[o + c]) > threshold { a[c] = true; count += 1 }
                    if count == k { break }
                }
            }
        }
        aliveCount = count
    }

    /// Channels never seen non-zero (0 before any observation).
    public var deadCount: Int { observed ? alive.lazy.filter { !$0 }.count : 0 }
}

// MARK: - Internal helpers

/// Fixed chunks of the B·H·W pixel rows of a per-pixel loss (VID, FitNet),
/// for `FixedChunks.forEach`. The chunk size comes from the channel count
/// alone, so the chunking, and with it every rounding, is the same for any
/// thread count.
struct RowChunks {
    let rows: Int, chunkRows: Int, count: Int

    /// About 32 K outputs of d channels per chunk: 8 chunks for a 32-image
    /// batch of 16×16×32 maps, and more than a fork-join's cost each.
    static func defaultChunkRows(d: Int) -> Int { max(64, 32768 / max(d, 1)) }

    init(rows: Int, chunkRows: Int) {
        self.rows = rows
        self.chunkRows = max(1, chunkRows)
        count = max(1, (rows + self.chunkRows - 1) / self.chunkRows)
    }

    /// First row and row count of chunk c.
    @inline(__always)
    func range(_ c: Int) -> (start: Int, count: Int) {
        let start = c * chunkRows
        return (start, max(0, min(rows, start + chunkRows) - start))
    }
}

/// into[c] = Σ_rows x[row, c] for a rows×columns row-major block.
@inline(__always)
func columnSums(_ x: UnsafePointer<Float>, rows: Int, columns: Int, into: UnsafeMutablePointer<Float>) {
    for c in 0..<columns { into[c] = 0 }
    for i in 0..<rows {
        let o = x + i * columns
        for c in 0..<columns { into[c] += o[c] }
    }
}

/// x ← max(x, 0), 16 lanes at a time.
@inline(__always)
func reluInPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
    let full = n / 16 * 16
    for i in stride(from: 0, to: full, by: 16) {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(x + i).storeBytes(of: v.replacing(with: 0, where: v .< 0), as: SIMD16<Float>.self)
    }
    for i in full..<n where x[i] < 0 { x[i] = 0 }
}

/// g ← g where h > 0, else 0 (the ReLU backward given its output h), 16 lanes at a time.
@inline(__always)
func reluMaskInPlace(_ g: UnsafeMutablePointer<Float>, by h: UnsafePointer<Float>, _ n: Int) {
    let full = n / 16 * 16
    for i in stride(from: 0, to: full, by: 16) {
        let v = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD16<Float>.self)
        let hv = UnsafeRawPointer(h + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(g + i).storeBytes(of: v.replacing(with: 0, where: hv .<= 0), as: SIMD16<Float>.self)
    }
    for i in full..<n where h[i] <= 0 { g[i] = 0 }
}

/// dst += src over n values (a parameter gradient += one chunk's part).
@inline(__always)
func addInto(_ dst: Parameter, _ src: UnsafePointer<Float>, _ n: Int) {
    dst.grad.withUnsafeMutableBufferPointer { g in
        for i in 0..<n { g[i] += src[i] }
    }
}


/// Row-major SGEMM: C = α·op(A)·op(B) + β·C with op(A) m×kk, op(B) kk×n.
@inline(__always)
func sgemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ kk: Int, _ alpha: Float,
           _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
           _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(kk), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// A reusable Float workspace that grows to the largest size asked for.
final class Workspace {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init() {
        capacity = 1
        pointer = .allocate(capacity: 1)
    }

    deinit { pointer.deallocate() }

    /// A pointer to at least `count` Floats (contents unspecified).
    func get(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = .allocate(capacity: count)
        }
        return pointer
    }
}

/// Checks that a checkpoint's buffers match the expected names and shapes
/// (order-insensitive) and returns the values by name.
func matchBuffers(_ what: String, _ given: [(String, [Int], [Float])],
                  expected: [(String, [Int])]) throws -> [String: [Float]] {
    var byName: [String: ([Int], [Float])] = [:]
    for (name, shape, values) in given { byName[name] = (shape, values) }
    guard byName.count == expected.count, given.count == expected.count else {
        throw LayerLossError("\(what): expected state buffers \(expected.map { $0.0 }), got \(given.map { $0.0 })")
    }
    var out: [String: [Float]] = [:]
    for (name, shape) in expected {
        guard let entry = byName[name] else {
            throw LayerLossError("\(what): missing state buffer `\(name)`")
        }
        let (s, v) = entry
        guard s == shape, v.count == shape.reduce(1, *) else {
            throw LayerLossError("\(what): state buffer `\(name)` has shape \(s), expected \(shape)")
        }
        out[name] = v
    }
    return out
}

/// PyTorch's default init for a 1×1 convolution / linear layer:
/// kaiming_uniform(a = √5) gives U(−1/√fan_in, 1/√fan_in).
func uniformInit(count: Int, fanIn: Int, rng: inout RNG) -> [Float] {
    let bound = 1 / Float(fanIn).squareRoot()
    return (0..<count).map { _ in Float(rng.uniform(-Double(bound), Double(bound))) }
}
