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
    /// The teacher's tap (`stage1`, …).
    public var tap: String
    /// Pool to this H×W (the student's) with `adaptiveAvgPoolNHWC`; nil keeps
    /// the map as it is (SPKD compares unpooled maps).
    public var poolTo: (h: Int, w: Int)?
    /// Project with SubDistill's fixed teacher side t̃ = U_kᵀ(t − μ) after pooling.
    public var projection: SubDistillLoss?
    /// Keep only the attention map q(t) (B×H×W×1) after pooling.
    public var attention: AttentionLoss?
    /// Keep only VkD's teacher side LN(t̄) (B×1×1×d) after pooling.
    public var vkdSummary: Bool

    public init(tap: String, poolTo: (h: Int, w: Int)?, projection: SubDistillLoss? = nil,
                attention: AttentionLoss? = nil, vkdSummary: Bool = false) {
        precondition([projection != nil, attention != nil, vkdSummary].filter { $0 }.count <= 1,
                     "TeacherMapRequest: one transform at most")
        self.tap = tap
        self.poolTo = poolTo
        self.projection = projection
        self.attention = attention
        self.vkdSummary = vkdSummary
    }
}

/// The frozen teacher's outputs on the distillation training split, computed
/// ONCE before training (teacher in evaluation mode, batched) and reused by
/// every epoch and every λ_layer candidate: the subtask logits and, per
/// paired layer, the map in the form its loss consumes (pooled to the
/// student's size; then SubDistill-projected to k channels, or reduced to the
/// attention map q(t) for attention transfer, or to VkD's layer-normed
/// spatial mean; unpooled for SPKD).
public struct TeacherOutputs {
    /// z_t cut to the subtask classes (label i ↔ teacher class `classIndices[i]`), N×C.
    public var logits: CachedRows
    /// One per paired layer, in pair order.
    public var maps: [CachedRows]
    /// The teacher's logit shift s_t = log w_t cut to the subtask classes
    /// (zeros for an `erm` teacher); used by `--calibrated-teacher`.
    public var logShift: [Float]

    public var classes: Int { logits.itemShape[0] }
    public var count: Int { logits.count }

    public init(logits: CachedRows, maps: [CachedRows], logShift: [Float]) {
        self.logits = logits
        self.maps = maps
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
            guard teacher.tapNames.contains(r.tap) else {
                throw DistillError("the teacher has no layer '\(r.tap)' (its paired layers: \(teacher.tapNames.joined(separator: ", ")))")
            }
            let s = teacher.tapShape(r.tap)
            var item = [r.poolTo?.h ?? s[0], r.poolTo?.w ?? s[1], s[2]]
            if let p = r.poolTo, p.h > s[0] || p.w > s[1] {
                throw DistillError("teacher layer \(r.tap) (\(s[0])×\(s[1])) is smaller than the student's \(p.h)×\(p.w); the student map is never resized")
            }
            if let proj = r.projection {
                guard proj.teacherChannels == s[2] else {
                    throw DistillError("teacher layer \(r.tap) has \(s[2]) channels, its subspace basis \(proj.teacherChannels)")
                }
                item[2] = proj.studentChannels
            }
            if r.attention != nil { item[2] = 1 }
            if r.vkdSummary { item[0] = 1; item[1] = 1 }
            maps.append(CachedRows(itemShape: item, count: n))
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
                if let proj = r.projection { t = proj.projectTeacher(t) }
                if let att = r.attention { t = att.teacherAttention(t) }
                if r.vkdSummary { t = VkDLoss.teacherSummary(t) }
                maps[k].store(t, at: start)
            }
            start = end
            progress(start, n)
        }
        return TeacherOutputs(logits: logits, maps: maps, logShift: classIndices.map { logShift[$0] })
    }
}
