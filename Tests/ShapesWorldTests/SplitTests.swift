import Foundation
import Testing
@testable import ShapesWorld
import TensorIO

/// The contamination and digit rules of issue 4, checked on the stored
/// arrays and on the pixels themselves.
@Suite struct SplitRules {
    static let rho = 0.3

    func checkCommon(_ d: SplitData, k: Int) {
        #expect(d.images.count == d.count * 32 * 32 * 3)
        #expect(d.artifact.count == d.count && d.digit.count == d.count && d.group.count == d.count)
        for i in 0..<d.count {
            #expect(d.labels[i] >= 0 && d.labels[i] < Int32(k))
            #expect(d.group[i] == d.labels[i] * 2 + (d.artifact[i] ? 1 : 0))
            #expect((d.digit[i] == -1) == !d.artifact[i])
        }
        // Labels in class-major order.
        #expect(d.labels == d.labels.sorted())
    }

    /// Each artifact's pixels: black patch with exactly the recorded digit
    /// readable; images without artifact have no black 8 × 8 corner.
    func checkPixels(_ d: SplitData) {
        for i in 0..<d.count {
            let patch = patchRegion(d, i, patch: 8)
            if d.artifact[i] {
                // Opaque: every pixel is grey (equal channels), black or glyph.
                for j in stride(from: 0, to: patch.count, by: 3) {
                    #expect(patch[j] == patch[j + 1] && patch[j] == patch[j + 2])
                    #expect(patch[j] == 0 || patch[j] >= 203)  // brightness ≥ 0.8
                }
                #expect(readDigits(patch: patch, side: 8) == [Int(d.digit[i])])
            } else {
                let black = stride(from: 0, to: patch.count, by: 3).filter { patch[$0] == 0 && patch[$0 + 1] == 0 && patch[$0 + 2] == 0 }
                #expect(black.count < 16)
            }
        }
    }

