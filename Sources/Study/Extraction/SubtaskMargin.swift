import NN

/// The scalar the relevant subspace explains (docs/methods.md, "Relevant
/// subspace", step 2): f = z_(1) − z_(2), the largest minus the second
/// largest of the teacher's SUBTASK logits, i.e. of its logits cut to the
/// subtask's classes. No labels are used.
///
/// Its logits gradient is +1 at the teacher column of the top-1 subtask
/// class and −1 at the top-2's (zero elsewhere, f being piecewise linear in
/// the logits); back-propagating it gives the context c = ∂f/∂a (step 3).
/// In evaluation mode every image's forward is independent of the others
/// (batch norm uses its running statistics), so the gradient of the batch
/// sum Σ_b f_b with respect to image b's activation is ∂f_b/∂a_b.
///
/// The logits are the network's raw outputs z, also for a teacher trained
/// with a logit shift s (robust objectives): z, not z − s, is what it
/// predicts with.
public struct SubtaskMargin: Equatable {
    /// Teacher class id of each subtask label (label i ↔ column subtaskClasses[i]).
    public let subtaskClasses: [Int]
    /// Number of the teacher's output columns.
    public let teacherClasses: Int

    public init(subtaskClasses: [Int], teacherClasses: Int) throws {
        guard subtaskClasses.count >= 2 else {
            throw ExtractionError("the subtask needs at least 2 classes for f = z_(1) − z_(2), got \(subtaskClasses)")
        }
        guard Set(subtaskClasses).count == subtaskClasses.count else {
            throw ExtractionError("subtask classes \(subtaskClasses) repeat a class")
        }
        if let bad = subtaskClasses.first(where: { $0 < 0 || $0 >= teacherClasses }) {
            throw ExtractionError("subtask class \(bad) is not one of the teacher's \(teacherClasses) classes (0..<\(teacherClasses))")
        }
        self.subtaskClasses = subtaskClasses
        self.teacherClasses = teacherClasses
    }

    public var count: Int { subtaskClasses.count }

    private func rows(_ logits: Tensor) -> Int {
        precondition(logits.rank == 2 && logits.shape[1] == teacherClasses,
                     "SubtaskMargin: expects B×\(teacherClasses) teacher logits, got \(logits.shape)")
        return logits.shape[0]
    }

    /// Subtask logits: B×C teacher logits → B×K, column i = teacher column subtaskClasses[i].
    public func subtaskLogits(_ logits: Tensor) -> Tensor {
        let b = rows(logits), c = teacherClasses, k = count
        var out = Tensor(shape: [b, k])
        logits.data.withUnsafeBufferPointer { z in
            out.data.withUnsafeMutableBufferPointer { o in
                subtaskClasses.withUnsafeBufferPointer { cls in
                    for r in 0..<b { for i in 0..<k { o[r * k + i] = z[r * c + cls[i]] } }
                }
            }
        }
        return out
    }

    /// Top-1 and top-2 subtask labels of each row (first index on ties, as `Loss.argmax`).
    public func topTwo(_ logits: Tensor) -> [(first: Int, second: Int)] {
        let b = rows(logits), c = teacherClasses, k = count
        var out = [(first: Int, second: Int)](repeating: (0, 1), count: b)
        logits.data.withUnsafeBufferPointer { z in
            subtaskClasses.withUnsafeBufferPointer { cls in
                for r in 0..<b {
                    var i1 = 0, i2 = -1
                    var v1 = z[r * c + cls[0]], v2 = -Float.infinity
                    for i in 1..<k {
                        let v = z[r * c + cls[i]]
                        if v > v1 { i2 = i1; v2 = v1; i1 = i; v1 = v }
                        else if i2 < 0 || v > v2 { i2 = i; v2 = v }
                    }
                    out[r] = (i1, i2)
                }
            }
        }
        return out
    }

    /// Subtask predictions (labels 0..<K): argmax of the subtask logits.
    public func predictions(_ logits: Tensor) -> [Int] { topTwo(logits).map(\.first) }

    /// f_b = z_(1) − z_(2) per row and ∂(Σ_b f_b)/∂logits (B×C: +1 at the
    /// top-1 subtask class's teacher column, −1 at the top-2's).
    public func margin(_ logits: Tensor) -> (f: [Float], gradLogits: Tensor) {
        let b = rows(logits), c = teacherClasses
        let top = topTwo(logits)
        var f = [Float](repeating: 0, count: b)
        var g = Tensor(shape: [b, c])
        g.data.withUnsafeMutableBufferPointer { gp in
            for r in 0..<b {
                let j1 = subtaskClasses[top[r].first], j2 = subtaskClasses[top[r].second]
                f[r] = logits.data[r * c + j1] - logits.data[r * c + j2]
                gp[r * c + j1] = 1
                gp[r * c + j2] = -1
            }
        }
        return (f, g)
    }
}
