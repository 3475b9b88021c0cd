import Testing
@testable import TensorIO

@Test func ndarrayBytesRoundTrip() throws {
    let a = NDArray([1.5, -2, 3] as [Float], shape: [3])
    #expect(try a.floats() == [1.5, -2, 3])
    #expect(throws: TensorIOError.self) { try a.doubles() }
    #expect(throws: TensorIOError.self) { try NDArray(dtype: .float32, shape: [2], bytes: [0, 0, 0]) }
}
