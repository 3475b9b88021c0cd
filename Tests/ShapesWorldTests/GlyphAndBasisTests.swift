import Foundation
import Testing
@testable import ShapesWorld
import TensorIO

/// SHA-256 of a split's tensors (images, labels, artifact, digit, group), hex.
func splitDigest(_ d: SplitData) -> String {
    var h = SHA256()
    h.update(d.images)
    d.labels.withUnsafeBytes { h.update($0) }
    h.update(d.artifact.map { $0 ? 1 : 0 })
    d.digit.withUnsafeBytes { h.update($0) }
    d.group.withUnsafeBytes { h.update($0) }
    return h.finalize().map { String(format: "%02x", $0) }.joined()
}

/// Pixels outside the patch square of a 32 × 32 image.
func outsidePatch(_ d: SplitData, _ i: Int) -> [UInt8] {
    let img = Array(d.image(i))
    var out: [UInt8] = []
    for y in 0..<32 { for x in 0..<32 where y >= 8 || x >= 8 { out += img[((y * 32 + x) * 3)..<((y * 32 + x) * 3 + 3)] } }
    return out
}

/// The standard world must not move by a byte when the issue-11 code paths
/// (glyph family, basis splits) are added.
@Suite struct StandardWorldUnchanged {
    /// Digests of `smallConfig(rho: 0.25, seed: 7)` recorded with the code
    /// before issue 11 (commit bbf9279), whose gratings had full contrast.
    static let golden: [SplitName: String] = [
        .teacherTrain: "62e5386a886131a747dc042d5224dc53b42a0c7a0768f12cfc335ac5cef5ba8c",
        .teacherVal: "93556b685082b36b045c86a103963c7b0d1afe398ef9d8afac4064445dd22fe1",
        .distillTrain: "acbcc467250817727351c341851c7c5f18cd92753aa1deb0737cf8616d8534fd",
        .distillVal: "916ea2b25af1bb4c4075ed64b6978b0c2cd550da3512cb8d5a050f13e105f2e7",
        .test: "2cd0e45ac1d60a5260c06377d7858a5d293d59c2b8bcb7efa7baf679e4574e76",
        .testClean: "e1eba81487cd17413447c4b1feeeb0bd50663ca86684748572aba442f8d985dc",
        .testConflict: "88e03e6ab49f95469ae5abd6c20eefadd54d322c39e4a7f279a5421e0c52964e",
    ]

    @Test func publishedSplitsMatchThePreIssue11Digests() throws {
        var c = smallConfig(rho: 0.25, seed: 7)
        c.teacherWorld = .standard
        c.gratingContrast = 1...1
        let plan = try SynthesisPlan.prepare(c)
        for split in SplitName.published {
            #expect(splitDigest(plan.generate(split)) == Self.golden[split], "\(split.rawValue)")
        }
    }

    @Test func teacherSplitIsIdenticalWithAndWithoutTheGlyphPath() throws {
        var c = smallConfig(rho: 0.5)
        let standard = try SynthesisPlan.prepare(c).generate(.teacherVal)
        c.teacherWorld = .digitAware
        let aware = try SynthesisPlan.prepare(c).generate(.teacherVal)
        // The digit-aware split is the standard one followed by the glyph family.
        let n = standard.count, px = 32 * 32 * 3
        #expect(n == 20 * c.perClass.teacherVal && aware.count == 25 * c.perClass.teacherVal)
        #expect(Array(aware.images[0..<(n * px)]) == standard.images)
        #expect(Array(aware.labels[0..<n]) == standard.labels)
        #expect(Array(aware.artifact[0..<n]) == standard.artifact)
        #expect(Array(aware.digit[0..<n]) == standard.digit)
        #expect(Array(aware.group[0..<n]) == standard.group)
        #expect(Array(aware.classNames.prefix(20)) == standard.classNames)
    }

