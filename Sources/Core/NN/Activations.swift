/// Rectified linear unit, y = max(x, 0), elementwise on any shape.
/// Backward: dx = dy · 1[y > 0] (the subgradient at 0 is taken as 0, as in
/// PyTorch).
public final class ReLU: Layer {
    public let name: String
    public private(set) var output = Tensor(shape: [0])
    private var gradInput = Tensor(shape: [0])

    public init(name: String = "relu") { self.name = name }

    public func outputShape(for inputShape: [Int]) throws -> [Int] { inputShape }

    // x: any → y: same shape
    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        output.reuse(shape: x.shape)
        let n = x.count
        x.data.withUnsafeBufferPointer { xp in
            output.data.withUnsafeMutableBufferPointer { y in
                reluForward(xp.baseAddress!, y.baseAddress!, n)
            }
        }
        return output
    }

    /// Lets a fused producer (batch norm) write this layer's output.
    func writeOutput(shape: [Int], _ body: (UnsafeMutablePointer<Float>) -> Void) {
        output.reuse(shape: shape)
        output.data.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }

    // dy: any → dx: same shape
    public func backward(_ gradOutput: Tensor) -> Tensor {
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        gradInput.reuse(shape: output.shape)
        let n = output.count
        gradOutput.data.withUnsafeBufferPointer { dy in
            output.data.withUnsafeBufferPointer { y in
                gradInput.data.withUnsafeMutableBufferPointer { dx in
                    reluBackward(y.baseAddress!, dy.baseAddress!, dx.baseAddress!, n)
                }
            }
        }
        return gradInput
    }
}

/// Flattens every sample: B×H×W×C → B×(H·W·C) in NHWC order, i.e. feature
/// index (h·W + w)·C + c (PyTorch's NCHW flatten orders c first).
public final class Flatten: Layer {
    public let name: String
    public private(set) var output = Tensor(shape: [0])
    private var inShape: [Int] = []

    public init(name: String = "flatten") { self.name = name }

    public func outputShape(for inputShape: [Int]) throws -> [Int] {
        guard !inputShape.isEmpty else { throw NNError("\(name): empty input shape") }
        return [inputShape.reduce(1, *)]
    }

    // x: B×… → y: B×F
    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank >= 1, "\(name): needs a batch axis")
        inShape = x.shape
        // A copy (not a view) so the layer below keeps sole ownership of its
        // output buffer; the tensors here are small (after pooling).
        output.reuse(shape: [x.shape[0], x.count / max(x.shape[0], 1)])
        output.data.withUnsafeMutableBufferPointer { y in
            x.data.withUnsafeBufferPointer { y.baseAddress!.update(from: $0.baseAddress!, count: x.count) }
        }
        return output
    }

    // dy: B×F → dx: B×…
    public func backward(_ gradOutput: Tensor) -> Tensor {
        precondition(gradOutput.count == inShape.reduce(1, *), "\(name): gradient size mismatch")
        return gradOutput.reshaped(inShape)
    }
}
