import Foundation
import NN
import Reporting
import StageKit
import Subspace
import TensorIO
import Testing
@testable import Evaluation

/// An orthonormal basis of R^d (d×d row-major, column j = vector j) whose
/// first column is `first`/‖first‖, the rest Gram–Schmidt on random vectors.
private func orthonormalBasis(first: [Double], _ rng: inout RNG) -> [Double] {
    let d = first.count
    var cols: [[Double]] = []
    var candidates = [first] + (1..<d).map { _ in (0..<d).map { _ in rng.normal() } }
    for i in 0..<d {
        var v = candidates[i]
        for _ in 0..<2 {  // twice: re-orthogonalise against rounding
            for c in cols {
                let dot = zip(v, c).reduce(0) { $0 + $1.0 * $1.1 }
                for j in 0..<d { v[j] -= dot * c[j] }
            }
        }
        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        cols.append(v.map { $0 / norm })
        candidates[i] = v
    }
    var out = [Double](repeating: 0, count: d * d)
    for i in 0..<d { for j in 0..<d { out[i * d + j] = cols[j][i] } }
    return out
}

/// Columns `columns` of a d×d row-major matrix as a basis of `layer`.
private func basis(_ q: [Double], d: Int, columns: [Int], layer: String, kind: BasisKind) throws -> SubspaceBasis {
    var u = [Double](repeating: 0, count: d * columns.count)
    for i in 0..<d { for (j, c) in columns.enumerated() { u[i * columns.count + j] = q[i * d + c] } }
    return try SubspaceBasis(layer: layer, kind: kind, channels: d, k: columns.count, uk: u,
                             mean: [Double](repeating: 0, count: d), sigma2: [Double](repeating: 1, count: columns.count),
                             eigenvalues: [], contextRank: d, sampleCount: 1)
}

/// Σ_art and Σ_total by plain double loops (two passes for the mean).
private func directMoments(clean: [Float], patched: [Float], d: Int) -> (art: [Double], total: [Double]) {
    let n = clean.count / d
    var mean = [Double](repeating: 0, count: d)
    for r in 0..<n { for c in 0..<d { mean[c] += Double(clean[r * d + c]) / Double(n) } }
    var art = [Double](repeating: 0, count: d * d), total = art
    for r in 0..<n {
        for i in 0..<d {
            let di = Double(patched[r * d + i]) - Double(clean[r * d + i]), ai = Double(clean[r * d + i]) - mean[i]
            for j in 0..<d {
                art[i * d + j] += di * (Double(patched[r * d + j]) - Double(clean[r * d + j])) / Double(n)
                total[i * d + j] += ai * (Double(clean[r * d + j]) - mean[j]) / Double(n)
            }
        }
    }
    return (art, total)
}

