import NN
import Subspace
import Testing
@testable import Extraction

/// At k = d the reconstruction U Uᵀ(a − μ) + μ is the identity up to float
/// rounding, so the teacher's accuracy is reproduced exactly; the table has
/// one row per (layer, basis, k) and a baseline equal to a plain evaluation.
@Test func basisAtFullRankReproducesTheTeacher() throws {
    let t = try Fixture.teacher()
    let margin = try SubtaskMargin(subtaskClasses: Fixture.subtask, teacherClasses: 6)
    let n = 30
    let images = Fixture.randomImages(n, seed: 31)
    let res = try RelevantSubspace.extract(
        teacher: t, images: images, count: n, margin: margin,
        options: ExtractionOptions(layers: ["stage1", "stage2"], k: ["stage1": 4, "stage2": 8],
                                   bases: [.prcaposdef, .pca, .random], positions: 5, seed: 2, batch: 8))
    // Labels: the teacher's predictions with every third one changed (accuracy 2/3, not 1).
    let valImages = Fixture.randomImages(n, seed: 32)
    var labels = margin.predictions(t.forward(Tensor(shape: [n] + Fixture.inputShape, data: valImages), training: false))
    for i in stride(from: 0, to: n, by: 3) { labels[i] = (labels[i] + 1) % 3 }
    let expected = Double(n - 10) / Double(n)

    let grid: (SubspaceBasis) -> [Int] = { BasisAtK.defaultGrid(pairedK: $0.k / 2, channels: $0.channels) }
    #expect(BasisAtK.defaultGrid(pairedK: 2, channels: 4) == [1, 2, 4])
    #expect(BasisAtK.defaultGrid(pairedK: 4, channels: 8) == [1, 2, 4, 8])
    #expect(BasisAtK.defaultGrid(pairedK: 8, channels: 32) == [1, 2, 4, 8, 16])
    let table = try BasisAtK.evaluate(teacher: t, images: valImages, labels: labels, margin: margin,
                                      bases: res.bases, grid: grid, batch: 7)
    #expect(table.baselineAccuracy == expected)
    #expect(table.rows.count == 3 * 3 + 3 * 4)
    for b in res.bases {
        #expect(table.accuracy(layer: b.layer, kind: b.kind, k: b.channels) == expected, "\(b.layer)/\(b.kind) at k = d")
    }
    // Rank 1 through a random direction loses the teacher somewhere.
    #expect(table.rows.contains { $0.k == 1 && $0.accuracy != expected })
    // JSON and text forms carry every row.
    #expect(table.json["rows"]?.array?.count == table.rows.count)
    let text = table.formatted
    #expect(text.contains("prcaposdef") && text.contains("k=8") && text.contains("stage2"))
    // A k above what a basis keeps is refused.
    #expect(throws: ExtractionError.self) {
        try BasisAtK.evaluate(teacher: t, images: valImages, labels: labels, margin: margin,
                              bases: [try res.basis(layer: "stage1", kind: .pca, k: 2)], grid: { _ in [3] })
    }
}
