import NN
import StageKit

/// Per-image arrays stored back to back: N items of `itemShape` each.
public struct CachedRows: Equatable {
    /// Shape of one item (e.g. [H, W, C] or [C]).
    public let itemShape: [Int]
    public private(set) var data: [Float]
    public var itemSize: Int { itemShape.reduce(1, *) }
    public var count: Int { itemSize == 0 ? 0 : data.count / itemSize }

    public init(itemShape: [Int], data: [Float]) {
        precondition(itemShape.reduce(1, *) > 0 && data.count % itemShape.reduce(1, *) == 0,
                     "CachedRows: \(data.count) values do not split into items of shape \(itemShape)")
        self.itemShape = itemShape
        self.data = data
    }

    public init(itemShape: [Int], count: Int) {
        self.init(itemShape: itemShape, data: [Float](repeating: 0, count: count * itemShape.reduce(1, *)))
    }

    /// Copies items `indices` into `batch` (B × itemShape), reusing its storage.
    public func gather<C: Collection>(_ indices: C, into batch: inout Tensor) where C.Element == Int {
        let n = itemSize, b = indices.count
        let shape = [b] + itemShape
        if batch.shape != shape { batch = Tensor(shape: shape) }
        data.withUnsafeBufferPointer { src in
            batch.data.withUnsafeMutableBufferPointer { dst in
                for (j, i) in indices.enumerated() {
                    (dst.baseAddress! + j * n).update(from: src.baseAddress! + i * n, count: n)
                }
            }
        }
    }

    /// Writes a B × itemShape tensor at items start..<start+B.
    mutating func store(_ t: Tensor, at start: Int) {
        let n = itemSize
        precondition(Array(t.shape.dropFirst()) == itemShape, "CachedRows: storing \(t.shape) into items of \(itemShape)")
        t.data.withUnsafeBufferPointer { src in
            data.withUnsafeMutableBufferPointer { dst in
                (dst.baseAddress! + start * n).update(from: src.baseAddress!, count: t.count)
            }
        }
    }
}

/// What the training loop needs from a teacher map of one paired layer.
public struct TeacherMapRequest {
    /// The teacher's tap (`stage1`, …, or `Model.embeddingTap`).
    public var tap: String
    /// Pool to this H×W (the student's) with `adaptiveAvgPoolNHWC`; nil keeps
    /// the map as it is.
    public var poolTo: (h: Int, w: Int)?
    /// The method's fixed teacher side, applied after pooling.
    public var transform: any TeacherTransform

    public init(tap: String, poolTo: (h: Int, w: Int)?, transform: any TeacherTransform = IdentityTransform()) {
        self.tap = tap
        self.poolTo = poolTo
        self.transform = transform
    }
}

/// The frozen teacher's outputs on the distillation training split, computed
/// ONCE before training (teacher in evaluation mode, batched) and reused by
/// every epoch and every λ_layer candidate: the subtask logits and, per
/// paired layer, the map in the form its loss consumes (pooled to the
/// student's size unless the method compares maps of any size, then put
/// through the method's `TeacherTransform`).
public struct TeacherOutputs {
    /// z_t cut to the subtask classes (label i ↔ teacher class `classIndices[i]`), N×C.
    public var logits: CachedRows
    /// One per paired layer, in pair order.
    public var maps: [CachedRows]
    /// Per paired layer, the teacher tap's per-image shape before pooling
    /// and transform ([H, W, d], or [d] for the embedding).
    public var tapShapes: [[Int]]
    /// The teacher's logit shift s_t = log w_t cut to the subtask classes
    /// (zeros for an `erm` teacher); used by `--calibrated-teacher`.
    public var logShift: [Float]

    public var classes: Int { logits.itemShape[0] }
    public var count: Int { logits.count }