private func maxAbs(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

/// Feeds rows to an accumulator in uneven chunks.
private func accumulate(clean: [Float], patched: [Float], d: Int, chunks: [Int]) -> ArtifactCovariance {
    var acc = ArtifactCovariance(channels: d)
    var start = 0
    clean.withUnsafeBufferPointer { c in
        patched.withUnsafeBufferPointer { p in
            for n in chunks {
                acc.add(clean: c.baseAddress! + start * d, patched: p.baseAddress! + start * d, images: n)
                start += n
            }
        }
    }
    return acc
}

/// A planted artifact: the patch adds the same vector v at every position.
/// Then Σ_art = v vᵀ, so a basis containing v keeps all of it and a basis
/// orthogonal to v none, whatever the clean activations are.
@Test func plantedArtifactDirectionIsInsideItsBasisAndOutsideItsComplement() throws {
    let d = 6, rows = 57
    var rng = RNG(seed: 5)
    let v = (0..<d).map { _ in rng.normal() }
    let clean = (0..<(rows * d)).map { _ in Float(rng.normal() * 2) }
    var patched = clean
    for r in 0..<rows { for c in 0..<d { patched[r * d + c] += Float(v[c]) } }
    let acc = accumulate(clean: clean, patched: patched, d: d, chunks: [20, 1, 36])
    #expect(acc.rows == rows)
    let (art, total) = (acc.finished().sigmaArt, acc.finished().sigmaTotal)
    #expect(acc.finished().sigmaDigit.allSatisfy { $0 == 0 })
    let layer = ProbeLayer(layer: "stage1", channels: d, positions: 1, pairs: rows, sigmaArt: art, sigmaTotal: total)
    // Σ_art = v vᵀ up to float32 rounding of the patched activations.
    let vvt = (0..<(d * d)).map { v[$0 / d] * v[$0 % d] }
    #expect(maxAbs(art, vvt) < 1e-5)

    let q = orthonormalBasis(first: v, &rng)
    let inside = try ArtifactProbe.basisShare(layer, basis: basis(q, d: d, columns: [0, 3], layer: "stage1", kind: .prcaposdef))
    let outside = try ArtifactProbe.basisShare(layer, basis: basis(q, d: d, columns: [1, 2, 3, 4, 5], layer: "stage1", kind: .pca))
    #expect(abs(inside.share - 1) < 1e-9, "\(inside.share)")
    #expect(outside.share < 1e-9, "\(outside.share)")
    #expect(inside.directionShares.count == 2 && abs(inside.directionShares[0] - 1) < 1e-9)
    // The complement still holds most of the clean variance: the probe tells
    // the two apart, not the variance.
    #expect(outside.totalShare > 0.5 && abs(inside.totalShare + outside.totalShare - 1 - basisTotal(layer, q, d: d, column: 3)) < 1e-9)
    // The layer's artifact share: ‖v‖² over the clean variance (≈ 4 per channel).
    let v2 = v.reduce(0) { $0 + $1 * $1 }
    #expect(abs(layer.artifactShare - v2 / layer.traceTotal) < 1e-6)
}

/// u_3ᵀ Σ_total u_3 / tr Σ_total (column 3 is in both bases of the planted test).
private func basisTotal(_ l: ProbeLayer, _ q: [Double], d: Int, column: Int) -> Double {
    var s = 0.0
    for i in 0..<d { for j in 0..<d { s += q[i * d + column] * l.sigmaTotal[i * d + j] * q[j * d + column] } }
    return s / l.traceTotal
}

/// Σ_digit on a planted case: at each of P positions the patch adds
/// v_{p,g} = α_{p,g}·e for digit g (one direction e), plus a
/// digit-independent w_p in any direction; then Σ_digit is the
/// between-digit covariance (1/P) Σ_p Σ_g π_g (v_{p,g} − v̄_p)(…)ᵀ exactly,
/// w drops out, a basis containing e keeps all of it and one ⟂ e none,
/// while both share Σ_art.
@Test func digitDrivenPartIsTheBetweenDigitCovariance() throws {
    let d = 4, positions = 3, images = 30, digits = 3
    var rng = RNG(seed: 13)
    let e = (0..<d).map { _ in rng.normal() }
    let v = (0..<(positions * digits)).map { _ in rng.normal() }.map { a in e.map { a * $0 } }  // v[p·G + g]
    let w = (0..<positions).map { _ in (0..<d).map { _ in rng.normal() * 3 } }
    let digitOf = (0..<images).map { ($0 * 7) % digits }  // 10 images per digit
    let clean = (0..<(images * positions * d)).map { _ in Float(rng.normal()) }
    var patched = clean
    for i in 0..<images { for p in 0..<positions { for c in 0..<d {
        patched[(i * positions + p) * d + c] += Float(v[p * digits + digitOf[i]][c] + w[p][c])
    } } }
    var acc = ArtifactCovariance(channels: d, positions: positions, groups: digits)
    clean.withUnsafeBufferPointer { cp in
        patched.withUnsafeBufferPointer { pp in
            for (lo, hi) in [(0, 4), (4, 5), (5, 30)] {
                acc.add(clean: cp.baseAddress! + lo * positions * d, patched: pp.baseAddress! + lo * positions * d,
                        images: hi - lo, digits: digitOf[lo..<hi])
            }
        }
    }
    let m = acc.finished()
    var expected = [Double](repeating: 0, count: d * d)
    for p in 0..<positions {
        let mean = (0..<d).map { c in (0..<digits).reduce(0.0) { $0 + v[p * digits + $1][c] } / Double(digits) }
        for g in 0..<digits {
            let e = (0..<d).map { v[p * digits + g][$0] - mean[$0] }
            for i in 0..<d { for j in 0..<d { expected[i * d + j] += e[i] * e[j] / Double(digits * positions) } }
        }
    }
    #expect(maxAbs(m.sigmaDigit, expected) < 1e-5)
    // Σ_digit ⪯ Σ_art: here Σ_art also holds w and the mean displacement.
    let layer = ProbeLayer(layer: "l", channels: d, positions: positions, pairs: images, sigmaArt: m.sigmaArt,
                           sigmaTotal: m.sigmaTotal, sigmaDigit: m.sigmaDigit)
    #expect(layer.traceDigit < layer.traceArt && abs(layer.digitShare - layer.traceDigit / layer.traceTotal) < 1e-15)
    let q = orthonormalBasis(first: e, &rng)
    let inside = try ArtifactProbe.basisShare(layer, basis: basis(q, d: d, columns: [0], layer: "l", kind: .prcaposdef))
    let outside = try ArtifactProbe.basisShare(layer, basis: basis(q, d: d, columns: [1, 2, 3], layer: "l", kind: .pca))
    #expect(abs(inside.digitShare - 1) < 1e-6 && outside.digitShare < 1e-6, "\(inside.digitShare) \(outside.digitShare)")
    #expect(abs(inside.share + outside.share - 1) < 1e-9 && outside.share > 0.1)
}

/// The dsyrk-streamed moments equal plain loops, and the basis share
/// equals Σ_rows ‖U_kᵀ Δ‖² / Σ_rows ‖Δ‖² on a general (non-planted) patch.
@Test func streamedMomentsAndBasisShareEqualDirectComputation() throws {
    let d = 5, rows = 41
    var rng = RNG(seed: 8)
    let clean = (0..<(rows * d)).map { _ in Float(rng.normal()) }
    let patched = clean.map { $0 + Float(rng.normal() * 0.7) + 0.3 }
    let acc = accumulate(clean: clean, patched: patched, d: d, chunks: [7, 7, 7, 20])
    let m = acc.finished()
    let (art, total, mean) = (m.sigmaArt, m.sigmaTotal, m.mean)
    let direct = directMoments(clean: clean, patched: patched, d: d)
    #expect(maxAbs(art, direct.art) < 1e-12)
    #expect(maxAbs(total, direct.total) < 1e-12)
    #expect(abs(mean[2] - (0..<rows).reduce(0) { $0 + Double(clean[$1 * d + 2]) } / Double(rows)) < 1e-12)

    let q = orthonormalBasis(first: (0..<d).map { _ in rng.normal() }, &rng)
    let b = try basis(q, d: d, columns: [0, 1, 4], layer: "l", kind: .random)
    let layer = ProbeLayer(layer: "l", channels: d, positions: 1, pairs: rows, sigmaArt: art, sigmaTotal: total)
    let share = try ArtifactProbe.basisShare(layer, basis: b)
    var inside = 0.0, all = 0.0
    for r in 0..<rows {
        let delta = (0..<d).map { Double(patched[r * d + $0]) - Double(clean[r * d + $0]) }
        all += delta.reduce(0) { $0 + $1 * $1 }
        for j in 0..<3 {
            let p = (0..<d).reduce(0.0) { $0 + b.uk[$1 * 3 + j] * delta[$1] }
            inside += p * p
        }
    }
    #expect(abs(share.share - inside / all) < 1e-12)
    #expect(abs(share.directionShares.reduce(0, +) - share.share) < 1e-12)
    // The whole space keeps everything.
    let full = try ArtifactProbe.basisShare(layer, basis: basis(q, d: d, columns: Array(0..<d), layer: "l", kind: .pca))
    #expect(abs(full.share - 1) < 1e-12 && abs(full.totalShare - 1) < 1e-12)
    #expect(throws: EvaluationError.self) {
        try ArtifactProbe.basisShare(layer, basis: basis(orthonormalBasis(first: [1, 0, 0, 0], &rng), d: 4, columns: [0], layer: "l", kind: .pca))
    }
}