    @Test func distillTrainCarriesDigitEqualLabelOnExactlyRoundRhoN() throws {
        let plan = try SynthesisPlan.prepare(smallConfig(rho: Self.rho))
        for split in [SplitName.distillTrain, .distillVal] {
            let d = plan.generate(split)
            checkCommon(d, k: 5)
            let n = d.count
            #expect(n == 5 * plan.config.perClass[split])
            #expect(d.artifact.filter { $0 }.count == Int((Self.rho * Double(n)).rounded()))
            for i in 0..<n where d.artifact[i] { #expect(d.digit[i] == d.labels[i]) }
            checkPixels(d)
        }
    }

    @Test func testSplitDigitsIgnoreTheLabel() throws {
        let plan = try SynthesisPlan.prepare(smallConfig(rho: 0.75))
        let d = plan.generate(.test)
        checkCommon(d, k: 5)
        #expect(d.artifact.filter { $0 }.count == Int((0.75 * Double(d.count)).rounded()))
        let withArtifact = (0..<d.count).filter { d.artifact[$0] }
        #expect(withArtifact.allSatisfy { (0..<5).contains(d.digit[$0]) })
        // Independent of the label: some match, some do not, and several digits occur.
        #expect(withArtifact.contains { d.digit[$0] != d.labels[$0] })
        #expect(withArtifact.contains { d.digit[$0] == d.labels[$0] })
        #expect(Set(withArtifact.map { d.digit[$0] }).count == 5)
        checkPixels(d)
    }

    @Test func cleanAndConflictSplits() throws {
        let plan = try SynthesisPlan.prepare(smallConfig(rho: 0.5))
        let clean = plan.generate(.testClean)
        checkCommon(clean, k: 5)
        #expect(!clean.artifact.contains(true))
        let conflict = plan.generate(.testConflict)
        checkCommon(conflict, k: 5)
        #expect(!conflict.artifact.contains(false))
        for i in 0..<conflict.count {
            #expect(conflict.digit[i] != conflict.labels[i])
            #expect((0..<5).contains(conflict.digit[i]))
        }
        // Uniform over the other four: each occurs for some image.
        for label in 0..<5 {
            let ds = Set((0..<conflict.count).filter { conflict.labels[$0] == Int32(label) }.map { conflict.digit[$0] })
            #expect(ds.count >= 2 && !ds.contains(Int32(label)))
        }
        checkPixels(conflict)
        checkPixels(clean)
    }

    @Test func teacherSplitsAreCleanAndHoldAllClasses() throws {
        let plan = try SynthesisPlan.prepare(smallConfig(rho: 1))
        for split in [SplitName.teacherTrain, .teacherVal] {
            let d = plan.generate(split)
            checkCommon(d, k: 20)
            #expect(!d.artifact.contains(true))
            #expect(d.classNames == ShapesWorld.classNames)
            for c in 0..<20 { #expect(d.labels.filter { $0 == Int32(c) }.count == plan.config.perClass[split]) }
        }
    }

    @Test func valDecorrelatedGivesRandomDigits() throws {
        var c = smallConfig(rho: 1)
        c.perClass.distillVal = 12
        c.valDecorrelated = true
        let d = try SynthesisPlan.prepare(c).generate(.distillVal)
        #expect(!d.artifact.contains(false))
        #expect((0..<d.count).contains { d.digit[$0] != d.labels[$0] })
        #expect(d.digit.allSatisfy { (0..<5).contains($0) })
        // distill-train is unaffected.
        let t = try SynthesisPlan.prepare(c).generate(.distillTrain)
        #expect((0..<t.count).allSatisfy { t.digit[$0] == t.labels[$0] })
    }

    @Test(arguments: [0.0, 0.125, 0.5, 1.0])
    func contaminationCountIsExactForEveryRho(rho: Double) throws {
        var c = smallConfig(rho: rho)
        c.perClass.distillTrain = 7  // N = 35: ρN not an integer for most ρ
        let d = try SynthesisPlan.prepare(c).generate(.distillTrain)
        #expect(d.artifact.filter { $0 }.count == SynthesisPlan.contaminatedCount(rho: rho, n: 35))
        #expect(SynthesisPlan.contaminatedCount(rho: rho, n: 35) == Int((rho * 35).rounded()))
    }

    @Test func subtaskLabelsFollowTheFamily() throws {
        var c = smallConfig()
        c.family = "stars"
        let plan = try SynthesisPlan.prepare(c)
        #expect(plan.subtaskClasses == [0, 1, 2, 3, 4])
        let d = plan.generate(.distillVal)
        #expect(d.classNames == ["star3", "star4", "star5", "star6", "star8"])
        c.family = nil
        #expect(try SynthesisPlan.prepare(c).subtaskClasses == [10, 11, 12, 13, 14])
    }
}

@Suite struct Balance {
    @Test func balancedByDefault() throws {
        let plan = try SynthesisPlan.prepare(smallConfig())
        for split in SplitName.allCases {
            let d = plan.generate(split)
            let k = split.isTeacher ? 20 : 5
            for c in 0..<k { #expect(d.labels.filter { $0 == Int32(c) }.count == plan.config.perClass[split]) }
            #expect(d.classCounts == [Int](repeating: plan.config.perClass[split], count: k))
        }
    }

    @Test func longTailProfileInTrainingSplitsOnly() throws {
        var c = smallConfig()
        c.perClass.teacherTrain = 40
        c.perClass.distillTrain = 50
        c.imbalance = 10
        let plan = try SynthesisPlan.prepare(c)
        let d = plan.generate(.distillTrain)
        // 50 · 10^(−c/4): 50, 28.1, 15.8, 8.9, 5 → 50, 28, 16, 9, 5.
        let want = [50, 28, 16, 9, 5]
        for cl in 0..<5 { #expect(d.labels.filter { $0 == Int32(cl) }.count == want[cl]) }
        #expect(d.artifact.filter { $0 }.count == Int((0.25 * 108).rounded()))
        let t = plan.generate(.teacherTrain)
        let counts = (0..<20).map { cl in t.labels.filter { $0 == Int32(cl) }.count }
        #expect(counts.first == 40 && counts.last == 4)
        #expect(counts[10] == Int((40 * pow(10, -10.0 / 19)).rounded()))
        #expect(counts == counts.sorted(by: >))
        // Validation and test stay balanced.
        #expect(plan.classCounts(of: .distillVal) == [5, 5, 5, 5, 5])
        #expect(plan.classCounts(of: .test) == [8, 8, 8, 8, 8])
        // At least one image per class even at an extreme factor.
        c.imbalance = 1e9
        #expect(try SynthesisPlan.prepare(c).classCounts(of: .distillTrain).last == 1)
    }

    @Test func longTailKeepsAPrefixOfEachClass() throws {
        var c = smallConfig(rho: 0)
        c.perClass.distillTrain = 10
        let balanced = try SynthesisPlan.prepare(c).generate(.distillTrain)
        c.imbalance = 5
        let tail = try SynthesisPlan.prepare(c).generate(.distillTrain)
        // The last class keeps 2 of 10: they are its first two base images.
        let px = 32 * 32 * 3
        let lastStartBalanced = 40, lastStartTail = tail.count - 2
        #expect(Array(tail.images[(lastStartTail * px)..<((lastStartTail + 2) * px)])
                == Array(balanced.images[(lastStartBalanced * px)..<((lastStartBalanced + 2) * px)]))
    }
}

@Suite struct Determinism {
    @Test func sameSeedSameBytes() throws {
        let a = try SynthesisPlan.prepare(smallConfig(seed: 3))
        let b = try SynthesisPlan.prepare(smallConfig(seed: 3))
        for split in SplitName.allCases {
            let x = a.generate(split), y = b.generate(split)
            #expect(x.images == y.images && x.labels == y.labels && x.artifact == y.artifact
                    && x.digit == y.digit && x.group == y.group)
        }
    }

    @Test func otherSeedOtherImages() throws {
        let x = try SynthesisPlan.prepare(smallConfig(seed: 3)).generate(.distillTrain)
        let y = try SynthesisPlan.prepare(smallConfig(seed: 4)).generate(.distillTrain)
        #expect(x.labels == y.labels)
        #expect(x.images != y.images)
        #expect(x.artifact != y.artifact)
    }

    @Test func renderingDoesNotDependOnThreadingOrCounts() throws {
        // Image k of a class is the same whether the split holds 5 or 12 per class.
        var c = smallConfig(rho: 0)
        let big = try SynthesisPlan.prepare(c).generate(.distillTrain)
        c.perClass.distillTrain = 5
        let small = try SynthesisPlan.prepare(c).generate(.distillTrain)
        let px = 32 * 32 * 3
        for cl in 0..<5 {
            let s = Array(small.images[(cl * 5 * px)..<((cl * 5 + 5) * px)])
            let b = Array(big.images[(cl * 12 * px)..<((cl * 12 + 5) * px)])
            #expect(s == b)
        }
    }
}

@Suite struct LikeWithLike {
    /// Pixels outside the patch square.
    func outsidePatch(_ d: SplitData, _ i: Int) -> [UInt8] {
        let img = Array(d.image(i))
        var out: [UInt8] = []
        for y in 0..<32 { for x in 0..<32 where y >= 8 || x >= 8 { out += img[((y * 32 + x) * 3)..<((y * 32 + x) * 3 + 3)] } }
        return out
    }

    @Test func rhoChangesOnlyThePatches() throws {
        let rhos = [0.0, 0.25, 0.5, 1.0]
        let splits = [SplitName.distillTrain, .distillVal, .test]
        var runs: [[SplitData]] = []
        for r in rhos {
            let plan = try SynthesisPlan.prepare(smallConfig(rho: r))
            runs.append(splits.map { plan.generate($0) })
        }
        for (si, _) in splits.enumerated() {
            let base = runs[0][si]
            #expect(!base.artifact.contains(true))
            for run in runs.dropFirst() {
                let d = run[si]
                #expect(d.labels == base.labels)
                for i in 0..<d.count {
                    #expect(outsidePatch(d, i) == outsidePatch(base, i))
                    if !d.artifact[i] { #expect(d.image(i) == base.image(i)) }
                }
            }
            // Nested contamination: an image with the artifact at ρ keeps it,
            // with the same digit, at every larger ρ.
            for a in 1..<runs.count - 1 {
                let lo = runs[a][si], hi = runs[a + 1][si]
                for i in 0..<lo.count where lo.artifact[i] {
                    #expect(hi.artifact[i] && hi.digit[i] == lo.digit[i] && hi.image(i) == lo.image(i))
                }
            }
        }
    }

    @Test func testSplitsShareTheirBaseImages() throws {
        let plan = try SynthesisPlan.prepare(smallConfig(rho: 0.5))
        let t = plan.generate(.test), clean = plan.generate(.testClean), conflict = plan.generate(.testConflict)
        #expect(t.labels == clean.labels && conflict.labels == clean.labels)
        for i in 0..<clean.count {
            #expect(outsidePatch(conflict, i) == outsidePatch(clean, i))
            #expect(outsidePatch(t, i) == outsidePatch(clean, i))
            if !t.artifact[i] { #expect(t.image(i) == clean.image(i)) }
        }
    }

    @Test func teacherDataIgnoresRhoAndFamily() throws {
        var c = smallConfig(rho: 0)
        let a = try SynthesisPlan.prepare(c).generate(.teacherVal)
        c.rho = 1
        c.family = "dots"
        c.valDecorrelated = true
        let b = try SynthesisPlan.prepare(c).generate(.teacherVal)
        #expect(a.images == b.images && a.labels == b.labels)
    }

    @Test func noImageRepeatsAcrossPools() throws {
        // The subtask's base images are drawn from other streams than the
        // teacher's: no image repeats between splits.
        let plan = try SynthesisPlan.prepare(smallConfig(rho: 0))
        var seen = Set<[UInt8]>()
        for split in [SplitName.teacherTrain, .teacherVal, .distillTrain, .distillVal, .test] {
            let d = plan.generate(split)
            for i in 0..<d.count { #expect(seen.insert(Array(d.image(i))).inserted) }
        }
    }
}
