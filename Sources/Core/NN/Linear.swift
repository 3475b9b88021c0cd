/// Fully connected layer: y = x·W + b.
///
/// y[b,o] = bias[o] + Σ_i x[b,i]·W[i,o]; backward: dW += xᵀ·dy,
/// db += Σ_b dy, dx = dy·Wᵀ (three GEMMs).
/// Weight layout is [in, out] (fan-in first, like the conv's HWIO; PyTorch
/// stores [out, in]). He-normal init (fan-in), bias zero.
public final class Linear: Layer {
    public let name: String
    public let inFeatures: Int
    public let outFeatures: Int
    /// [in, out].
    public let weight: Parameter
    /// [out], nil without bias.
    public let bias: Parameter?

    public private(set) var output = Tensor(shape: [0])
    private var gradInput = Tensor(shape: [0])
    /// Copy of the last input, for dW.
    private var input = Tensor(shape: [0])

    public init(name: String, inFeatures: Int, outFeatures: Int, bias: Bool = true, weightInit: WeightInit = .pytorch,
                rng: inout RNG) {
        precondition(inFeatures > 0 && outFeatures > 0, "Linear \(name): sizes must be positive")
        self.name = name
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = Parameter(name: name + ".weight", shape: [inFeatures, outFeatures],
                           value: weightInit.weights(count: inFeatures * outFeatures, fanIn: inFeatures, rng: &rng))
        self.bias = bias ? Parameter(name: name + ".bias", shape: [outFeatures],
                                     value: weightInit.bias(count: outFeatures, fanIn: inFeatures, rng: &rng), decays: false) : nil
    }

    public var parameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

    public func outputShape(for s: [Int]) throws -> [Int] {
        guard s.count == 1, s[0] == inFeatures else {
            throw NNError("\(name): expects \(inFeatures) input features, got shape \(s)")
        }
        return [outFeatures]
    }

    // x: B×in → y: B×out
    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank == 2 && x.shape[1] == inFeatures,
                     "\(name): expects B×\(inFeatures), got \(x.shape)")
        let b = x.shape[0], n = outFeatures, k = inFeatures
        input.reuse(shape: x.shape)
        input.data.withUnsafeMutableBufferPointer { dst in
            x.data.withUnsafeBufferPointer { dst.baseAddress!.update(from: $0.baseAddress!, count: b * k) }
        }
        output.reuse(shape: [b, n])
        let wv = weight.value
        output.data.withUnsafeMutableBufferPointer { y in
            let yp = y.baseAddress!
            var beta: Float = 0
            if let bias {
                bias.value.withUnsafeBufferPointer { bv in
                    for r in 0..<b { (yp + r * n).update(from: bv.baseAddress!, count: n) }
                }
                beta = 1
            }
            x.data.withUnsafeBufferPointer { xp in
                wv.withUnsafeBufferPointer { wp in
                    sgemm(false, false, m: b, n: n, k: k, a: xp.baseAddress!, lda: k,
                          b: wp.baseAddress!, ldb: n, beta: beta, c: yp, ldc: n)
                }
            }
        }
        return output
    }

    // dy: B×out → dx: B×in; dW, db accumulate
    public func backward(_ gradOutput: Tensor) -> Tensor {
        accumulateParameterGradients(gradOutput)
        let b = output.shape[0], n = outFeatures, k = inFeatures
        gradInput.reuse(shape: [b, k])
        let wv = weight.value
        gradOutput.data.withUnsafeBufferPointer { dy in
            wv.withUnsafeBufferPointer { wp in
                gradInput.data.withUnsafeMutableBufferPointer { dx in
                    sgemm(false, true, m: b, n: k, k: n, a: dy.baseAddress!, lda: n,
                          b: wp.baseAddress!, ldb: n, beta: 0, c: dx.baseAddress!, ldc: k)
                }
            }
        }
        return gradInput
    }

    public func backwardParameters(_ gradOutput: Tensor) {
        accumulateParameterGradients(gradOutput)
    }

    private func accumulateParameterGradients(_ gradOutput: Tensor) {
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        let b = output.shape[0], n = outFeatures, k = inFeatures
        gradOutput.data.withUnsafeBufferPointer { dy in
            input.data.withUnsafeBufferPointer { xp in
                weight.grad.withUnsafeMutableBufferPointer { dw in
                    sgemm(true, false, m: k, n: n, k: b, a: xp.baseAddress!, lda: k,
                          b: dy.baseAddress!, ldb: n, beta: 1, c: dw.baseAddress!, ldc: n)
                }
            }
            if let bias {
                bias.grad.withUnsafeMutableBufferPointer { db in
                    addColumnSums(dy.baseAddress!, rows: b, cols: n, into: db.baseAddress!)
                }
            }
        }
    }
}