/// `measure` through a network in batches that do not divide the pairs
/// equals one forward of all images with the moments taken by plain loops;
/// identical clean and patched images give an artifact share of exactly 0.
@Test func measureMatchesAWholeBatchForwardAndIsZeroWithoutAPatch() throws {
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeTestSplits(dir)
    let (student, _) = try writeNetworks(dir: dir)
    let clean = try StageKit.Dataset(path: dir + "/test-clean.npz")
    let conflict = try StageKit.Dataset(path: dir + "/test-conflict.npz")
    let pairs = try ArtifactProbe.pairs(clean: clean, patched: conflict, patch: 2)
    #expect(pairs == Array(0..<18))
    let layers = try ArtifactProbe.measure(student, clean: clean, patched: conflict, pairs: pairs, batchSize: 7)
    #expect(layers.map(\.layer) == ["stage1", "stage2"])

    var x = Tensor(shape: [0])
    clean.gather(pairs[...], into: &x)
    _ = student.forward(x, training: false)
    let a = layers.map { student.activation(tap: $0.layer).data }
    conflict.gather(pairs[...], into: &x)
    _ = student.forward(x, training: false)
    for (l, layer) in layers.enumerated() {
        let d = layer.channels
        #expect(d == student.tapShape(layer.layer)[2] && layer.positions == student.tapShape(layer.layer)[0] * student.tapShape(layer.layer)[1])
        let direct = directMoments(clean: a[l], patched: student.activation(tap: layer.layer).data, d: d)
        let scale = max(direct.art.map(abs).max()!, direct.total.map(abs).max()!)
        #expect(maxAbs(layer.sigmaArt, direct.art) <= 1e-5 * scale, "\(layer.layer)")
        #expect(maxAbs(layer.sigmaTotal, direct.total) <= 1e-5 * scale, "\(layer.layer)")
        #expect(layer.artifactShare > 0, "\(layer.layer): the patch moves every stage of this small network")
    }

    // No patch: Δ = 0 exactly, so the share is exactly 0.
    let same = try ArtifactProbe.measure(student, clean: clean, patched: clean, pairs: pairs, batchSize: 5)
    for l in same {
        #expect(l.traceArt == 0 && l.artifactShare == 0)
        #expect(l.traceTotal > 0)
    }
    // Deterministic.
    #expect(try ArtifactProbe.measure(student, clean: clean, patched: conflict, pairs: pairs, batchSize: 7) == layers)
}

