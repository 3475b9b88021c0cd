/// A contiguous float32 tensor with an explicit shape, row-major (C order).
///
/// Image activations are stored NHWC: a convolution over a batch is then one
/// GEMM of the (B·H·W)×(k·k·C) patch matrix with the (k·k·C)×C' weights,
/// whose output is already NHWC, and per-channel statistics (batch norm) are
/// column reductions. See README, "Tensor layout".
public struct Tensor: Equatable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], repeating value: Float = 0) {
        self.shape = shape
        self.data = [Float](repeating: value, count: shape.reduce(1, *))
    }

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count,
                     "Tensor: shape \(shape) needs \(shape.reduce(1, *)) values, got \(data.count)")
        self.shape = shape
        self.data = data
    }

    /// Number of elements.
    @inlinable public var count: Int { data.count }
    @inlinable public var rank: Int { shape.count }

    /// Reinterprets the same elements under another shape with equal count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, data: data)
    }
}

/// A trainable array: value, gradient of the loss with respect to it, and
/// the optimiser's state lives with the optimiser (keyed by `name`).
public final class Parameter {
    public let name: String
    public private(set) var shape: [Int]
    public var value: [Float]
    public var grad: [Float]
    /// Whether decoupled weight decay (AdamW) applies. Batch-norm scales and
    /// all biases are exempt, as in common PyTorch recipes.
    public var decays: Bool

    public init(name: String, shape: [Int], value: [Float], decays: Bool = true) {
        precondition(shape.reduce(1, *) == value.count, "Parameter \(name): shape/value mismatch")
        self.name = name
        self.shape = shape
        self.value = value
        self.grad = [Float](repeating: 0, count: value.count)
        self.decays = decays
    }

    @inlinable public var count: Int { value.count }

    public func zeroGrad() {
        grad.withUnsafeMutableBufferPointer { g in
            for i in g.indices { g[i] = 0 }
        }
    }
}

/// A named non-trainable array that belongs to a model's state (batch-norm
/// running mean and variance): saved and restored by checkpoints, never
/// touched by optimisers.
public final class Buffer {
    public let name: String
    public let shape: [Int]
    public var value: [Float]

    public init(name: String, shape: [Int], value: [Float]) {
        precondition(shape.reduce(1, *) == value.count, "Buffer \(name): shape/value mismatch")
        self.name = name
        self.shape = shape
        self.value = value
    }

    @inlinable public var count: Int { value.count }
}
