import NN

/// `fitnet` and `fitnet-noact` (Romero et al. 2015, single-stage as in Ahn et
/// al. 2019): a 1×1 regressor from the student map to the teacher map, then
/// (for `fitnet`) a ReLU, fitted by mean squared error. `fitnet` is the form
/// the SubDistill authors run on CNN teachers (`fitnet-relu` in their lambda
/// table, `tests/cross-check-lambda-layers.py`); `fitnet-noact` is their form
/// for NFNet/ViT teachers. docs/methods.md, "fitnet, fitnet-noact".
public struct FitNet: DistillationMethod {
    /// ReLU after the regressor.
    public let relu: Bool
    public init(relu: Bool) { self.relu = relu }
    public var name: String { relu ? "fitnet" : "fitnet-noact" }
    public var summary: String {
        relu ? "1x1 regressor + ReLU to the teacher map, MSE (Romero et al. 2015; SubDistill authors' fitnet-relu)"
             : "1x1 regressor to the teacher map, MSE, no activation (Romero et al. 2015)"
    }
    public var defaults: MethodDefaults { MethodDefaults(lambdaLayer: 100) }
    public func makeLayerLoss(_ p: PairContext, config: DistillConfig, rng: inout RNG) throws -> LayerLoss {
        FitNetLoss(name: p.label, teacherChannels: p.teacherChannels, studentChannels: p.studentChannels,
                   relu: relu, rng: &rng)
    }
}

/// The FitNet layer term:
///
///     r(s) = s·W + b                         (1×1 conv k→d with bias; a GEMM over B·H·W rows)
///     L    = (1/B) Σ_b Σ_c mean_hw (r(s) − t)²  =  Σ (r − t)² / (B·H·W)
///
/// With `relu: true` (`fitnet`) the regressor is followed by a ReLU,
/// r = max(s·W + b, 0); without (`fitnet-noact`), r = s·W + b.
///
/// Weight layout: W is k×d row-major (input-major), so r = s·W needs no transpose.
/// Init: PyTorch's Conv2d default, U(±1/√k) for W and b.
public final class FitNetLoss: LayerLoss {
    public let teacherChannels: Int
    public let studentChannels: Int
    public let relu: Bool
    /// W, k×d.
    public let weight: Parameter
    /// b, d.
    public let bias: Parameter
    private let ws = Workspace()

    public init(name: String, teacherChannels d: Int, studentChannels k: Int, relu: Bool = false,
                rng: inout RNG) {
        precondition(d > 0 && k > 0, "FitNetLoss: channel counts must be positive")
        teacherChannels = d
        studentChannels = k
        self.relu = relu
        weight = Parameter(name: "\(name).regressor.weight", shape: [k, d],
                           value: uniformInit(count: k * d, fanIn: k, rng: &rng))
        bias = Parameter(name: "\(name).regressor.bias", shape: [d],
                         value: uniformInit(count: d, fanIn: k, rng: &rng), decays: false)
        chunkRows = RowChunks.defaultChunkRows(d: d)
    }

    public var parameters: [Parameter] { [weight, bias] }

    public func validate(cachedTeacherShape teacherShape: [Int], studentShape: [Int]) throws {
        try checkMaps("fitnet", teacher: teacherShape, student: studentShape, d: teacherChannels, k: studentChannels)
    }

    /// Pixel rows per parallel chunk; fixed by d alone (see `VIDLoss.chunkRows`).
    public var chunkRows: Int

