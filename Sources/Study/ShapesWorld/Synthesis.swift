import Foundation
import SeededRNG
import TensorIO

/// Where base images come from.
public enum BaseSource: Sendable {
    case shapes
    case cifar(CIFARData)

    public var name: String {
        switch self {
        case .shapes: return "shapes"
        case .cifar(let d): return d.kind.rawValue
        }
    }
}

/// One split in memory, in class-major order (all images of label 0, then
/// label 1, ...; within a class by base index k = 0, 1, ...).
public struct SplitData: Sendable {
    public let name: SplitName
    public let imageSize: Int
    /// N × H × W × 3 bytes (HWC); intensity = byte / 255.
    public var images: [UInt8]
    public var labels: [Int32]
    public var artifact: [Bool]
    /// The digit in the patch, −1 without artifact.
    public var digit: [Int32]
    /// class · 2 + artifact state.
    public var group: [Int32]
    /// Names of labels 0..<K.
    public let classNames: [String]
    /// Images per label.
    public let classCounts: [Int]
    /// Per label, the digit whose patch agrees with the label (the label
    /// itself in subtask splits, g for glyph class g of the digit-aware
    /// teacher world, −1 for classes that never carry a patch). Contact
    /// sheets frame a patch by whether its digit equals this.
    public let agreeingDigit: [Int32]
    /// With MNIST digits: the MNIST image in each patch (an index into the
    /// pooled images, −1 without artifact); nil with the font.
    public var digitImage: [Int32]? = nil

    public var count: Int { labels.count }

    /// The bytes of image i.
    public func image(_ i: Int) -> ArraySlice<UInt8> {
        let n = imageSize * imageSize * 3
        return images[(i * n)..<((i + 1) * n)]
    }

    /// The artifact's tensor entries: `images` (uint8 N×H×W×3), `labels`,
    /// `digit`, `group` (int32), `artifact` (bool), and with MNIST digits
    /// `digit_image` (int32).
    public func tensors(meta: ArtifactMeta?) -> Artifact {
        var a = Artifact(meta: meta)
        a.set("images", NDArray(images, shape: [count, imageSize, imageSize, 3]))
        a.set("labels", NDArray(labels, shape: [count]))
        a.set("artifact", NDArray(artifact, shape: [count]))
        a.set("digit", NDArray(digit, shape: [count]))
        a.set("group", NDArray(group, shape: [count]))
        if let digitImage { a.set("digit_image", NDArray(digitImage, shape: [count])) }
        return a
    }
}

/// A checked configuration with its inputs loaded: `prepare` validates
/// everything the CLI could be given (the CLI calls it before writing
/// anything); `generate` renders a split.
///
/// Determinism and "like compared with like": image k of class c in base
/// pool P is rendered from its own generator RNG(seed, stream(base, P, c, k)),
/// so it does not depend on ρ, on the other counts or on which splits are
/// written. Which images carry the artifact is the first round(ρ·N) entries
/// of a seeded permutation of the split (stream(contamination, split)), so
/// raising ρ only adds artifacts; the patch's own draws (jitter, brightness,
/// random digit) come from a third stream per image, stream(patch, split, c, k).
/// Glyph class g of the digit-aware teacher world draws its base shape class
/// and scene from stream(glyphBase, pool, 20 + g, k); distill-train-
/// decorrelated draws its digits from stream(digit, split, c, k).
public struct SynthesisPlan: Sendable {
    public let config: SynthesisConfig
    public let source: BaseSource
    /// Names of the teacher's classes: the source's classes, followed by the
    /// glyph family in the digit-aware teacher world.
    public let allClassNames: [String]
    /// Number of the source's own classes (20 in the shapes world); subtask
    /// classes are among them.
    public let sourceClassCount: Int
    /// Global ids of the subtask's classes; label i of a subtask split is
    /// class `subtaskClasses[i]`.
    public let subtaskClasses: [Int]
    /// The subtask's name (family, CIFAR group or superclass, or "custom").
    public let subtaskName: String
    public let painter: PatchPainter
    /// The MNIST files the digits come from (empty for the font), in the
    /// order their images are pooled.
    public let digitFiles: [MNISTFiles]
    /// CIFAR: per class, the record indices in a seeded order; teacher-val
    /// takes the first block, teacher-train the next, then test,
    /// distill-val, distill-train (disjoint).
    let cifarOrder: [[Int]]

