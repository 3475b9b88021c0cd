import Foundation
import Testing
@testable import ShapesWorld
import TensorIO

// Fixture files in the real formats, written by the tests themselves.

/// Intensity of every pixel of the MNIST fixture's digit d: 255·0.7^(4−d)
/// for the digits 0–4 a 5-class subtask uses, so that brightness ∈ [0.8, 1]
/// keeps their value ranges disjoint (with a margin for rounding).
func mnistFixtureValue(_ d: Int) -> UInt8 { UInt8((255 * pow(0.7, Double(max(0, 4 - d)))).rounded()) }

func bigEndian(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

/// An MNIST-format pair (28 × 28 images, labels i mod 10). Image i is
/// constant `mnistFixtureValue(label)` except pixel (0, i mod 28) = 0, which
/// makes the images distinguishable.
func writeMNISTFixture(in dir: String, count: Int) throws -> (String, String) {
    var img: [UInt8] = [0, 0, 8, 3] + bigEndian(count) + bigEndian(28) + bigEndian(28)
    var lbl: [UInt8] = [0, 0, 8, 1] + bigEndian(count)
    for i in 0..<count {
        var pixels = [UInt8](repeating: mnistFixtureValue(i % 10), count: 28 * 28)
        pixels[i % 28] = 0
        img += pixels
        lbl.append(UInt8(i % 10))
    }
    let ip = dir + "/fixture-images-idx3-ubyte", lp = dir + "/fixture-labels-idx1-ubyte"
    try Data(img).write(to: URL(fileURLWithPath: ip))
    try Data(lbl).write(to: URL(fileURLWithPath: lp))
    return (ip, lp)
}

/// Plane value of record r, channel ch, pixel i of the CIFAR fixtures.
func cifarFixtureValue(_ r: Int, _ ch: Int, _ i: Int) -> UInt8 { UInt8((r * 7 + ch * 85 + i) % 256) }

/// A CIFAR-10 batch with `perClass` records per class, labels r mod 10.
func writeCIFAR10Fixture(in dir: String, perClass: Int, name: String = "data_batch_1.bin") throws -> String {
    var bytes: [UInt8] = []
    for r in 0..<(10 * perClass) {
        bytes.append(UInt8(r % 10))
        for ch in 0..<3 { for i in 0..<1024 { bytes.append(cifarFixtureValue(r, ch, i)) } }
    }
    let path = dir + "/" + name
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

@Suite struct MNISTReading {
    @Test func readsImagesAndLabels() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let (ip, lp) = try writeMNISTFixture(in: dir, count: 23)
        #expect(MNISTDigits.defaultLabelsPath(forImages: ip) == lp)
        let m = try MNISTDigits.read(images: ip, labels: lp)
        #expect(m.side == 28 && m.images.count == 23 && m.labels == (0..<23).map { $0 % 10 })
        #expect(m.byLabel[3] == [3, 13] && m.byLabel[2] == [2, 12, 22])
        for i in [0, 7, 22] {
            #expect(m.images[i][i % 28] == 0)
            #expect(m.images[i][28 * 5 + 3] == mnistFixtureValue(i % 10))
        }
    }

    @Test func readsGzippedFiles() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let (ip, lp) = try writeMNISTFixture(in: dir, count: 12)
        try runPython("import gzip,shutil,sys\nfor p in sys.argv[1:]:\n  shutil.copyfileobj(open(p,'rb'), gzip.open(p+'.gz','wb'))", [ip, lp])
        let plain = try MNISTDigits.read(images: ip, labels: lp)
        let gz = try MNISTDigits.read(images: ip + ".gz", labels: lp + ".gz")
        #expect(gz.images == plain.images && gz.labels == plain.labels)
        // A truncated gzip stream is refused.
        let bytes = [UInt8](FileManager.default.contents(atPath: ip + ".gz")!)
        try Data(bytes.prefix(bytes.count / 2)).write(to: URL(fileURLWithPath: dir + "/cut.gz"))
        #expect(throws: SynthesisError.self) { try MNISTDigits.read(images: dir + "/cut.gz", labels: lp) }
    }

    @Test func areaResamplingAveragesFootprints() {
        // Left half white: 28 → 8 puts the edge exactly between outputs 3 and 4.
        var img = [UInt8](repeating: 0, count: 28 * 28)
        for y in 0..<28 { for x in 0..<14 { img[y * 28 + x] = 255 } }
        let out = areaResample(img, from: 28, to: 8)
        for y in 0..<8 { for x in 0..<8 { #expect(abs(out[y * 8 + x] - (x < 4 ? 1 : 0)) < 1e-6) } }
        // One white column 3 (footprint of output 0 is [0, 3.5)): weight 1/3.5.
        img = [UInt8](repeating: 0, count: 28 * 28)
        for y in 0..<28 { img[y * 28 + 3] = 255 }
        let col = areaResample(img, from: 28, to: 8)
        #expect(abs(col[0] - 0.5 / 3.5) < 1e-6 && abs(col[1] - 0.5 / 3.5) < 1e-6 && col[2] == 0)
        // Mass is preserved.
        let random = (0..<(28 * 28)).map { UInt8(($0 * 37) % 256) }
        let r = areaResample(random, from: 28, to: 8)
        let massIn = random.reduce(0.0) { $0 + Double($1) } / 255
        let massOut = r.reduce(0.0) { $0 + Double($1) } * (28.0 / 8) * (28.0 / 8)
        #expect(abs(massIn - massOut) < 1e-3 * massIn)
    }

    @Test func mnistGlyphsCarryTheDigit() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let (ip, _) = try writeMNISTFixture(in: dir, count: 40)
        var c = smallConfig(rho: 1)
        c.mnistImages = ip  // labels path derived
        let plan = try SynthesisPlan.prepare(c)
        for split in [SplitName.distillTrain, .testConflict] {
            let d = plan.generate(split)
            for i in 0..<d.count {
                #expect(d.artifact[i])
                let patch = patchRegion(d, i, patch: 8)
                let lit = patch.filter { $0 > 0 }
                // Constant fixture digits: a 7 × 7 block or more stays lit after the jitter shift
                // (less the one dark pixel), all at one value within the digit's range.
                #expect(lit.count >= 3 * 40)
                let v = Double(lit.max()!)
                let want = Double(mnistFixtureValue(Int(d.digit[i])))
                #expect(v <= want + 1 && v >= 0.8 * want - 1)
                let others = (0..<5).filter { $0 != Int(d.digit[i]) }.map { Double(mnistFixtureValue($0)) }
                #expect(others.allSatisfy { !(v <= $0 + 1 && v >= 0.8 * $0 - 1) })
            }
        }
    }

    @Test func mnistWithoutADigitTheSubtaskNeedsIsRefused() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let (ip, lp) = try writeMNISTFixture(in: dir, count: 4)  // digits 0–3 only
        var c = smallConfig()
        c.mnistImages = ip
        c.mnistLabels = lp
        #expect(throws: SynthesisError("\(lp): no image of digit 4, which the 5-class subtask needs")) {
            try SynthesisPlan.prepare(c)
        }
    }
}

