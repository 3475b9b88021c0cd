/// A contiguous float32 tensor with an explicit shape, row-major (C order).
///
/// Image activations are stored NHWC (B×H×W×C). Why: a convolution over a
/// batch is then a GEMM of the (B·H·W)×(k·k·C) patch matrix with the
/// (k·k·C)×C' weights whose output is already NHWC, so the batch folds
/// into the GEMM's long side; the im2col copies are contiguous runs of C
/// channels; per-channel statistics (batch norm) are column reductions.
/// In NCHW the batch cannot be folded without a transpose (the output must
/// stay CHW), so every image needs its own C'×(k·k·C)·(k·k·C)×(H·W) GEMM,
/// whose H·W side is only 64 on the teacher's last stage.
/// Measured (`bench-nn --only layout`: 3×3 conv forward, batch 64, 2 cores,
/// OpenBLAS Haswell kernels as pinned on these machines, best of 15
/// round-robin, three runs on a shared busy machine):
///   32→32 @32×32:  NHWC 18.5–21.8 ms (56–65 GFLOP/s) vs NCHW per image 22.7–31.7 ms (38–53 GFLOP/s);
///   128→128 @8×8:  NHWC 11.9–15.9 ms (76–101 GFLOP/s) vs NCHW per image 19.3–70.7 ms (17–62 GFLOP/s).
/// NHWC there is `Conv2D`'s default (patch matrix in 1 MiB blocks, batch
/// split between the cores). One whole-batch GEMM took 37–47 ms on the
/// first shape: its 75 MB patch matrix makes it memory-bound.
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