    @Test func subtaskSplitsIgnoreTheTeacherWorld() throws {
        var c = smallConfig(rho: 0.5)
        let a = try SynthesisPlan.prepare(c)
        c.teacherWorld = .digitAware
        let b = try SynthesisPlan.prepare(c)
        #expect(b.subtaskClasses == a.subtaskClasses)
        for split in SplitName.allCases where !split.isTeacher {
            #expect(splitDigest(a.generate(split)) == splitDigest(b.generate(split)), "\(split.rawValue)")
            #expect(a.meta(for: a.generate(split)).parameters == b.meta(for: b.generate(split)).parameters)
        }
    }

    @Test func standardMetaHasNoNewKeys() throws {
        let plan = try SynthesisPlan.prepare(smallConfig())
        for split in SplitName.published {
            let p = plan.meta(for: plan.generate(split)).parameters
            #expect(p["teacher_world"] == nil && p["glyph_classes"] == nil && p["base_split"] == nil)
        }
        // The teacher splits' parameters are exactly the pre-issue-11 set.
        #expect(Set(plan.meta(for: plan.generate(.teacherVal)).parameters.keys)
                == ["split", "source", "image_size", "seed", "per_class", "glyphs", "grating_contrast"])
    }
}

@Suite struct DigitAwareTeacherWorld {
    func plan(perClass: Int = 6, imbalance: Double = 1) throws -> SynthesisPlan {
        var c = smallConfig(rho: 0.5)
        c.teacherWorld = .digitAware
        c.perClass.teacherTrain = perClass
        c.perClass.teacherVal = perClass
        c.imbalance = imbalance
        return try SynthesisPlan.prepare(c)
    }

    @Test func glyphLabelsEqualTheDigitReadFromThePatch() throws {
        let p = try plan()
        let d = p.generate(.teacherVal)
        #expect(d.classNames == ShapesWorld.classNames + ["glyph0", "glyph1", "glyph2", "glyph3", "glyph4"])
        #expect(d.classCounts == [Int](repeating: 6, count: 25))
        var glyphImages = 0
        for i in 0..<d.count where d.labels[i] >= 20 {
            glyphImages += 1
            let g = Int(d.labels[i]) - 20
            #expect(d.artifact[i] && d.digit[i] == Int32(g))
            #expect(d.group[i] == d.labels[i] * 2 + 1)
            #expect(readDigits(patch: patchRegion(d, i, patch: 8), side: 8) == [g])
        }
        #expect(glyphImages == 30)
        // Opaque black patch, exact digit, on every artifact; no black corner elsewhere.
        SplitRules().checkPixels(d)
    }

    @Test func shapeClassImagesCarryNoArtifact() throws {
        let d = try plan().generate(.teacherTrain)
        for i in 0..<d.count where d.labels[i] < 20 {
            #expect(!d.artifact[i] && d.digit[i] == -1)
            let patch = patchRegion(d, i, patch: 8)
            let black = stride(from: 0, to: patch.count, by: 3).filter { patch[$0] == 0 && patch[$0 + 1] == 0 && patch[$0 + 2] == 0 }
            #expect(black.count < 16)
        }
        #expect(d.artifact.filter { $0 }.count == 5 * 6)
    }