    public var patchSize: Int { config.imageSize / 4 }

    /// Checks the configuration and reads the input files. Every problem is
    /// a `SynthesisError`; the output folder (if set) is checked last and
    /// created if missing.
    public static func prepare(_ config: SynthesisConfig) throws -> SynthesisPlan {
        guard config.rho.isFinite, config.rho >= 0, config.rho <= 1 else {
            throw SynthesisError(usage: "--rho must be in [0, 1], got \(config.rho)")
        }
        guard SynthesisConfig.imageSizeRange.contains(config.imageSize), config.imageSize % 4 == 0 else {
            throw SynthesisError(usage: "--image-size must be a multiple of 4 in \(SynthesisConfig.imageSizeRange.lowerBound)…\(SynthesisConfig.imageSizeRange.upperBound) (the patch is a quarter of the side and must hold a 5 × 7 digit), got \(config.imageSize)")
        }
        for split in [SplitName.teacherTrain, .teacherVal, .distillTrain, .distillVal, .test] {
            let n = config.perClass[split]
            guard n > 0 else {
                throw SynthesisError(usage: "--\(split.basePool.rawValue)-per-class must be positive, got \(n)")
            }
            guard n <= 1_000_000 else {
                throw SynthesisError(usage: "--\(split.basePool.rawValue)-per-class \(n) is more than 1,000,000")
            }
        }
        guard config.gratingContrast.lowerBound > 0, config.gratingContrast.upperBound <= 1 else {
            throw SynthesisError(usage: "--grating-contrast must be LO,HI with 0 < LO ≤ HI ≤ 1, got \(config.gratingContrast)")
        }
        guard config.imbalance.isFinite, config.imbalance >= 1 else {
            throw SynthesisError(usage: "--imbalance must be a finite factor ≥ 1 (1 = balanced), got \(config.imbalance)")
        }
        guard !config.splits.isEmpty else { throw SynthesisError(usage: "--splits: no split chosen") }

        // Base images and the class catalogue.
        let source: BaseSource
        var cifarOrder: [[Int]] = []
        if config.cifarPaths.isEmpty {
            if config.cifarKind != nil { throw SynthesisError(usage: "--cifar-kind needs --cifar files") }
            source = .shapes
        } else {
            guard config.imageSize == CIFARData.side else {
                throw SynthesisError(usage: "--image-size must be 32 with CIFAR images, got \(config.imageSize)")
            }
            let data = try CIFARData.read(paths: config.cifarPaths, kind: config.cifarKind)
            source = .cifar(data)
        }
        let sourceNames: [String]
        switch source {
        case .shapes: sourceNames = ShapesWorld.classNames
        case .cifar(let d): sourceNames = d.kind.classNames
        }
        var allNames = sourceNames
        if config.teacherWorld == .digitAware {
            guard case .shapes = source else {
                throw SynthesisError(usage: "--teacher-world digit-aware needs the shapes world (its glyph family draws random shape classes), not CIFAR images")
            }
            allNames += ShapesWorld.glyphClassNames
        }

        // The subtask: always among the source's classes, never the glyphs.
        let (subtask, subtaskName) = try resolveSubtask(config: config, source: source, classCount: sourceNames.count)

        // CIFAR: enough records per class for disjoint pools.
        if case .cifar(let data) = source {
            var byClass = [[Int]](repeating: [], count: allNames.count)
            for (i, l) in data.labels.enumerated() { byClass[l].append(i) }
            let teacherNeed = config.perClass.teacherTrain + config.perClass.teacherVal
            let subtaskNeed = teacherNeed + config.perClass.test + config.perClass.distillVal + config.perClass.distillTrain
            for c in 0..<sourceNames.count {
                let need = subtask.contains(c) ? subtaskNeed : teacherNeed
                guard byClass[c].count >= need else {
                    throw SynthesisError("CIFAR class \(c) (\(allNames[c])) has \(byClass[c].count) images in the given batches, the per-class counts need \(need) (teacher-val + teacher-train\(subtask.contains(c) ? " + test + distill-val + distill-train" : ""), disjoint); give more batch files or smaller counts")
                }
                var rng = RNG(seed: config.seed, stream: StreamKey.make(.cifarOrder, 0, UInt64(c), 0))
                let perm = rng.permutation(byClass[c].count)
                cifarOrder.append(perm.map { byClass[c][$0] })
            }
        }

        // Glyphs. Each digit a split can show needs two MNIST images at
        // least: one for the teacher and distillation pool, one for the test pool.
        var glyphs = GlyphSource.font
        var digitFiles: [MNISTFiles] = []
        if let path = config.mnistImages {
            digitFiles = try MNISTDigits.locate(path, labels: config.mnistLabels)
            let digits = try MNISTDigits.read(pairs: digitFiles)
            let labelsPath = digitFiles.map(\.labels).joined(separator: ", ")
            func need(_ count: Int, _ who: String) throws {
                if let d = (0..<count).first(where: { digits.byLabel[$0].isEmpty }) {
                    throw SynthesisError("\(labelsPath): no image of digit \(d), which \(who) needs")
                }
                if let d = (0..<count).first(where: { digits.byLabel[$0].count < 2 }) {
                    throw SynthesisError("\(labelsPath): one image of digit \(d), which \(who) needs twice (disjoint distillation and test pools)")
                }
            }
            try need(subtask.count, "the \(subtask.count)-class subtask")
            if config.teacherWorld == .digitAware {
                try need(ShapesWorld.glyphClassCount, "the glyph family of --teacher-world digit-aware")
            }
            glyphs = .mnist(digits)
        } else if config.mnistLabels != nil {
            throw SynthesisError(usage: "--mnist-labels needs --mnist or --digits mnist:FILE")
        }

        // Sizes: a split must fit in memory and in an Int32-indexed tensor.
        let pixelsPerImage = config.imageSize * config.imageSize * 3
        for split in config.splits {
            let k = split.isTeacher ? allNames.count : subtask.count
            let n = config.perClass[split] * k
            guard n.multipliedReportingOverflow(by: pixelsPerImage).partialValue <= 1 << 33, n <= Int(Int32.max) else {
                throw SynthesisError("split \(split.rawValue): \(n) images of \(config.imageSize)² pixels is too large")
            }
        }

        let plan = SynthesisPlan(config: config, source: source, allClassNames: allNames,
                             sourceClassCount: sourceNames.count, subtaskClasses: subtask,
                             subtaskName: subtaskName,
                             painter: PatchPainter(imageSize: config.imageSize, glyphs: glyphs, seed: config.seed),
                             digitFiles: digitFiles, cifarOrder: cifarOrder)
        if let m = config.minPerClass {
            guard m >= 1 else { throw SynthesisError(usage: "--min-per-class must be at least 1, got \(m)") }
            try plan.checkMinimumPerClass(m)
        }
        if let dir = config.outputDirectory { try checkWritableDirectory(dir) }
        return plan
    }