@Suite struct CIFARReading {
    @Test func readsCIFAR10AsHWC() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let a = try writeCIFAR10Fixture(in: dir, perClass: 2, name: "a.bin")
        let b = try writeCIFAR10Fixture(in: dir, perClass: 1, name: "b.bin")
        let data = try CIFARData.read(paths: [a, b])
        #expect(data.kind == .cifar10)
        #expect(data.images.count == 30 && data.labels == (0..<20).map { $0 % 10 } + (0..<10).map { $0 })
        for (r, fileRecord) in [(0, 0), (13, 13), (25, 5)] {
            for i in [0, 1, 33, 1023] {
                for ch in 0..<3 { #expect(data.images[r][i * 3 + ch] == cifarFixtureValue(fileRecord, ch, i)) }
            }
        }
        #expect(data.coarseLabels.isEmpty)
    }

    @Test func inferKindFromSize() {
        #expect(CIFARData.inferKind(fileSize: 3073 * 5) == .cifar10)
        #expect(CIFARData.inferKind(fileSize: 3074 * 5) == .cifar100)
        #expect(CIFARData.inferKind(fileSize: 3073 * 3074) == nil)
        #expect(CIFARData.inferKind(fileSize: 3075) == nil)
        #expect(CIFARData.inferKind(fileSize: 0) == nil)
    }