    public init(logits: CachedRows, maps: [CachedRows], tapShapes: [[Int]] = [], logShift: [Float]) {
        self.logits = logits
        self.maps = maps
        self.tapShapes = tapShapes
        self.logShift = logShift
    }

    /// Runs the teacher over `data` once.
    /// - Parameters:
    ///   - classIndices: the teacher's class ids of the subtask (split meta `subtask_classes`).
    ///   - logShift: the teacher's full shift (all its classes), cut here.
    ///   - progress: called with (images done, total).
    public static func compute(teacher: Model, data: Dataset, classIndices: [Int], logShift: [Float],
                               requests: [TeacherMapRequest], batch: Int = 256,
                               progress: (Int, Int) -> Void = { _, _ in }) throws -> TeacherOutputs {
        let classesOut = teacher.outputShape.reduce(1, *)
        guard teacher.inputShape == data.imageShape else {
            throw DistillError("the teacher takes \(teacher.inputShape) images, the data has \(data.imageShape)")
        }
        if let bad = classIndices.first(where: { $0 < 0 || $0 >= classesOut }) {
            throw DistillError("subtask class \(bad) is not one of the teacher's \(classesOut) classes")
        }
        guard !classIndices.isEmpty else { throw DistillError("no subtask classes given") }
        return try computeChecked(teacher: teacher, data: data, classIndices: classIndices, logShift: logShift,
                                  requests: requests, batch: batch, progress: progress)
    }

    private static func computeChecked(teacher: Model, data: Dataset, classIndices: [Int], logShift: [Float],
                                       requests: [TeacherMapRequest], batch: Int,
                                       progress: (Int, Int) -> Void) throws -> TeacherOutputs {
        let n = data.count, c = classIndices.count
        let classesOut = teacher.outputShape.reduce(1, *)
        guard logShift.count == classesOut else {
            throw DistillError("the teacher's log shift has \(logShift.count) entries for \(classesOut) classes")
        }
        var maps: [CachedRows] = []
        for r in requests {
            guard teacher.hasTap(r.tap) else {
                throw DistillError("the teacher has no layer '\(r.tap)' (its paired layers: \(teacher.tapNames.joined(separator: ", ")))")
            }
            var item = teacher.tapShape(r.tap)
            if let p = r.poolTo {
                guard item.count == 3 else { throw DistillError("teacher layer \(r.tap) is not a spatial map (\(item)); it cannot be pooled") }
                guard p.h <= item[0], p.w <= item[1] else {
                    throw DistillError("teacher layer \(r.tap) (\(item[0])×\(item[1])) is smaller than the student's \(p.h)×\(p.w); the student map is never resized")
                }
                item = [p.h, p.w, item[2]]
            }
            maps.append(CachedRows(itemShape: r.transform.outputShape(item), count: n))
        }
        var logits = CachedRows(itemShape: [c], count: n)
        var x = Tensor(shape: [0])
        var cut = [Float](repeating: 0, count: 0)
        var start = 0
        while start < n {
            let end = min(n, start + batch)
            data.gather(Array(start..<end)[...], into: &x)
            let z = teacher.forward(x, training: false)
            let b = end - start
            cut = [Float](repeating: 0, count: b * c)
            z.data.withUnsafeBufferPointer { zp in
                for i in 0..<b { for j in 0..<c { cut[i * c + j] = zp[i * classesOut + classIndices[j]] } }
            }
            logits.store(Tensor(shape: [b, c], data: cut), at: start)
            for (k, r) in requests.enumerated() {
                var t = teacher.activation(tap: r.tap)
                if let p = r.poolTo { t = adaptiveAvgPoolNHWC(t, toH: p.h, toW: p.w) }
                maps[k].store(r.transform(t), at: start)
            }
            start = end
            progress(start, n)
        }
        return TeacherOutputs(logits: logits, maps: maps, tapShapes: requests.map { teacher.tapShape($0.tap) },
                              logShift: classIndices.map { logShift[$0] })
    }
}