/// Pairing: only images with the patch in the patched split; splits that do
/// not share base images, or carry no patch, are refused with a clear error.
@Test func pairsNeedSharedBaseImagesAndAPatch() throws {
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeTestSplits(dir)
    let clean = try StageKit.Dataset(path: dir + "/test-clean.npz")
    let test = try StageKit.Dataset(path: dir + "/test.npz")
    let conflict = try StageKit.Dataset(path: dir + "/test-conflict.npz")
    // test: every other image of a class carries a digit.
    #expect(try ArtifactProbe.pairs(clean: clean, patched: test, patch: 2) == test.artifact.indices.filter { test.artifact[$0] })
    #expect(try ArtifactProbe.pairs(clean: clean, patched: test, patch: 2).count == 9)
    func failure(_ a: StageKit.Dataset, _ b: StageKit.Dataset, patch: Int = 2) -> String {
        do { _ = try ArtifactProbe.pairs(clean: a, patched: b, patch: patch); return "no error" } catch { return "\(error)" }
    }
    #expect(failure(conflict, conflict).contains("no image carries the artifact"))
    // The patch lies outside a 1×1 corner.
    #expect(failure(clean, conflict, patch: 1).contains("outside the 1×1 patch"))
    try writeSplit(dir + "/other.npz", kind: "conflict", perClass: 6, classes: 3, side: 8, subtask: [1, 3, 4], seed: 12, baseSeed: 77)
    #expect(failure(clean, try StageKit.Dataset(path: dir + "/other.npz")).contains("do not pair"))
    try writeSplit(dir + "/small.npz", kind: "conflict", perClass: 5, classes: 3, side: 8, subtask: [1, 3, 4], seed: 12, baseSeed: 10)
    #expect(failure(clean, try StageKit.Dataset(path: dir + "/small.npz")).contains("15 of"))
}