    static func resolveSubtask(config: SynthesisConfig, source: BaseSource, classCount: Int) throws -> ([Int], String) {
        if let explicit = config.subtaskClasses {
            if config.family != nil { throw SynthesisError("give either --family or --subtask-classes, not both") }
            guard (2...10).contains(explicit.count) else {
                throw SynthesisError(usage: "--subtask-classes needs 2 to 10 classes (one digit each), got \(explicit.count)")
            }
            guard Set(explicit).count == explicit.count else { throw SynthesisError(usage: "--subtask-classes has a repeated class") }
            for c in explicit where c < 0 || c >= classCount {
                throw SynthesisError(usage: "--subtask-classes: class \(c) is not in 0..<\(classCount)")
            }
            return (explicit, "custom")
        }
        switch source {
        case .shapes:
            let name = config.family ?? Family.gratings.rawValue
            guard let f = Family(rawValue: name) else {
                throw SynthesisError("unknown family '\(name)' (known: \(Family.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return (f.classIDs, f.rawValue)
        case .cifar(let data) where data.kind == .cifar10:
            let name = config.family ?? "animals"
            guard let ids = CIFARNames.cifar10Families[name] else {
                throw SynthesisError("unknown CIFAR-10 family '\(name)' (known: \(CIFARNames.cifar10Families.keys.sorted().joined(separator: ", ")); or give --subtask-classes)")
            }
            return (ids, name)
        case .cifar(let data):
            let name = config.family ?? "vehicles_1"
            let coarse: Int
            if let i = CIFARNames.cifar100Coarse.firstIndex(of: name) { coarse = i }
            else if let i = Int(name), (0..<20).contains(i) { coarse = i }
            else {
                throw SynthesisError("unknown CIFAR-100 superclass '\(name)' (known: 0–19 or \(CIFARNames.cifar100Coarse.joined(separator: ", ")))")
            }
            var fine = Set<Int>()
            for (l, c) in zip(data.labels, data.coarseLabels) where c == coarse { fine.insert(l) }
            guard (2...10).contains(fine.count) else {
                throw SynthesisError("CIFAR-100 superclass \(CIFARNames.cifar100Coarse[coarse]) has \(fine.count) fine classes in the given batches; need 2 to 10")
            }
            return (fine.sorted(), CIFARNames.cifar100Coarse[coarse])
        }
    }

    /// Global class ids of a split's labels.
    public func classes(of split: SplitName) -> [Int] {
        split.isTeacher ? Array(0..<allClassNames.count) : subtaskClasses
    }

    /// Images per label of a split: the per-class count, thinned to the
    /// long-tail profile n_c = max(1, round(n · r^(−c/(K−1)))) in training
    /// splits. In teacher-train the profile runs over the source's classes
    /// (`--imbalance-classes all`; the glyph family of the digit-aware
    /// teacher world keeps n per class, so that its shape classes hold
    /// exactly the standard world's images) or over the subtask's classes
    /// in subtask order, every other class keeping n (`subtask`).
    /// Validation and test splits are never thinned: worst-class accuracy
    /// is measured on balanced data.
    public func classCounts(of split: SplitName) -> [Int] {
        let all = classes(of: split).count
        let n = config.perClass[split]
        guard split.isTraining, config.imbalance > 1 else { return [Int](repeating: n, count: all) }
        let rank = profileRanks(of: split)
        let k = rank.compactMap { $0 }.count
        guard k > 1 else { return [Int](repeating: n, count: all) }
        return rank.map { r in
            guard let r else { return n }
            return Self.tailCount(n: n, factor: config.imbalance, rank: r, of: k)
        }
    }

    /// Per label of a training split, its position c in the long-tail
    /// profile, nil for a label the profile leaves at full size.
    func profileRanks(of split: SplitName) -> [Int?] {
        let all = classes(of: split).count
        if split.isTeacher && config.imbalanceClasses == .subtask {
            return (0..<all).map { subtaskClasses.firstIndex(of: $0) }
        }
        let k = split.isTeacher ? sourceClassCount : all
        return (0..<all).map { $0 < k ? $0 : nil }
    }

    /// n_c = max(1, round(n · r^(−c/(K−1)))).
    static func tailCount(n: Int, factor: Double, rank c: Int, of k: Int) -> Int {
        max(1, Int((Double(n) * pow(factor, -Double(c) / Double(k - 1))).rounded()))
    }

    /// The smallest per-class count whose rarest class keeps at least `m`
    /// images under factor r (what to suggest when a configuration is refused).
    static func perClassNeeded(min m: Int, factor: Double, classes k: Int) -> Int {
        var n = max(m, Int(((Double(m) - 0.5) * factor).rounded(.down)))
        while tailCount(n: n, factor: factor, rank: k - 1, of: k) < m { n += 1 }
        return n
    }

    /// `--min-per-class`: refuses a written training split whose rarest
    /// class would keep fewer than `m` images, naming the class and the
    /// per-class count that would reach the floor.
    func checkMinimumPerClass(_ m: Int) throws {
        guard config.imbalance > 1 else { return }
        for split in config.splits where split.isTraining {
            let counts = classCounts(of: split)
            guard let low = counts.min(), low < m, let c = counts.firstIndex(of: low) else { continue }
            let names = split.isTeacher ? allClassNames : subtaskClasses.map { allClassNames[$0] }
            let k = profileRanks(of: split).compactMap { $0 }.count
            let need = Self.perClassNeeded(min: m, factor: config.imbalance, classes: max(k, 2))
            throw SynthesisError(usage: "--imbalance \(String(format: "%g", config.imbalance)) leaves class \(names[c]) of \(split.rawValue) with \(low) image\(low == 1 ? "" : "s"), fewer than --min-per-class \(m); raise --\(split.basePool.rawValue)-per-class to at least \(need) (now \(config.perClass[split])), lower --imbalance, or lower --min-per-class")
        }
    }

    /// How a split's patches are chosen.
    enum PatchRule: String {
        case none = "none"
        case digitIsLabel = "digit = label on a fraction rho"
        case randomDigit = "uniform random digit on a fraction rho"
        case conflict = "every image, digit uniform over the digits != label"
        case independentDigit = "the images of distill-train with the artifact (a fraction rho), digit uniform over 0..K-1 from its own stream, independent of the label"
        case glyphFamily = "glyph classes 20-24 only (a random shape class each), digit = glyph index; shape classes clean"
    }

    func patchRule(_ split: SplitName) -> PatchRule {
        switch split {
        case .teacherTrain, .teacherVal: return config.teacherWorld == .digitAware ? .glyphFamily : .none
        case .testClean, .distillTrainClean: return .none
        case .distillTrain: return .digitIsLabel
        case .distillVal: return config.valDecorrelated ? .randomDigit : .digitIsLabel
        case .test: return .randomDigit
        case .testConflict: return .conflict
        case .distillTrainDecorrelated: return .independentDigit
        }
    }

    /// Renders a split. `progress(done, total)` is called now and then from
    /// worker threads (serialised).
    public func generate(_ split: SplitName, progress: (Int, Int) -> Void = { _, _ in }) -> SplitData {
        let classIDs = classes(of: split)
        let counts = classCounts(of: split)
        let n = counts.reduce(0, +)
        let size = config.imageSize
        let pixels = size * size * 3

        var labels = [Int32](), ks = [Int]()
        labels.reserveCapacity(n); ks.reserveCapacity(n)
        for (label, count) in counts.enumerated() {
            for k in 0..<count { labels.append(Int32(label)); ks.append(k) }
        }

        // Base images, in parallel chunks; each image has its own generator.
        var images = [UInt8](repeating: 0, count: n * pixels)
        let pool = StreamKey.name(split.basePool.rawValue)
        let chunk = 64
        let chunks = (n + chunk - 1) / chunk
        let lock = NSLock()
        var done = 0
        images.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            labels.withUnsafeBufferPointer { lab in
                ks.withUnsafeBufferPointer { kk in
                    DispatchQueue.concurrentPerform(iterations: chunks) { ci in
                        let work = UnsafeMutableBufferPointer<Float>.allocate(capacity: pixels)
                        defer { work.deallocate() }
                        let canvas = Canvas(size: size, pixels: work)
                        let lo = ci * chunk, hi = min(n, lo + chunk)
                        for i in lo..<hi {
                            let cls = classIDs[Int(lab[i])]
                            renderBase(classID: cls, pool: pool, k: kk[i], canvas: canvas, into: base + i * pixels)
                        }
                        lock.lock()
                        done += hi - lo
                        progress(done, n)
                        lock.unlock()
                    }
                }
            }
        }

        // The artifact.
        // The artifact. Mask and patch draws come from the streams of
        // `split.artifactSource` (distill-train for the decorrelated basis
        // split, which so differs from distill-train only in the digits).
        let rule = patchRule(split)
        let glyphs = ShapesWorld.glyphClassIDs
        var artifact = [Bool](repeating: false, count: n)
        switch rule {
        case .none: break
        case .conflict: artifact = [Bool](repeating: true, count: n)
        case .glyphFamily:
            for i in 0..<n { artifact[i] = glyphs.contains(classIDs[Int(labels[i])]) }
        case .digitIsLabel, .randomDigit, .independentDigit:
            let m = Self.contaminatedCount(rho: config.rho, n: n)
            var rng = RNG(seed: config.seed, stream: StreamKey.make(.contamination, StreamKey.name(split.artifactSource.rawValue), 0, 0))
            let perm = rng.permutation(n)
            for j in 0..<m { artifact[perm[j]] = true }
        }
        var digit = [Int32](repeating: -1, count: n)
        var digitImage = [Int32](repeating: -1, count: n)
        let part = split.digitPool
        let splitKey = StreamKey.name(split.rawValue)
        let patchKey = StreamKey.name(split.artifactSource.rawValue)
        let kCount = classIDs.count
        images.withUnsafeMutableBufferPointer { out in
            for i in 0..<n where artifact[i] {
                let label = Int(labels[i])
                let cls = classIDs[label]
                var rng = RNG(seed: config.seed, stream: StreamKey.make(.patch, patchKey, UInt64(cls), UInt64(ks[i])))
                let d: Int
                let draw: PatchPainter.Draw
                if rule == .glyphFamily {
                    // Glyph g shows digit g; its draws are those of a label g of 5.
                    let g = cls - glyphs.lowerBound
                    draw = PatchPainter.draw(label: g, k: ShapesWorld.glyphClassCount, rng: &rng)
                    d = g
                } else {
                    draw = PatchPainter.draw(label: label, k: kCount, rng: &rng)
                    switch rule {
                    case .digitIsLabel: d = label
                    case .randomDigit: d = draw.randomDigit
                    case .conflict: d = draw.conflictDigit
                    case .independentDigit:
                        var digitRNG = RNG(seed: config.seed, stream: StreamKey.make(.digit, splitKey, UInt64(cls), UInt64(ks[i])))
                        d = digitRNG.int(below: kCount)
                    case .none, .glyphFamily: d = -1
                    }
                }
                digit[i] = Int32(d)
                digitImage[i] = Int32(painter.apply(digit: d, draw: draw, part: part, to: out.baseAddress! + i * pixels))
            }
        }
        let group = (0..<n).map { labels[$0] * 2 + (artifact[$0] ? 1 : 0) }
        let names = classIDs.map { allClassNames[$0] }
        let agreeing: [Int32] = classIDs.indices.map { label in
            if !split.isTeacher { return Int32(label) }
            return glyphs.contains(classIDs[label]) ? Int32(classIDs[label] - glyphs.lowerBound) : -1
        }
        return SplitData(name: split, imageSize: size, images: images, labels: labels, artifact: artifact,
                         digit: digit, group: group, classNames: names, classCounts: counts, agreeingDigit: agreeing,
                         digitImage: painter.pools == nil ? nil : digitImage)
    }

    /// round(ρ·N), half away from zero.
    public static func contaminatedCount(rho: Double, n: Int) -> Int {
        min(n, max(0, Int((rho * Double(n)).rounded())))
    }

    /// Renders base image k of class `classID` from pool `pool` as bytes.
    func renderBase(classID: Int, pool: UInt64, k: Int, canvas: Canvas, into out: UnsafeMutablePointer<UInt8>) {
        switch source {
        case .shapes where classID >= ShapesWorld.classCount:
            var (shape, rng) = glyphBase(classID: classID, pool: pool, k: k)
            let scene = Scene.make(classID: shape, size: config.imageSize, gratingContrast: config.gratingContrast, rng: &rng)
            scene.draw(on: canvas, rng: &rng)
            canvas.quantise(into: out)
        case .shapes:
            var rng = RNG(seed: config.seed, stream: StreamKey.make(.base, pool, UInt64(classID), UInt64(k)))
            let scene = Scene.make(classID: classID, size: config.imageSize, gratingContrast: config.gratingContrast, rng: &rng)
            scene.draw(on: canvas, rng: &rng)
            canvas.quantise(into: out)
        case .cifar(let data):
            let record = cifarOrder[classID][cifarOffset(pool: pool, classID: classID) + k]
            data.images[record].withUnsafeBufferPointer { src in
                out.update(from: src.baseAddress!, count: src.count)
            }
        }
    }

    /// Base image k of glyph class `classID` (20–24) in pool `pool`: the
    /// shape class drawn uniformly from the 20 on the image's own stream
    /// (not the stream of any shape-class image, so no image repeats), and
    /// that stream, positioned to render the scene.
    func glyphBase(classID: Int, pool: UInt64, k: Int) -> (shapeClass: Int, rng: RNG) {
        var rng = RNG(seed: config.seed, stream: StreamKey.make(.glyphBase, pool, UInt64(classID), UInt64(k)))
        let shape = rng.int(below: ShapesWorld.classCount)
        return (shape, rng)
    }

    /// First index of a pool's block in a class's CIFAR order.
    func cifarOffset(pool: UInt64, classID: Int) -> Int {
        let c = config.perClass
        switch pool {
        case StreamKey.name(SplitName.teacherVal.rawValue): return 0
        case StreamKey.name(SplitName.teacherTrain.rawValue): return c.teacherVal
        case StreamKey.name(SplitName.test.rawValue): return c.teacherVal + c.teacherTrain
        case StreamKey.name(SplitName.distillVal.rawValue): return c.teacherVal + c.teacherTrain + c.test
        default: return c.teacherVal + c.teacherTrain + c.test + c.distillVal
        }
    }

    /// The split's metadata: the parameters it depends on (ρ only for
    /// ρ-dependent splits; family/subtask only for subtask splits), class
    /// names and counts in `extra`.
    public func meta(for data: SplitData, created: Date = Date(), inputs: [String: String] = [:]) -> ArtifactMeta {
        let split = data.name
        var p: [String: JSON] = [
            "split": .string(split.rawValue),
            "source": .string(source.name),
            "image_size": .number(Double(config.imageSize)),
            "grating_contrast": .array([.number(Double(config.gratingContrast.lowerBound)),
                                        .number(Double(config.gratingContrast.upperBound))]),
            "seed": .number(Double(config.seed)),
            "per_class": .number(Double(config.perClass[split])),
            "glyphs": .string(painter.pools == nil ? "font5x7" : "mnist"),
        ]
        if split.isTraining { p["imbalance"] = .number(config.imbalance) }
        // Recorded only when not the default, so that earlier files stay
        // byte-identical. Not named subtask_classes: train-teacher refuses a
        // training split that is a subtask split.
        if split.isTraining, config.imbalanceClasses != .all {
            p["imbalance_classes"] = .string(config.imbalanceClasses.rawValue)
            if split.isTeacher {
                p["imbalance_subtask"] = .string(subtaskName)
                p["imbalance_class_ids"] = .array(subtaskClasses.map { .number(Double($0)) })
            }
        }
        // MNIST digits: which pool the patches draw from (font: nothing new,
        // so the font world's files stay byte-identical).
        if let pools = painter.pools, patchRule(split) != .none {
            let part = split.digitPool
            p["digit_pool"] = .string(part.rawValue)
            p["digit_pool_rule"] = .string(DigitPools.rule)
            p["digit_pool_sizes"] = .array(pools.sizes(part).map { .number(Double($0)) })
            p["digit_pool_sha256"] = .string(pools.digest(part))
            p["digit_pool_disjoint_from_sha256"] = .string(pools.digest(part == .test ? .train : .test))
            p["mnist_files"] = .array(digitFiles.map { .string(($0.images as NSString).lastPathComponent) })
            p["mnist_count"] = .number(Double(pools.sizes(.train).reduce(0, +) + pools.sizes(.test).reduce(0, +)))
        }
        // Only a non-standard world is recorded, so that the standard world's
        // files stay byte-identical to those written before issue 11.
        if split.isTeacher, config.teacherWorld != .standard {
            p["teacher_world"] = .string(config.teacherWorld.rawValue)
            p["glyph_classes"] = .array(ShapesWorld.glyphClassIDs.map { .number(Double($0)) })
            p["artifact_rule"] = .string(patchRule(split).rawValue)
        }
        if !split.isTeacher {
            p["family"] = .string(subtaskName)
            p["subtask_classes"] = .array(subtaskClasses.map { .number(Double($0)) })
            p["artifact_rule"] = .string(patchRule(split).rawValue)
        }
        if SplitName.basis.contains(split) { p["base_split"] = .string(split.basePool.rawValue) }
        if split.dependsOnRho { p["rho"] = .number(config.rho) }
        if split == .distillVal { p["val_decorrelated"] = .bool(config.valDecorrelated) }
        if case .cifar = source, !split.isTeacher {
            // The subtask pools follow the teacher pools in each class's order.
            p["teacher_train_per_class"] = .number(Double(config.perClass.teacherTrain))
            p["teacher_val_per_class"] = .number(Double(config.perClass.teacherVal))
            p["test_per_class"] = .number(Double(config.perClass.test))
            p["distill_val_per_class"] = .number(Double(config.perClass.distillVal))
        }
        let extra: [String: JSON] = [
            "classes": .array(data.classNames.map { .string($0) }),
            "class_counts": .array(data.classCounts.map { .number(Double($0)) }),
            "artifact_count": .number(Double(data.artifact.filter { $0 }.count)),
            "patch_size": .number(Double(patchSize)),
            "storage": "images: uint8 N×H×W×3 (HWC, RGB), intensity = value/255 in [0,1]; class-major order",
        ]
        return ArtifactMeta(stage: "synthesize", parameters: p, inputs: inputs, seed: config.seed,
                            extra: extra, created: created)
    }
}

/// 64-bit stream ids for the per-image generators, from a purpose, a split
/// or pool (FNV-1a of its name, stable across runs unlike `Hasher`), a
/// class id and an index, mixed by the SplitMix64 finaliser.
enum StreamKey {
    enum Purpose: UInt64 { case base = 1, patch = 2, contamination = 3, cifarOrder = 4, glyphBase = 5, digit = 6, digitPool = 7 }

