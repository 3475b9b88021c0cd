import Testing
@testable import Evaluation

@Test func accuracyRecallAndWorstClassByHand() {
    let labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    let preds = [0, 1, 0, 1, 1, 2, 0, 0, 2]
    #expect(Scores.accuracy(predictions: preds, labels: labels) == 6.0 / 9)
    let r = Scores.perClassRecall(predictions: preds, labels: labels, classes: 4)
    #expect(r[0] == 2.0 / 3 && r[1] == 1 && r[2] == 0.5)
    #expect(r[3].isNaN)  // class without images
    #expect(Scores.worstClass(recall: r) == 0.5)
    #expect(Scores.agreement([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75)
    #expect(Scores.accuracy(predictions: [], labels: []).isNaN)
}

@Test func groupAccuraciesUseClassTimesArtifactState() {
    // Class 0 clean 2/2, class 0 artifact 0/1, class 1 clean 1/2, class 1 artifact 1/1.
    let labels = [0, 0, 0, 1, 1, 1]
    let art = [false, false, true, false, false, true]
    let preds = [0, 0, 1, 1, 0, 1]
    let g = Scores.groupAccuracies(predictions: preds, labels: labels, artifact: art, classes: 2)
    #expect(g == [1, 0, 0.5, 1])
    #expect(Scores.worstGroup(predictions: preds, labels: labels, artifact: art, classes: 2) == 0)
}

/// A predictor that reads only the corner digit: the digit when a patch is
/// present, else class 0 (what a network with equal logits gives under
/// first-index tie-breaking). Expected: 0 on conflict (every digit ≠
/// label), 1/K on clean (only class 0 is right; worst class 0); on test
/// with the rows below (ρ = 0.4, digits cycling label, label+1, …) each
/// class has 1 right artifact image (digit = label) of 4 and class 0 its
/// 6 clean ones: (5 + 6)/50 = 0.22 (≈ 1/K in expectation for uniform
/// digits); worst group over clean ∪ conflict = 0.
@Test func digitOnlyPredictorScores() {
    let k = 5, perClass = 10
    func predict(_ artifact: [Bool], _ digit: [Int]) -> [Int] { zip(artifact, digit).map { $0 ? $1 : 0 } }
    var labels: [Int] = [], cleanArt: [Bool] = [], cleanDigit: [Int] = []
    var conflictArt: [Bool] = [], conflictDigit: [Int] = [], testArt: [Bool] = [], testDigit: [Int] = []
    for c in 0..<k {
        for j in 0..<perClass {
            labels.append(c)
            cleanArt.append(false); cleanDigit.append(-1)
            conflictArt.append(true); conflictDigit.append((c + 1 + j % (k - 1)) % k)
            testArt.append(j < 4); testDigit.append(j < 4 ? (c + j) % k : -1)
        }
    }
    let conflict = predict(conflictArt, conflictDigit), clean = predict(cleanArt, cleanDigit)
    let test = predict(testArt, testDigit)
    #expect(Scores.accuracy(predictions: conflict, labels: labels) == 0)
    #expect(Scores.accuracy(predictions: clean, labels: labels) == 1.0 / Double(k))
    #expect(Scores.worstClass(recall: Scores.perClassRecall(predictions: clean, labels: labels, classes: k)) == 0)
    #expect(abs(Scores.accuracy(predictions: test, labels: labels) - 0.22) < 1e-12)
    #expect(Scores.worstGroup(predictions: clean + conflict, labels: labels + labels,
                              artifact: cleanArt + conflictArt, classes: k) == 0)
    // A shape reader (always right) scores 1 everywhere.
    #expect(Scores.worstGroup(predictions: labels + labels, labels: labels + labels,
                              artifact: cleanArt + conflictArt, classes: k) == 1)
}

@Test func marginTakesTheBestOtherClassFirstOnTies() {
    let z: [Float] = [1, 3, 3, 0.5]
    z.withUnsafeBufferPointer { p in
        let a = Scores.margin(p.baseAddress!, classes: 4, label: 0)
        #expect(a.runnerUp == 1 && a.value == -2)
        let b = Scores.margin(p.baseAddress!, classes: 4, label: 1)
        #expect(b.runnerUp == 2 && b.value == 0)
        let c = Scores.margin(p.baseAddress!, classes: 4, label: 3)
        #expect(c.runnerUp == 1 && c.value == -2.5)
    }
}

@Test func patchShareSumsChannelsBeforeTakingMagnitudes() {
    // 4×4×2 relevance, patch 2×2 at the top left.
    var r = [Float](repeating: 0, count: 32)
    func set(_ y: Int, _ x: Int, _ a: Float, _ b: Float) { r[(y * 4 + x) * 2] = a; r[(y * 4 + x) * 2 + 1] = b }
    set(0, 0, 2, -1)   // pixel sum 1, inside
    set(1, 1, -3, 0)   // −3, inside
    set(3, 3, 5, -1)   // 4, outside
    set(2, 0, 1, -1)   // 0, outside: cancels across channels
    let share = r.withUnsafeBufferPointer { Scores.patchShare($0.baseAddress!, height: 4, width: 4, channels: 2, patch: 2) }
    #expect(share == 4.0 / 8.0)
    let zero = [Float](repeating: 0, count: 32)
    #expect(zero.withUnsafeBufferPointer { Scores.patchShare($0.baseAddress!, height: 4, width: 4, channels: 2, patch: 2) } == nil)
    #expect(Scores.mean([0.5, nil, 1]) == 0.75)
}