    // t: B×H×W×d, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    //
    // Rows are independent: each chunk runs forward, loss and backward alone;
    // the loss, ∂L/∂W and ∂L/∂b are reduced in chunk order after the join.
    public func forwardBackward(cachedTeacher t: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        let d = teacherChannels, k = studentChannels
        precondition(t.rank == 4 && s.rank == 4 && t.shape[3] == d && s.shape[3] == k
                     && Array(t.shape[0..<3]) == Array(s.shape[0..<3]),
                     "FitNetLoss: shapes teacher \(t.shape) student \(s.shape) do not fit d=\(d) k=\(k)")
        let rows = s.count / k
        let split = RowChunks(rows: rows, chunkRows: chunkRows)
        let partCount = k * d + d                               // ∂W, ∂b of one chunk
        let buf = ws.get(rows * d + (computeGradient ? split.count * partCount : 0))
        let r = buf, parts = buf + rows * d                     // r, then ∂L/∂r
        var sums = [Double](repeating: 0, count: split.count)
        // L = Σ (r − t)² / rows; ∂L/∂r = 2 (r − t) / rows (masked by the ReLU).
        let scale = 2 / Float(rows), relu = self.relu
        var gs = [Float](repeating: 0, count: computeGradient ? rows * k : 0)
        s.data.withUnsafeBufferPointer { sBuf in
        t.data.withUnsafeBufferPointer { tBuf in
        weight.value.withUnsafeBufferPointer { wBuf in
        bias.value.withUnsafeBufferPointer { bBuf in
        gs.withUnsafeMutableBufferPointer { gsBuf in
        sums.withUnsafeMutableBufferPointer { sumBuf in
            let sp = sBuf.baseAddress!, tp = tBuf.baseAddress!, W = wBuf.baseAddress!, b = bBuf.baseAddress!
            FixedChunks.forEach(split.count) { chunk, _ in
                let (r0, n) = split.range(chunk)
                let x = sp + r0 * k, rc = r + r0 * d
                // Forward: r = 1·bᵀ + s·W.
                for i in 0..<n { (rc + i * d).update(from: b, count: d) }
                sgemm(false, false, n, d, k, 1, x, k, W, d, 1, rc, d)
                sumBuf[chunk] = Self.residuals(rc, tp + r0 * d, count: n * d, scale: scale, relu: relu)
                guard computeGradient else { return }
                // ∂L/∂W = sᵀ·∂L/∂r, ∂L/∂b = Σ_rows ∂L/∂r, ∂L/∂s = ∂L/∂r·Wᵀ.
                let dW = parts + chunk * partCount, db = dW + k * d
                sgemm(true, false, k, d, n, 1, x, k, rc, d, 0, dW, d)
                columnSums(rc, rows: n, columns: d, into: db)
                sgemm(false, true, n, k, d, 1, rc, d, W, d, 0, gsBuf.baseAddress! + r0 * k, k)
            }
        }}}}}}
        let loss = Float(sums.reduce(0, +) / Double(rows))
        guard computeGradient else { return (loss, nil) }
        for chunk in 0..<split.count {
            let part = parts + chunk * partCount
            addInto(weight, part, k * d)
            addInto(bias, part + k * d, d)
        }
        return (loss, Tensor(shape: s.shape, data: gs))
    }

    /// r ← ∂L/∂r = scale·(ReLU?(r) − t), masked where the ReLU cut;
    /// returns Σ (ReLU?(r) − t)². 16 lanes at a time.
    @inline(__always)
    static func residuals(_ r: UnsafeMutablePointer<Float>, _ t: UnsafePointer<Float>, count n: Int,
                          scale: Float, relu: Bool) -> Double {
        let full = n / 16 * 16
        var acc = SIMD16<Float>()
        for i in stride(from: 0, to: full, by: 16) {
            var v = UnsafeRawPointer(r + i).loadUnaligned(as: SIMD16<Float>.self)
            let cut = v .<= 0
            if relu { v.replace(with: 0, where: cut) }
            let diff = v - UnsafeRawPointer(t + i).loadUnaligned(as: SIMD16<Float>.self)
            acc += diff * diff
            var g = scale * diff
            if relu { g.replace(with: 0, where: cut) }
            UnsafeMutableRawPointer(r + i).storeBytes(of: g, as: SIMD16<Float>.self)
        }
        var sum = Double(acc.sum())
        for i in full..<n {
            let cut = relu && r[i] <= 0
            let diff = (cut ? 0 : r[i]) - t[i]
            sum += Double(diff * diff)
            r[i] = cut ? 0 : scale * diff
        }
        return sum
    }
}
