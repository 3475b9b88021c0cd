import Testing
@testable import NN

@Test func rngIsDeterministicAndUniform() {
    var a = RNG(seed: 42), b = RNG(seed: 42), c = RNG(seed: 43)
    let xa = (0..<1000).map { _ in a.next() }
    let xb = (0..<1000).map { _ in b.next() }
    let xc = (0..<1000).map { _ in c.next() }
    #expect(xa == xb)
    #expect(xa != xc)
    var r = RNG(seed: 7)
    let u = (0..<100_000).map { _ in r.uniformDouble() }
    let mean = u.reduce(0, +) / Double(u.count)
    #expect(abs(mean - 0.5) < 0.01)
    var counts = [Int](repeating: 0, count: 5)
    for _ in 0..<50_000 { counts[r.int(below: 5)] += 1 }
    #expect(counts.allSatisfy { abs($0 - 10_000) < 400 })
}