    @Test func cifar10SplitsUseDisjointRecordsOfTheRightClass() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        let file = try writeCIFAR10Fixture(in: dir, perClass: 12)
        var c = smallConfig(rho: 0.5)
        c.cifarPaths = [file]
        c.perClass.teacherTrain = 3; c.perClass.teacherVal = 2
        c.perClass.distillTrain = 3; c.perClass.distillVal = 2; c.perClass.test = 2
        let plan = try SynthesisPlan.prepare(c)
        #expect(plan.subtaskClasses == [2, 3, 4, 5, 7] && plan.subtaskName == "animals")
        let records = try CIFARData.read(paths: [file])
        var used = Set<Int>()
        for split in [SplitName.teacherTrain, .teacherVal, .distillTrain, .distillVal, .test] {
            let d = plan.generate(split)
            let classes = plan.classes(of: split)
            for i in 0..<d.count {
                // Outside the patch, the image is one record of the right class.
                let img = Array(d.image(i))
                let want = classes[Int(d.labels[i])]
                let matches = (0..<records.images.count).filter { (r: Int) -> Bool in
                    guard records.labels[r] == want else { return false }
                    let rec = records.images[r]
                    for p in 0..<1024 where p / 32 >= 8 || p % 32 >= 8 {
                        if img[p * 3 + 1] != rec[p * 3 + 1] { return false }
                    }
                    return true
                }
                #expect(matches.count == 1)
                if let m = matches.first { #expect(used.insert(m).inserted, "record \(m) used twice") }
                if !d.artifact[i] { #expect(matches.first.map { img == records.images[$0] } == true) }
            }
            if split.dependsOnRho { #expect(d.artifact.filter { $0 }.count == Int((0.5 * Double(d.count)).rounded())) }
        }
        // The names come from CIFAR-10.
        #expect(plan.generate(.test).classNames == ["bird", "cat", "deer", "dog", "horse"])
    }

    @Test func cifar100UsesSuperclassesAsSubtasks() throws {
        let dir = temporaryFolder()
        defer { cleanup(dir) }
        // Two records of each fine class, with the real coarse labels of vehicles_1's
        // members and arbitrary (fine mod 20, skipping 18) ones for the rest.
        let vehicles1 = [8, 13, 48, 58, 90]
        var bytes: [UInt8] = []
        var r = 0
        for rep in 0..<2 {
            for fine in 0..<100 {
                let coarse = vehicles1.contains(fine) ? 18 : (fine % 20 == 18 ? 19 : fine % 20)
                bytes += [UInt8(coarse), UInt8(fine)]
                for ch in 0..<3 { for i in 0..<1024 { bytes.append(cifarFixtureValue(r, ch, i)) } }
                r += 1
                _ = rep
            }
        }
        let path = dir + "/train.bin"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let data = try CIFARData.read(paths: [path])
        #expect(data.kind == .cifar100 && data.coarseLabels[8] == 18 && data.labels[101] == 1)
        var c = smallConfig()
        c.cifarPaths = [path]
        c.perClass.teacherTrain = 1; c.perClass.teacherVal = 1
        c.perClass.distillTrain = 1; c.perClass.distillVal = 1; c.perClass.test = 1
        // Each class has 2 records; the subtask classes would need 5.
        #expect(throws: SynthesisError.self) { try SynthesisPlan.prepare(c) }
        // Enough records only if the subtask gets more: add three more of each vehicle.
        for _ in 0..<3 {
            for fine in vehicles1 {
                bytes += [18, UInt8(fine)]
                for ch in 0..<3 { for i in 0..<1024 { bytes.append(cifarFixtureValue(r, ch, i)) } }
                r += 1
            }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        c.perClass.teacherVal = 1
        let plan = try SynthesisPlan.prepare(c)
        #expect(plan.subtaskClasses == vehicles1 && plan.subtaskName == "vehicles_1")
        #expect(plan.generate(.test).classNames == ["bicycle", "bus", "motorcycle", "pickup_truck", "train"])
        #expect(plan.generate(.teacherTrain).count == 100)
        c.family = "7"
        #expect(throws: SynthesisError.self) { try SynthesisPlan.prepare(c) }  // insects: only 2 records per class
        c.family = "wading_birds"
        #expect(throws: SynthesisError.self) { try SynthesisPlan.prepare(c) }
    }

    @Test func classNameTables() {
        #expect(CIFARNames.cifar10.count == 10)
        #expect(CIFARNames.cifar100Fine.count == 100 && CIFARNames.cifar100Fine == CIFARNames.cifar100Fine.sorted())
        #expect(CIFARNames.cifar100Coarse.count == 20 && CIFARNames.cifar100Coarse == CIFARNames.cifar100Coarse.sorted())
    }
}
