import Foundation
import Testing
@testable import Distill
import NN

/// Finite differences of the COMBINED loss L = λ_kd·KD + λ_layer·Σ_l L_l
/// through the whole student (and the losses' own parameters), for one
/// method with a layer loss per kind that has learned parts: the analytic
/// gradient `step` leaves in every parameter (λ-weighted) matches.
@Test(arguments: [DistillMethod.subdistill, .fitnet])
func combinedLossGradientMatchesFiniteDifferences(_ method: DistillMethod) throws {
    var c = Fixture.config(method)
    c.weightInit = .he   // the tolerances below were set on He-normal students
    // Layer parts about as large as the KD part, and the total O(1) so that
    // float rounding of the loss stays far below the differences measured.
    c.lambdaLayers = [method == .fitnet ? 0.02 : 0.3]
    let t = try Fixture.trainer(c)
    try t.setUpCandidate(0)
    let idx = [0, 40, 70, 100, 130, 150, 9, 77][...]
    var meters = t.contexts.map { DeadChannelMeter(channels: $0.studentChannels) }, hits = 0
    func loss() -> Double {
        var m = t.contexts.map { DeadChannelMeter(channels: $0.studentChannels) }, h = 0
        return try! t.step(idx, update: false, meters: &m, hits: &h).total
    }
    // Move the rotations away from their base so the Cayley gradient is generic.
    for l in t.losses { for p in l.parameters where p.name.hasSuffix("rotation") {
        for i in p.value.indices { p.value[i] = Float(i % 5) * 0.05 - 0.1 }
    } }
    _ = try t.step(idx, update: false, meters: &meters, hits: &hits)
    let params = t.student.parameters + t.losses.flatMap(\.parameters)
    let analytic = params.map { $0.grad }
    var checked = 0
    for (pi, p) in params.enumerated() {
        // A few coordinates of every parameter tensor.
        let coords = probeIndices(p.count, max: 4)
        let h: Float = 5e-4
        let num = finiteDifferences(coords, h: h, get: { p.value[$0] }, set: { p.value[$0] = $1 }, loss: loss)
        let ana = coords.map { Double(analytic[pi][$0]) }
        let err = relativeError(num, ana)
        let norm = ana.map { $0 * $0 }.reduce(0, +).squareRoot()
        if ProcessInfo.processInfo.environment["GRADCHECK_PRINT"] != nil { print("FD", method.name, p.name, err, norm, num, ana) }
        if norm > 1e-4 {
            #expect(err < 0.05, "\(method.name) \(p.name): rel. error \(err), |g| \(norm), numeric \(num), analytic \(ana)")
            checked += 1
        }
    }
    // Every layer kind took part: student convs, fc, and the loss's own parameters.
    #expect(checked >= params.count - 2, "only \(checked) of \(params.count) parameters had a measurable gradient")
}