    @Test func glyphBaseShapesSpanManyClassesAndRepeatNoImage() throws {
        let p = try plan(perClass: 12)
        let d = p.generate(.teacherTrain)
        let pool = StreamKey.name(SplitName.teacherTrain.rawValue)
        var all = Set<Int>()
        for g in 0..<5 {
            let bases = (0..<12).map { p.glyphBase(classID: 20 + g, pool: pool, k: $0).shapeClass }
            #expect(bases.allSatisfy { (0..<20).contains($0) })
            #expect(Set(bases).count >= 4, "glyph\(g) base classes \(bases)")
            all.formUnion(bases)
        }
        // 60 uniform draws of 20 classes cover about 19 of them.
        #expect(all.count >= 12)
        // Each glyph image is its own scene: none equals a shape-class image
        // or another glyph image outside the patch.
        var seen = Set<[UInt8]>()
        for i in 0..<d.count { #expect(seen.insert(outsidePatch(d, i)).inserted) }
    }

    @Test func glyphImageIsTheDrawnShapeUnderThePatch() throws {
        // Rendering the drawn class on the glyph stream gives the image's
        // pixels outside the patch: the base really is that class's scene.
        let p = try plan(perClass: 3)
        let d = p.generate(.teacherVal)
        let pool = StreamKey.name(SplitName.teacherVal.rawValue)
        let work = UnsafeMutableBufferPointer<Float>.allocate(capacity: 32 * 32 * 3)
        defer { work.deallocate() }
        let canvas = Canvas(size: 32, pixels: work)
        for g in 0..<5 {
            for k in 0..<3 {
                var (shape, rng) = p.glyphBase(classID: 20 + g, pool: pool, k: k)
                Scene.make(classID: shape, size: 32, rng: &rng).draw(on: canvas, rng: &rng)
                var bytes = [UInt8](repeating: 0, count: 32 * 32 * 3)
                bytes.withUnsafeMutableBufferPointer { canvas.quantise(into: $0.baseAddress!) }
                let clean = SplitData(name: .teacherVal, imageSize: 32, images: bytes, labels: [0], artifact: [false],
                                      digit: [-1], group: [0], classNames: ["x"], classCounts: [1], agreeingDigit: [-1])
                let i = 60 + g * 3 + k
                #expect(d.labels[i] == Int32(20 + g))
                #expect(outsidePatch(d, i) == outsidePatch(clean, 0))
            }
        }
    }

    @Test func longTailThinsTheShapeClassesOnlyAsInTheStandardWorld() throws {
        let p = try plan(perClass: 40, imbalance: 10)
        var c = p.config
        c.teacherWorld = .standard
        let standard = try SynthesisPlan.prepare(c).classCounts(of: .teacherTrain)
        let counts = p.classCounts(of: .teacherTrain)
        #expect(Array(counts.prefix(20)) == standard && standard.last == 4)
        #expect(Array(counts.suffix(5)) == [40, 40, 40, 40, 40])
        #expect(p.classCounts(of: .teacherVal) == [Int](repeating: 40, count: 25))
    }

    @Test func metaRecordsTheWorld() throws {
        let p = try plan()
        let m = p.meta(for: p.generate(.teacherVal))
        #expect(m.parameters["teacher_world"] == "digit-aware")
        #expect(m.parameters["glyph_classes"] == [20, 21, 22, 23, 24])
        #expect(m.parameters["rho"] == nil && m.parameters["family"] == nil)
        #expect(m.extra["artifact_count"] == 30)
        #expect(m.extra["classes"]?.array?.count == 25)
    }

    @Test func contactSheetFramesGlyphPatchesAsAgreeing() throws {
        let d = try plan(perClass: 2).generate(.teacherVal)
        #expect(d.agreeingDigit == [Int32](repeating: -1, count: 20) + [0, 1, 2, 3, 4])
        let sheet = contactSheet(d, perClass: 2, scale: 1)
        // Frame corner of the first tile of row c: tile 32, gap 4, label column 28.
        func corner(_ c: Int) -> [UInt8] {
            let x = 28 + 4 - 2, y = 4 + c * 36 - 2
            let o = (y * sheet.width + x) * 3
            return Array(sheet.rgb[o..<(o + 3)])
        }
        for c in 20..<25 { #expect(corner(c) == [250, 210, 40]) }
        #expect(corner(3) == [40, 40, 40])
    }

    @Test func refusedWhereItCannotApply() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        var c = smallConfig()
        c.teacherWorld = .digitAware
        // Glyph classes are teacher-only: not a subtask class.
        c.subtaskClasses = [10, 20]
        #expect(throws: SynthesisError(usage: "--subtask-classes: class 20 is not in 0..<20")) { try SynthesisPlan.prepare(c) }
        // MNIST glyphs must hold the digits 0–4 for the glyph family, two
        // images each (disjoint pools): the fixture has 0–2 twice, 3–9 once.
        let (imgs, lbls) = try writeMNISTFixture(in: dir, count: 13)
        c.subtaskClasses = [10, 11]
        c.mnistImages = imgs
        c.mnistLabels = lbls
        do {
            _ = try SynthesisPlan.prepare(c)
            Issue.record("accepted MNIST glyphs without the digits 3 and 4")
        } catch let e as SynthesisError {
            #expect(e.message.contains("digit 3") && e.message.contains("glyph family"))
        }
        c.teacherWorld = .standard
        _ = try SynthesisPlan.prepare(c)
        // CIFAR images have no shape classes to draw.
        var cc = smallConfig()
        cc.teacherWorld = .digitAware
        cc.cifarPaths = [try writeCIFAR10Fixture(in: dir, perClass: 2)]
        do {
            _ = try SynthesisPlan.prepare(cc)
            Issue.record("accepted digit-aware with CIFAR")
        } catch let e as SynthesisError {
            #expect(e.message.contains("digit-aware") && e.message.contains("CIFAR"))
        }
    }
}

@Suite struct BasisSplits {
    func config(rho: Double, perClass: Int = 12) -> SynthesisConfig {
        var c = smallConfig(rho: rho)
        c.perClass.distillTrain = perClass
        return c
    }