/// A subspace.npz for the fixture teacher "c4,p,c6,p,gap,fc5": stage1 the
/// whole space (k = d = 4), stage2 a random orthonormal Q split into two
/// complementary bases (prcaposdef: columns 0–1, gradpca: columns 2–5).
private func writeSubspace(_ path: String, teacherDigest: String?, basisSplit: String? = "distill-train-decorrelated",
                           layer2: String = "stage2") throws {
    var rng = RNG(seed: 21)
    var a = Artifact(meta: ArtifactMeta(stage: "extract-subspace",
                                        parameters: basisSplit.map { ["basis_split": .string($0), "data_split": "x"] } ?? ["data_split": "distill-train"],
                                        inputs: teacherDigest.map { ["teacher": $0] } ?? [:]))
    let q4 = orthonormalBasis(first: [1, 2, 3, 4], &rng)
    try basis(q4, d: 4, columns: [0, 1, 2, 3], layer: "stage1", kind: .pca).write(into: &a)
    let q6 = orthonormalBasis(first: [1, -1, 0, 2, 0, 1], &rng)
    try basis(q6, d: 6, columns: [0, 1], layer: layer2, kind: .prcaposdef).write(into: &a)
    try basis(q6, d: 6, columns: [2, 3, 4, 5], layer: layer2, kind: .gradpca).write(into: &a)
    try NPZ.write(a, to: path)
}