    static func name(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    static func make(_ purpose: Purpose, _ split: UInt64, _ cls: UInt64, _ index: UInt64) -> UInt64 {
        mix(mix(mix(mix(purpose.rawValue) ^ split) ^ cls) ^ index)
    }
}

/// Creates `path` (with parents) if missing and checks that a file can be
/// created in it (a probe file is written and removed: permission bits say
/// nothing when running as root).
public func checkWritableDirectory(_ path: String) throws {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    if fm.fileExists(atPath: path, isDirectory: &isDir) {
        guard isDir.boolValue else { throw SynthesisError(io: "output folder \(path) exists and is not a folder") }
    } else {
        do { try fm.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            // Name the nearest existing ancestor: that is what is in the way.
            var parent = (path as NSString).deletingLastPathComponent
            while !parent.isEmpty, parent != "/", !fm.fileExists(atPath: parent) {
                parent = (parent as NSString).deletingLastPathComponent
            }
            var parentIsDir: ObjCBool = false
            let why = fm.fileExists(atPath: parent, isDirectory: &parentIsDir) && !parentIsDir.boolValue
                ? "\(parent) is a file, not a folder" : "\(parent.isEmpty ? "." : parent) is not writable"
            throw SynthesisError(io: "output folder \(path) cannot be created: \(why)")
        }
    }
    let probe = (path as NSString).appendingPathComponent(".synthesize-probe-\(getpid())")
    guard fm.createFile(atPath: probe, contents: Data()) else {
        throw SynthesisError(io: "output folder \(path) is not writable")
    }
    try? fm.removeItem(atPath: probe)
}
