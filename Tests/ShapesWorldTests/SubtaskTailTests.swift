import Foundation
import Testing
@testable import ShapesWorld
import TensorIO

// `--imbalance-classes subtask` and `--min-per-class`: the teacher's long
// tail inside the subtask family, the refusal of tails too thin to measure.

@Suite struct SubtaskTail {
    func config(r: Double, classes: ImbalanceClasses = .subtask, family: String = "gratings") -> SynthesisConfig {
        var c = smallConfig(rho: 0)
        c.family = family
        c.perClass.teacherTrain = 40
        c.perClass.teacherVal = 6
        c.perClass.distillTrain = 50
        c.imbalance = r
        c.imbalanceClasses = classes
        return c
    }

    @Test func teacherTailRunsOverTheFamilyOnly() throws {
        let plan = try SynthesisPlan.prepare(config(r: 10))
        let counts = plan.classCounts(of: .teacherTrain)
        // 40 · 10^(−c/4), c = 0…4 over gratings (10–14): 40, 22.5, 12.6, 7.1, 4.
        var want = [Int](repeating: 40, count: 20)
        want.replaceSubrange(10..<15, with: [40, 22, 13, 7, 4])
        #expect(counts == want)
        // The rendered split holds exactly those counts, and the images of
        // the classes at full size are the balanced world's.
        let t = plan.generate(.teacherTrain)
        #expect((0..<20).map { c in t.labels.filter { $0 == Int32(c) }.count } == want)
        var balanced = config(r: 1)
        balanced.imbalanceClasses = .all
        let b = try SynthesisPlan.prepare(balanced).generate(.teacherTrain)
        let px = 32 * 32 * 3
        #expect(Array(t.images[0..<(400 * px)]) == Array(b.images[0..<(400 * px)]))
        // distill-train: the same profile over the subtask as with `all`; teacher-val balanced.
        let d = plan.classCounts(of: .distillTrain)
        #expect(d == [50, 28, 16, 9, 5])
        #expect(d == (try SynthesisPlan.prepare(config(r: 10, classes: .all))).classCounts(of: .distillTrain))
        #expect(plan.classCounts(of: .teacherVal) == [Int](repeating: 6, count: 20))
        #expect(plan.classCounts(of: .distillVal) == [5, 5, 5, 5, 5])
    }

    @Test func followsTheFamilyInMemberOrder() throws {
        let plan = try SynthesisPlan.prepare(config(r: 10, family: "stars"))
        let counts = plan.classCounts(of: .teacherTrain)
        #expect(Array(counts[0..<5]) == [40, 22, 13, 7, 4])
        #expect(counts[5...].allSatisfy { $0 == 40 })
        // An explicit subtask in its own order: the profile follows the list.
        var c = config(r: 10)
        c.family = nil
        c.subtaskClasses = [17, 3, 9]
        let p = try SynthesisPlan.prepare(c).classCounts(of: .teacherTrain)
        #expect(p[17] == 40 && p[3] == 13 && p[9] == 4)
        #expect(p.enumerated().filter { ![17, 3, 9].contains($0.offset) }.allSatisfy { $0.element == 40 })
    }

    @Test func metaRecordsTheChoiceOnlyWhenNotAll() throws {
        let plan = try SynthesisPlan.prepare(config(r: 10))
        let t = plan.meta(for: plan.generate(.teacherTrain)).parameters
        #expect(t["imbalance_classes"] == "subtask" && t["imbalance_subtask"] == "gratings")
        #expect(t["imbalance_class_ids"] == .array([10, 11, 12, 13, 14].map { .number(Double($0)) }))
        // Not a subtask split: train-teacher refuses those.
        #expect(t["subtask_classes"] == nil)
        let d = plan.meta(for: plan.generate(.distillTrain)).parameters
        #expect(d["imbalance_classes"] == "subtask" && d["imbalance_class_ids"] == nil)
        let v = plan.meta(for: plan.generate(.teacherVal)).parameters
        #expect(v["imbalance_classes"] == nil && v["imbalance"] == nil)
        // The default writes the keys it always wrote.
        let all = try SynthesisPlan.prepare(config(r: 10, classes: .all))
        let ta = all.meta(for: all.generate(.teacherTrain)).parameters
        #expect(ta["imbalance_classes"] == nil && ta["imbalance_subtask"] == nil && ta["imbalance_class_ids"] == nil)
    }

    @Test func refusesATailBelowTheMinimum() throws {
        var c = config(r: 30)
        c.minPerClass = 10
        // teacher-train: 40/30 → 1 image of grating144.
        do {
            _ = try SynthesisPlan.prepare(c)
            Issue.record("accepted a class of 1 image under --min-per-class 10")
        } catch let e as SynthesisError {
            #expect(e.kind == .usage)
            let need = SynthesisPlan.perClassNeeded(min: 10, factor: 30, classes: 5)
            for w in ["grating144", "teacher-train", "1 image", "--min-per-class 10", "--teacher-train-per-class", "at least \(need)"] {
                #expect(e.message.contains(w), "'\(e.message)' should mention '\(w)'")
            }
        }
        // The suggested count is the smallest that reaches the floor.
        for (m, r, k) in [(10, 30.0, 5), (10, 100.0, 5), (10, 10.0, 5), (3, 7.0, 20), (10, 1.5, 2)] {
            let n = SynthesisPlan.perClassNeeded(min: m, factor: r, classes: k)
            #expect(SynthesisPlan.tailCount(n: n, factor: r, rank: k - 1, of: k) >= m)
            #expect(n == m || SynthesisPlan.tailCount(n: n - 1, factor: r, rank: k - 1, of: k) < m, "\(m) \(r) \(k): \(n)")
        }
        // Enough images: 300 · 30^(−1) = 10.
        c.perClass.teacherTrain = 300
        c.perClass.distillTrain = 300
        let p = try SynthesisPlan.prepare(c)
        #expect(p.classCounts(of: .teacherTrain)[14] == 10 && p.classCounts(of: .distillTrain).last == 10)
        // Only written training splits count: distill-train alone is checked on its own.
        c.perClass.distillTrain = 240
        c.splits = [.teacherTrain, .teacherVal]
        _ = try SynthesisPlan.prepare(c)
        c.splits = [.distillTrain]
        #expect(throws: SynthesisError.self) { try SynthesisPlan.prepare(c) }
        // No tail, no floor; 1 accepts anything; below 1 is a usage error.
        c.imbalance = 1
        _ = try SynthesisPlan.prepare(c)
        c.imbalance = 30
        c.minPerClass = 1
        _ = try SynthesisPlan.prepare(c)
        c.minPerClass = 0
        #expect(throws: SynthesisError(usage: "--min-per-class must be at least 1, got 0")) { try SynthesisPlan.prepare(c) }
        // The library default (nil) keeps the earlier behaviour.
        c.minPerClass = nil
        #expect(try SynthesisPlan.prepare(c).classCounts(of: .distillTrain).last == 8)
    }
}