@Test func evaluateWritesTheProbeWithASubspace() throws {
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeTestSplits(dir)
    _ = try writeNetworks(dir: dir)
    let teacherDigest = try sha256Hex(ofFile: dir + "/teacher.npz")
    try writeSubspace(dir + "/subspace.npz", teacherDigest: teacherDigest)
    var o = EvaluateOptions(student: dir + "/student.npz", teacher: dir + "/teacher.npz", data: dir, out: dir + "/run/metrics.json",
                            sets: ["rho=0.5", "seed=2"], batchSize: 7, subspace: dir + "/subspace.npz")
    var lines: [String] = []
    let m = try EvaluateStage.run(o) { lines.append($0) }
    let p = try #require(m.probe)
    #expect(p.pairs == "test-clean/test-conflict" && p.images == 18)
    let share = try #require(p.teacherBasisShare), total = try #require(p.teacherBasisTotalShare)
    #expect(Set(share.keys) == ["stage1/pca", "stage2/prcaposdef", "stage2/gradpca"])
    #expect(abs(share["stage1/pca"]! - 1) < 1e-9 && abs(total["stage1/pca"]! - 1) < 1e-9)
    // Complementary bases split the artifact variance between them.
    #expect(abs(share["stage2/prcaposdef"]! + share["stage2/gradpca"]! - 1) < 1e-9)
    #expect(abs(total["stage2/prcaposdef"]! + total["stage2/gradpca"]! - 1) < 1e-9)
    #expect(share.values.allSatisfy { $0 >= 0 && $0 <= 1 + 1e-12 })
    #expect(Set(p.teacherArtifactShare!.keys) == ["stage1", "stage2"] && Set(p.studentArtifactShare!.keys) == ["stage1", "stage2"])
    #expect(p.studentArtifactShare!.values.allSatisfy { $0 > 0 } && p.teacherArtifactShare!.values.allSatisfy { $0 > 0 })
    // Digit-driven part: present, positive (the fixture's digits differ in
    // their bright pixel) and below the whole artifact share (Σ_digit ⪯ Σ_art).
    let digit = try #require(p.teacherBasisDigitShare)
    #expect(abs(digit["stage2/prcaposdef"]! + digit["stage2/gradpca"]! - 1) < 1e-9)
    for (layer, v) in p.studentDigitShare! { #expect(v > 0 && v < p.studentArtifactShare![layer]!, "\(layer)") }
    for (layer, v) in p.teacherDigitShare! { #expect(v > 0 && v < p.teacherArtifactShare![layer]!, "\(layer)") }
    // basis_split from the subspace (the student's metadata has none).
    #expect(m.run.basisSplit == "distill-train-decorrelated")
    #expect(lines.contains { $0.contains("inside the basis") })

    // metrics.json round trip and metrics.npz entries.
    #expect(try RunMetrics.load(path: o.out) == m)
    let npz = try NPZ.read(dir + "/run/metrics.npz")
    #expect(try npz.array("probe/pair_indices").asInts() == Array(0..<18))
    #expect(try npz.array("probe/student/stage1/sigma_art").shape == [3, 3])
    #expect(try npz.array("probe/teacher/stage2/sigma_total").shape == [6, 6])
    #expect(try npz.array("probe/student/stage2/artifact_share").doubles() == [p.studentArtifactShare!["stage2"]!])
    let tArt = try npz.array("probe/teacher/stage1/trace_art").doubles()[0]
    let tTotal = try npz.array("probe/teacher/stage1/trace_total").doubles()[0]
    #expect(tArt / tTotal == p.teacherArtifactShare!["stage1"]!)
    #expect(try npz.array("probe/teacher/stage2/basis/gradpca/direction_share").shape == [4])
    #expect(try npz.array("probe/teacher/stage2/basis/prcaposdef/share").doubles() == [share["stage2/prcaposdef"]!])
    #expect(try npz.array("probe/teacher/stage2/basis/gradpca/digit_share").doubles() == [digit["stage2/gradpca"]!])
    #expect(try npz.array("probe/student/stage2/digit_share").doubles() == [p.studentDigitShare!["stage2"]!])
    #expect(npz.meta?.inputs["subspace"] == (try sha256Hex(ofFile: dir + "/subspace.npz")))

    // The student's own basis_split wins (it names the basis it was distilled with).
    _ = try writeNetworks(dir: dir, studentParameters: ["method": "subdistill", "basis_split": "distill-train"])
    // The rewritten teacher's meta carries a new time stamp once a second
    // boundary has passed: the subspace must name the teacher now on disk.
    try writeSubspace(dir + "/subspace.npz", teacherDigest: try sha256Hex(ofFile: dir + "/teacher.npz"))
    lines = []
    #expect(try EvaluateStage.run(o) { lines.append($0) }.run.basisSplit == "distill-train")
    #expect(lines.contains { $0.contains("warning") && $0.contains("basis_split") })

    // Other pairs: test-clean with test (half the images carry a digit).
    o.probeClean = dir + "/test-clean.npz"
    o.probePatched = dir + "/test.npz"
    let other = try EvaluateStage.run(o)
    #expect(other.probe?.pairs == "test-clean/test" && other.probe?.images == 9)

    // Without --subspace: layer shares only.
    let plain = try EvaluateStage.run(EvaluateOptions(student: dir + "/student.npz", teacher: dir + "/teacher.npz", data: dir,
                                                      out: dir + "/plain/metrics.json", sets: ["rho=0.5", "seed=2"], batchSize: 7))
    #expect(plain.probe?.teacherBasisShare == nil && plain.probe?.studentArtifactShare == p.studentArtifactShare)
    #expect(plain.run.basisSplit == "distill-train")
}

@Test func probeInputsAreCheckedUpFront() throws {
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeTestSplits(dir)
    _ = try writeNetworks(dir: dir)
    func failure(_ f: (inout EvaluateOptions) -> Void) -> String {
        var o = EvaluateOptions(student: dir + "/student.npz", teacher: dir + "/teacher.npz", data: dir, out: dir + "/run/metrics.json",
                                sets: ["rho=0.5", "seed=2"], batchSize: 7)
        f(&o)
        do { _ = try EvaluateStage.run(o); return "no error" } catch { return "\(error)" }
    }
    try writeSubspace(dir + "/foreign.npz", teacherDigest: String(repeating: "ab", count: 32))
    #expect(failure { $0.subspace = dir + "/foreign.npz" }.contains("another teacher"))
    try writeSubspace(dir + "/layer.npz", teacherDigest: nil, layer2: "stage7")
    #expect(failure { $0.subspace = dir + "/layer.npz" }.contains("'stage7'"))
    #expect(failure { $0.subspace = dir + "/none.npz" }.contains("none.npz"))
    try NPZ.write(Artifact(meta: ArtifactMeta(stage: "x")), to: dir + "/empty.npz")
    #expect(failure { $0.subspace = dir + "/empty.npz" }.contains("holds no basis"))
    #expect(failure { $0.probeClean = dir + "/test-clean.npz" }.contains("go together"))
    #expect(failure { $0.probeClean = dir + "/test-conflict.npz"; $0.probePatched = dir + "/test-conflict.npz" }
        .contains("no image carries the artifact"))
    #expect(!FileManager.default.fileExists(atPath: dir + "/run/metrics.json"))
    #expect(!FileManager.default.fileExists(atPath: dir + "/run/metrics.npz"))
}

/// metrics.json with and without `probe`: both round-trip; a file without
/// it (an older one) reads, and writing one without it adds no key; the
/// CSV gains probe columns only when some run has a probe.
@Test func metricsJSONWithAndWithoutProbeRoundTrips() throws {
    let run = RunInfo(method: "subdistill", rho: 0.5, seed: 1)
    let plain = RunMetrics(run: run, student: ModelMetrics(accTest: 0.5), numClasses: 5)
    let plainData = try plain.jsonData()
    #expect(!String(decoding: plainData, as: UTF8.self).contains("probe"))
    #expect(try RunMetrics.decode(plainData) == plain)
    let old = #"{"run": {"method": "kd", "rho": 0, "seed": 3}, "student": {"acc_test": 0.9}}"#
    #expect(try RunMetrics.decode(Data(old.utf8)).probe == nil)

    var probed = plain
    probed.probe = ProbeMetrics(pairs: "test-clean/test-conflict", images: 100,
                                teacherBasisShare: ["stage1/prcaposdef": 0.12, "stage2/pca": 0.7],
                                teacherBasisTotalShare: ["stage1/prcaposdef": 0.5, "stage2/pca": 0.9],
                                teacherArtifactShare: ["stage1": 0.3], studentArtifactShare: ["stage1": 0.25, "stage2": 1.5])
    let data = try probed.jsonData()
    let text = String(decoding: data, as: UTF8.self)
    #expect(text.contains("\"teacher_basis_share\"") && text.contains("\"stage1/prcaposdef\" : 0.12"))
    #expect(try RunMetrics.decode(data) == probed)

    let csv = ResultsCSV.render([LoadedRun(path: "a/metrics.json", metrics: probed), LoadedRun(path: "b/metrics.json", metrics: plain)])
    let rows = csv.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    let header = rows[0]
    #expect(header.last == "path")
    let col = { (name: String) in header.firstIndex(of: name)! }
    #expect(rows[1][col("probe_basis_stage1_prcaposdef")] == "0.12" && rows[1][col("probe_student_stage2")] == "1.5")
    #expect(rows[2][col("probe_student_stage1")] == "" && rows[2][col("path")] == "b/metrics.json")
    #expect(Array(header.dropLast().suffix(5)) == ["probe_basis_stage1_prcaposdef", "probe_basis_stage2_pca",
                                                   "probe_student_stage1", "probe_student_stage2", "probe_teacher_stage1"])
    #expect(ResultsCSV.render([LoadedRun(path: "b", metrics: plain)]).hasPrefix(ResultsCSV.columns.joined(separator: ",") + "\n"))
}

/// An output path that names an input is refused before anything is
/// written: `--out student.json` would put metrics.npz over `student.npz`.
@Test func outputsThatOverwriteAnInputAreRefused() throws {
    let dir = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeTestSplits(dir)
    _ = try writeNetworks(dir: dir)
    let before = try sha256Hex(ofFile: dir + "/student.npz")
    func failure(out: String, heatmap: String? = nil) -> String {
        var o = EvaluateOptions(student: dir + "/student.npz", teacher: dir + "/teacher.npz", data: dir, out: out,
                                sets: ["rho=0.5", "seed=2"], batchSize: 7)
        o.heatmap = heatmap
        do { _ = try EvaluateStage.run(o); return "no error" } catch { return "\(error)" }
    }
    #expect(failure(out: dir + "/student.json").contains("is the input"))
    #expect(failure(out: dir + "/./teacher.json").contains("is the input"))
    #expect(failure(out: dir + "/run/metrics.json", heatmap: dir + "/test.npz").contains("is the input"))
    #expect(try sha256Hex(ofFile: dir + "/student.npz") == before)
    #expect(!FileManager.default.fileExists(atPath: dir + "/student.json"))
    #expect(failure(out: dir + "/run/metrics.json") == "no error")
}