    @Test func splitNamesAndAliases() throws {
        #expect(SplitName(rawValue: "distill-train-clean") == .distillTrainClean)
        #expect(SplitName(rawValue: "distill-train-decorrelated") == .distillTrainDecorrelated)
        #expect(try SplitName.parseList("basis") == [.distillTrainClean, .distillTrainDecorrelated])
        #expect(try SplitName.parseList("all") == SplitName.published && SplitName.published.count == 7)
        #expect(try SplitName.parseList("basis,all") == SplitName.allCases && SplitName.allCases.count == 9)
        #expect(try SplitName.parseList("distill-train-decorrelated,teacher-val") == [.teacherVal, .distillTrainDecorrelated])
        #expect(SynthesisConfig().splits == SplitName.published)
        #expect(SplitName.distillTrainDecorrelated.dependsOnRho && !SplitName.distillTrainClean.dependsOnRho)
    }

    @Test func cleanIsDistillTrainWithoutAnyArtifact() throws {
        let train = try SynthesisPlan.prepare(config(rho: 0.6)).generate(.distillTrain)
        let clean = try SynthesisPlan.prepare(config(rho: 0.6)).generate(.distillTrainClean)
        #expect(clean.labels == train.labels && clean.classCounts == train.classCounts)
        #expect(!clean.artifact.contains(true) && clean.digit.allSatisfy { $0 == -1 })
        #expect(train.artifact.filter { $0 }.count == 36)
        for i in 0..<train.count {
            #expect(outsidePatch(clean, i) == outsidePatch(train, i))
            if !train.artifact[i] { #expect(clean.image(i) == train.image(i)) }
        }
        SplitRules().checkPixels(clean)
        // Exactly distill-train's base images: distill-train at ρ = 0, at every ρ.
        let base = try SynthesisPlan.prepare(config(rho: 0)).generate(.distillTrain)
        #expect(clean.images == base.images)
        #expect(try SynthesisPlan.prepare(config(rho: 1)).generate(.distillTrainClean).images == base.images)
    }

    @Test func cleanFollowsTheLongTail() throws {
        var c = config(rho: 0.5, perClass: 20)
        c.imbalance = 10
        let plan = try SynthesisPlan.prepare(c)
        let train = plan.generate(.distillTrain), clean = plan.generate(.distillTrainClean)
        #expect(clean.classCounts == train.classCounts && clean.classCounts.last == 2)
        for i in 0..<train.count { #expect(outsidePatch(clean, i) == outsidePatch(train, i)) }
        let p = plan.meta(for: clean).parameters
        #expect(p["imbalance"] == .number(10) && p["rho"] == nil && p["base_split"] == "distill-train")
    }

    @Test(arguments: [0.125, 0.5, 1.0])
    func decorrelatedHasDistillTrainsMaskWithIndependentDigits(rho: Double) throws {
        let plan = try SynthesisPlan.prepare(config(rho: rho, perClass: 40))
        let train = plan.generate(.distillTrain), dec = plan.generate(.distillTrainDecorrelated)
        let n = train.count
        #expect(dec.labels == train.labels)
        #expect(dec.artifact == train.artifact)
        #expect(dec.artifact.filter { $0 }.count == Int((rho * Double(n)).rounded()))
        for i in 0..<n {
            #expect(outsidePatch(dec, i) == outsidePatch(train, i))
            if dec.artifact[i] {
                #expect((0..<5).contains(dec.digit[i]))
                // Same jitter and brightness: where the digit happens to be
                // the label, the whole image is distill-train's.
                if dec.digit[i] == dec.labels[i] { #expect(dec.image(i) == train.image(i)) }
            } else {
                #expect(dec.digit[i] == -1 && dec.image(i) == train.image(i))
            }
        }
        SplitRules().checkPixels(dec)
        let m = plan.meta(for: dec).parameters
        #expect(m["rho"] == .number(rho) && m["base_split"] == "distill-train")
    }

    @Test func decorrelatedDigitsIgnoreTheLabel() throws {
        // ρ = 1, N = 200: 40 artifacts per label.
        let dec = try SynthesisPlan.prepare(config(rho: 1, perClass: 40)).generate(.distillTrainDecorrelated)
        var table = [[Int]](repeating: [Int](repeating: 0, count: 5), count: 5)
        for i in 0..<dec.count { table[Int(dec.labels[i])][Int(dec.digit[i])] += 1 }
        for digit in 0..<5 {
            let labels = (0..<5).filter { table[$0][digit] > 0 }
            #expect(labels.count >= 4, "digit \(digit) appears with labels \(labels)")
        }
        for label in 0..<5 { #expect(table[label].filter { $0 > 0 }.count >= 4) }
        // About a fifth agree (40 expected); a label-driven digit would give 200.
        let agree = (0..<5).map { table[$0][$0] }.reduce(0, +)
        #expect(agree > 15 && agree < 70)
        // Not distill-val's or test's rule in disguise: other digits than test's.
        var c = config(rho: 1, perClass: 40)
        c.perClass.test = 40
        let t = try SynthesisPlan.prepare(c).generate(.test)
        #expect(t.digit != dec.digit)
    }

    @Test func decorrelatedArtifactsNestAcrossRho() throws {
        let lo = try SynthesisPlan.prepare(config(rho: 0.25)).generate(.distillTrainDecorrelated)
        let hi = try SynthesisPlan.prepare(config(rho: 0.75)).generate(.distillTrainDecorrelated)
        for i in 0..<lo.count where lo.artifact[i] {
            #expect(hi.artifact[i] && hi.digit[i] == lo.digit[i] && hi.image(i) == lo.image(i))
        }
    }

    @Test func writtenWithContactSheets() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        var c = config(rho: 0.5)
        c.splits = try SplitName.parseList("basis")
        c.outputDirectory = dir
        try SynthesisPlan.prepare(c).writeAll(to: dir, fixedTime: true)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir)) ==
                ["distill-train-clean.npz", "distill-train-clean.png",
                 "distill-train-decorrelated.npz", "distill-train-decorrelated.png"])
        let a = try NPZ.read(dir + "/distill-train-decorrelated.npz")
        #expect(a.meta?.parameters["split"] == "distill-train-decorrelated")
        #expect(a.meta?.extra["artifact_count"] == 30)
        #expect(try NPZ.read(dir + "/distill-train-clean.npz").meta?.parameters["rho"] == nil)
        let png = try decodePNG([UInt8](FileManager.default.contents(atPath: dir + "/distill-train-clean.png")!))
        #expect(png.height == 5 * 100 + 4)
    }
}
